"""Figures of the paper's Section 4.5 (confusion matrices, Fig. 3; frame-influence strips, Fig. 4) and
of sweeps (a metric against a swept setting).

Every function builds a `matplotlib.figure.Figure` on the Agg canvas (no pyplot, no global state,
no display needed) and returns it; `save_figure` writes it as PNG and PDF. Figure sizes are fixed
(inches x `DPI`), so a saved PNG is exactly `figure_pixels(fig)` pixels.

Shape legend: C classes, T frames, H x W frame size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .errors import os_error
from .labels import CLASSES

DPI = 150  # dots per inch of every saved PNG
CMAP = "viridis"  # purple (low) to yellow (high), the colour bar of paper Fig. 4
THUMB = 96  # frame thumbnails are THUMB pixels high in the data (shown at the figure's own scale)


def _figure(width: float, height: float) -> Figure:
    # Sizes snapped to whole pixels plus half a pixel: Agg truncates width x DPI, which then cannot
    # fall either side of an integer through rounding error.
    width, height = ((round(x * DPI) + 0.5) / DPI for x in (width, height))
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)  # the Agg canvas: rendering without pyplot or a display
    return fig


def figure_pixels(fig: Figure) -> tuple[int, int]:
    """(width, height) in pixels of the PNG `save_figure` writes for `fig`."""
    w, h = fig.get_size_inches()
    return int(w * DPI), int(h * DPI)


def save_png(fig: Figure, path: str | Path, about: Mapping[str, str] | None = None) -> Path:
    """Write `fig` as the PNG `path` (folder created); `about` goes into its text chunks (e.g. "Title",
    "Source": where the figure comes from), which PIL reads back as `Image.open(path).text`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, metadata=dict(about or {}))  # no bbox_inches="tight": figsize x DPI pixels
    except OSError as e:
        raise os_error(path.parent, e, "write figures") from e
    return path


def save_figure(fig: Figure, stem: str | Path, about: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """Write `stem`.png and `stem`.pdf (folders created); returns both paths. `about`: the PNG's text
    chunks (see `save_png`), and the PDF's Subject."""
    stem = Path(stem)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    save_png(fig, png, about)
    try:
        fig.savefig(pdf, metadata={"Subject": "; ".join(f"{k}: {v}" for k, v in (about or {}).items())} if about
                    else None)
    except OSError as e:
        raise os_error(stem.parent, e, "write figures") from e
    return png, pdf


def row_percent(conf: np.ndarray) -> np.ndarray:
    """Confusion counts [C, C] -> percent of each true class (rows sum to 100; NaN for an empty row)."""
    conf = np.asarray(conf, dtype=np.float64)
    support = conf.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, 100.0 * conf / support, np.nan)


def mean_confusion(confs: Sequence[np.ndarray]) -> np.ndarray:
    """The average of row-normalised confusions [C, C] (percent), as the paper averages per-fold results."""
    rows = np.stack([row_percent(c) for c in confs])  # [K, C, C]
    with np.errstate(invalid="ignore"):
        return np.nanmean(rows, axis=0) if np.isfinite(rows).any() else rows[0]


def confusion_figure(conf: np.ndarray, title: str, classes: Sequence[str] = CLASSES,
                     percent: bool = False) -> Figure:
    """Paper Fig. 3: a confusion matrix, rows = true class, cells = percent of the row.

    `conf` is counts [C, C] (normalised here) or, with `percent=True`, already row percentages;
    `classes` its C class names in label order. Beyond 7 classes the figure grows so that the cells
    keep the size they have for the paper's 7.
    """
    pct = np.asarray(conf, dtype=np.float64) if percent else row_percent(conf)
    C = len(classes)
    if pct.shape != (C, C):
        raise ValueError(f"a confusion of shape {pct.shape} does not fit {C} classes ({', '.join(classes)})")
    grow = max(0, C - 7) * 0.45  # inches per extra class
    fig = _figure(5.6 + grow, 5.0 + grow)
    ax = fig.add_axes((0.24, 0.22, 0.62, 0.68))
    im = ax.imshow(np.nan_to_num(pct), cmap="Blues", vmin=0, vmax=100)
    for i in range(C):
        for j in range(C):
            if np.isfinite(pct[i, j]):
                ax.text(j, i, f"{pct[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if pct[i, j] > 55 else "black")
    ax.set_xticks(range(C), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(C), classes, fontsize=8)
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("true", fontsize=9)
    ax.set_title(title, fontsize=10)
    cax = fig.add_axes((0.88, 0.22, 0.025, 0.68))
    fig.colorbar(im, cax=cax).set_label("% of true class", fontsize=8)
    return fig


def confusion_figures(confs: Mapping[str, np.ndarray], out: str | Path,
                      classes: Sequence[str] = CLASSES) -> list[Path]:
    """One confusion figure per fold (`confusion_<name>`) and, for several, their mean (`confusion_mean`).

    `confs`: fold name (e.g. "fold1", "test") -> counts [C, C]. Returns the PNG paths.
    """
    out = Path(out)
    pngs = []
    for name, conf in confs.items():
        fig = confusion_figure(conf, f"TG-DFER, {name} (n = {int(np.asarray(conf).sum())})", classes)
        pngs.append(save_figure(fig, out / f"confusion_{name}")[0])
    if len(confs) > 1:
        fig = confusion_figure(mean_confusion(list(confs.values())), f"TG-DFER, mean of {len(confs)} folds",
                               classes, percent=True)
        pngs.append(save_figure(fig, out / "confusion_mean")[0])
    return pngs


def _thumbnails(frames: np.ndarray, height: int = THUMB) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 -> one strip [height, T * w, 3] uint8, each frame resized to height."""
    T, H, W = frames.shape[:3]
    w = max(1, int(round(W * height / H)))
    thumbs = [np.asarray(Image.fromarray(f).resize((w, height), Image.BILINEAR)) for f in frames]
    return np.concatenate(thumbs, axis=1)


def frame_strip_figure(frames: np.ndarray, influence: np.ndarray, frame_index: Sequence[int] | None = None,
                       title: str = "", truth: np.ndarray | None = None) -> Figure:
    """Paper Fig. 4: the clip's sampled frames in a row, each above its influence (Eq. 12) colour cell.

    frames [T, H, W, 3] uint8, influence [T] in [0, 1], frame_index [T] source frame numbers
    (the tick labels). The colour bar runs from purple (low influence) to yellow (high).
    `truth` [T] in [0, 1] (e.g. SynthDFER's in_episode) adds a grey row below: black = 1.
    """
    frames, influence = np.asarray(frames), np.asarray(influence, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) != len(influence) or len(frames) == 0:
        raise ValueError(f"need frames [T, H, W, 3] and influence [T], got {frames.shape} and {influence.shape}")
    if truth is not None and len(truth) != len(frames):
        raise ValueError(f"truth has {len(truth)} values for {len(frames)} frames")
    T = len(frames)
    aspect = frames.shape[2] / frames.shape[1]
    # Layout in inches, bottom up: tick labels, [truth row], influence row, the strip of T thumbnails
    # keeping their aspect, the title; the colour bar on the right.
    strip_w = min(max(0.75 * T * aspect, 4.0), 16.0)
    strip_h = strip_w / (T * aspect)
    left, cbar_zone, top, cell_h, gap, bottom = 0.75, 0.9, 0.35, 0.3, 0.05, 0.55
    rows = [("in episode", truth)] if truth is not None else []
    rows.append(("influence", influence))
    width = left + strip_w + cbar_zone
    height = bottom + len(rows) * (cell_h + gap) + strip_h + top
    fig = _figure(width, height)

    def rect(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        return x / width, y / height, w / width, h / height  # inches -> figure fraction

    ax = fig.add_axes(rect(left, bottom + len(rows) * (cell_h + gap), strip_w, strip_h))
    ax.imshow(_thumbnails(frames), aspect="auto")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    labels = [str(int(i)) for i in (frame_index if frame_index is not None else range(T))]
    for k, (name, values) in enumerate(rows):
        cells = fig.add_axes(rect(left, bottom + k * (cell_h + gap), strip_w, cell_h))
        im = cells.imshow(np.asarray(values, dtype=np.float64)[None, :], cmap=CMAP if name == "influence" else "Greys",
                          vmin=0.0, vmax=1.0, aspect="auto", extent=(-0.5, T - 0.5, 1, 0))
        cells.set_yticks([0.5], [name], fontsize=8)
        cells.set_xticks(range(T), labels if k == 0 else [], fontsize=7)
        if name == "influence":
            colours = im
    fig.axes[1].set_xlabel("source frame", fontsize=8)
    cax = fig.add_axes(rect(left + strip_w + 0.15, bottom + (len(rows) - 1) * (cell_h + gap), 0.15,
                            cell_h + gap + strip_h))
    fig.colorbar(colours, cax=cax).set_label("influence (Eq. 12)", fontsize=8)
    return fig


# -- sweeps -------------------------------------------------------------------------------------------

PERCENT_SPAN = 20.0  # percentage points: the least a y axis of %-metrics spans (see percent_limits)


def percent_limits(values: Sequence[float], span: float = PERCENT_SPAN) -> tuple[float, float]:
    """y limits for a %-metric: every value with a 5% margin, and at least `span` points tall,
    centred on the values and kept within 0-100.

    Matplotlib's own limits hug the data, so that a 2.5-point gap between two runs fills the axis;
    with `span` = 20 it fills an eighth of it. The full 0-100 would flatten the differences an
    ablation is about; 20 points keeps them visible without magnifying run-to-run noise.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 100.0)
    margin = 0.05 * (hi - lo)
    lo, hi = lo - margin, hi + margin
    grow = max(0.0, span - (hi - lo)) / 2
    lo, hi = lo - grow, hi + grow
    shift = max(0.0, -lo) - max(0.0, hi - 100.0)  # slide back inside 0-100 (a span over 100 is cut there)
    return max(0.0, lo + shift), min(100.0, hi + shift)


def tick_labels(values: Sequence[str], width: int = 16) -> list[str]:
    """Category labels that fit under a panel: paths (a sweep over stores, one per point) shortened to the
    fewest trailing components that still tell them apart, then each wrapped at `width` characters.
    A full path of a temporary or cluster folder under each tick overran the panels and collapsed them."""
    values = [str(v) for v in values]
    if any("/" in v or "\\" in v for v in values):
        parts = [v.replace("\\", "/").rstrip("/").split("/") for v in values]
        for k in range(1, max(len(p) for p in parts) + 1):
            short = ["/".join(p[-k:]) for p in parts]
            if len(set(short)) == len(set(values)):
                values = short
                break
    return [textwrap.fill(v, width, break_long_words=True, break_on_hyphens=False) for v in values]


def sweep_figure(runs, x: str, order: Sequence[str], groups: Sequence[str] = (),
                 metrics: Sequence[str] = ("UAR", "WAR"), title: str = "") -> Figure:
    """Each of `metrics` (percent) against the categorical setting `x`, one panel per metric.

    `runs`: a pandas frame of finished runs, one row each, with columns `x`, `groups` and
    `metrics`; `order`: the values of `x` (as text) from left to right. Every run is a small grey
    dot (gid "run"); each combination of the `groups` columns has, per category, its mean as a
    marker with a bar of ± one std over its runs (gid "mean"; no bar for a single run), placed side
    by side. No line joins the categories: they are settings, not a continuum. The y axis follows
    `percent_limits` (at least PERCENT_SPAN points), and the caption gives the number of runs.
    """
    keyed = runs.assign(_x=runs[x].astype(str), **{g: runs[g].astype(str) for g in groups})  # lists hash as text
    combos = list(keyed[list(groups)].drop_duplicates().itertuples(index=False, name=None)) if groups else [()]
    width = 0.6 / len(combos)  # the side-by-side offsets of the groups within a category
    panel = min(8.0, max(3.5, 0.6 + 0.8 * len(order) * max(1.0, len(combos) / 2)))  # inches per metric
    fig = _figure(panel * len(metrics), 4.2 + 0.2 * ((len(combos) + 1) // 2 if groups else 0))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for g, combo in enumerate(combos):
            part = keyed
            for col, value in zip(groups, combo):
                part = part[part[col] == value]
            offset = (g - (len(combos) - 1) / 2) * width
            means, stds, pos = [], [], []
            for i, cat in enumerate(order):
                vals = part.loc[part["_x"] == cat, metric].to_numpy(np.float64)
                if not len(vals):
                    continue
                # every run, spread a little sideways so that equal values stay countable
                spread = (np.arange(len(vals)) - (len(vals) - 1) / 2) * min(0.04, width / (2 * len(vals)))
                ax.plot(i + offset + spread, vals, linestyle="none", marker="o", ms=3, color="0.55", gid="run")
                pos.append(i + offset + width * 0.3)
                means.append(vals.mean())
                stds.append(vals.std(ddof=1) if len(vals) > 1 else 0.0)
            label = ", ".join(f"{c}={v}" for c, v in zip(groups, combo)) or None
            bars = ax.errorbar(pos, means, yerr=stds, fmt="D", ms=5, capsize=3, linestyle="none", label=label)
            bars[0].set_gid("mean")
        ax.set_xticks(range(len(order)), tick_labels(order), fontsize=8)
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_ylim(*percent_limits(runs[metric]))
        ax.set_xlabel(x, fontsize=9)
        ax.set_ylabel(f"{metric} (%)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if groups:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=7)
    per = keyed.groupby(["_x", *groups], sort=False).size()
    n = (f"{per.iloc[0]} run{'s' if per.iloc[0] > 1 else ''} per point" if per.nunique() == 1
         else f"{per.min()}-{per.max()} runs per point")
    fig.suptitle(textwrap.fill(title, int(8 * fig.get_figwidth())), fontsize=9)  # clear of the legend
    fig.supxlabel(f"n = {len(runs)} runs ({n}). Grey dots: every run; diamond and bar: mean ± std over a "
                  f"point's runs.\nThe y axis spans at least {PERCENT_SPAN:.0f} points.", fontsize=8)
    return fig
