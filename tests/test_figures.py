"""Figures: confusion matrices (paper Fig. 3) and frame-influence strips (Fig. 4) written as PNG and PDF."""

import numpy as np
import pytest
from PIL import Image

from tgdfer.figures import (DPI, confusion_figure, confusion_figures, figure_pixels, frame_strip_figure,
                            mean_confusion, row_percent, save_figure)


def test_row_percent_and_mean_over_folds():
    a = np.array([[3, 1], [0, 0]])
    b = np.array([[0, 2], [1, 1]])
    np.testing.assert_allclose(row_percent(a), [[75, 25], [np.nan, np.nan]])
    # fold means of per-fold row percentages; a class missing from a fold is averaged over the others
    np.testing.assert_allclose(mean_confusion([a, b]), [[37.5, 62.5], [50, 50]])


def _opened(png):
    img = np.asarray(Image.open(png).convert("RGB")).astype(float)
    assert img.std() > 5  # something is drawn
    return img


def test_confusion_figures_per_fold_and_mean(tmp_path):
    rng = np.random.default_rng(0)
    confs = {"fold1": rng.integers(0, 30, (7, 7)), "fold2": rng.integers(0, 30, (7, 7))}
    pngs = confusion_figures(confs, tmp_path)
    assert [p.name for p in pngs] == ["confusion_fold1.png", "confusion_fold2.png", "confusion_mean.png"]
    for png in pngs:
        assert Image.open(png).size == (round(5.6 * DPI), round(5.0 * DPI))
        assert png.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
        _opened(png)
    assert confusion_figures({"test": confs["fold1"]}, tmp_path / "one") == [tmp_path / "one" / "confusion_test.png"]


def test_a_perfect_classifier_is_dark_on_the_diagonal_only(tmp_path):
    png, _ = save_figure(confusion_figure(np.diag([5, 4, 3, 2, 1, 6, 7]), "perfect"), tmp_path / "c")
    img = _opened(png).mean(axis=2)  # grey levels
    w, h = Image.open(png).size
    # axes span x 0.24..0.86, y 0.22..0.90 of the figure (top down: 0.10..0.78); 7 x 7 cells
    x0, x1, y0, y1 = 0.24 * w, 0.86 * w, 0.10 * h, 0.78 * h
    cell = lambda i, j: img[int(y0 + (i + 0.25) * (y1 - y0) / 7), int(x0 + (j + 0.2) * (x1 - x0) / 7)]
    assert all(cell(i, i) < 100 for i in range(7))  # 100 %: dark blue
    assert all(cell(i, (i + 3) % 7) > 240 for i in range(7))  # 0 %: white


@pytest.mark.parametrize("T, H, W", [(16, 112, 112), (8, 32, 48), (3, 40, 30)])
def test_frame_strip_size_and_colours(tmp_path, T, H, W):
    rng = np.random.default_rng(T)
    frames = rng.integers(0, 255, (T, H, W, 3), dtype=np.uint8)
    influence = np.linspace(0, 1, T)
    fig = frame_strip_figure(frames, influence, np.arange(T) * 3, title="clip 00001")
    png, pdf = save_figure(fig, tmp_path / "strip")
    assert Image.open(png).size == figure_pixels(fig)
    assert pdf.read_bytes()[:4] == b"%PDF"
    img = _opened(png)
    w, h = Image.open(png).size
    assert w > h  # a strip
    # the influence row: purple (viridis 0) at the first frame, yellow (viridis 1) at the last
    ax = fig.axes[1].get_position()  # figure fraction, origin bottom left
    y = int((1 - (ax.y0 + ax.y1) / 2) * h)
    first, last = img[y, int((ax.x0 + 0.5 * ax.width / T) * w)], img[y, int((ax.x1 - 0.5 * ax.width / T) * w)]
    assert first[2] > first[1] and first[0] > first[1]  # purple: red and blue above green
    assert last[0] > 200 and last[1] > 200 and last[2] < 100  # yellow


def test_frame_strip_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="influence"):
        frame_strip_figure(np.zeros((4, 8, 8, 3), np.uint8), np.zeros(5))


def test_frame_strip_with_ground_truth_row(tmp_path):
    frames = np.full((6, 20, 20, 3), 128, np.uint8)
    truth = np.array([0, 0, 1, 1, 0, 0])
    fig = frame_strip_figure(frames, np.linspace(0, 1, 6), truth=truth)
    png, _ = save_figure(fig, tmp_path / "s")
    img = np.asarray(Image.open(png).convert("L")).astype(float)
    h, w = img.shape
    row = fig.axes[1].get_position()  # bottom row: the truth (black = in the episode)
    y = int((1 - (row.y0 + row.y1) / 2) * h)
    xs = [int((row.x0 + (t + 0.5) * row.width / 6) * w) for t in range(6)]
    assert [img[y, x] < 50 for x in xs] == [False, False, True, True, False, False]
    with pytest.raises(ValueError, match="truth"):
        frame_strip_figure(frames, np.zeros(6), truth=np.zeros(5))


# -- sweep plots -------------------------------------------------------------------------------------


def _joining_lines(ax):
    """Visible lines of `ax` whose points lie over more than one category (x rounded to the tick)."""
    return [l for l in ax.lines if l.get_linestyle() not in ("None", "", " ")
            and len(set(np.round(np.asarray(l.get_xdata(), float)))) > 1]


def test_sweep_figure_a_single_run_gap_is_not_magnified(tmp_path):
    import pandas as pd
    from matplotlib.figure import Figure

    from tgdfer.figures import PERCENT_SPAN, save_png, sweep_figure

    runs = pd.DataFrame({"visual_prompt": ["X", "Add"], "UAR": [30.0, 31.0], "WAR": [41.25, 43.75]})
    fig = sweep_figure(runs, "visual_prompt", ["X", "Add"], title="demo sweep (fold 1 x seed 0)")
    png = save_png(fig, tmp_path / "results.png", {"Title": "demo sweep"})
    assert isinstance(fig, Figure) and Image.open(png).text["Title"] == "demo sweep"
    uar, war = fig.axes[:2]
    for ax in (uar, war):
        assert not _joining_lines(ax)  # categories are not joined by a line
        lo, hi = ax.get_ylim()
        assert hi - lo >= PERCENT_SPAN - 1e-9 and 0 <= lo and hi <= 100
    lo, hi = war.get_ylim()
    assert (43.75 - 41.25) / (hi - lo) <= 0.125  # the 2.5-point gap fills at most an eighth of the axis
    assert lo < 41.25 and 43.75 < hi
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "n = 2 runs (1 run per point)" in caption and "at least 20 points" in caption


def test_sweep_figure_shows_every_run_and_each_groups_mean_and_std():
    import pandas as pd

    from tgdfer.figures import sweep_figure

    rng = np.random.default_rng(0)
    rows = [{"window": w, "stride": s, "fold": f, "UAR": 40 + 10 * rng.random(), "WAR": 50 + 10 * rng.random()}
            for w in (2, 4, 8) for s in ("X", 1) for f in (1, 2, 3)]
    runs = pd.DataFrame(rows)
    fig = sweep_figure(runs, "window", ["2", "4", "8"], ["stride"])
    for ax, metric in zip(fig.axes[:2], ("UAR", "WAR")):
        assert not _joining_lines(ax)
        dots = [l for l in ax.lines if l.get_gid() == "run"]
        assert sorted(y for l in dots for y in l.get_ydata()) == pytest.approx(sorted(runs[metric]))
        means = [l for l in ax.lines if l.get_gid() == "mean"]
        assert len(means) == 2  # one marker series per stride
        want = runs.groupby(["stride", "window"], sort=False)[metric].mean()
        assert sorted(y for l in means for y in l.get_ydata()) == pytest.approx(sorted(want))
        lo, hi = ax.get_ylim()
        assert lo <= runs[metric].min() and runs[metric].max() <= hi and hi - lo >= 20
        # the std bars: each half as long as the std of its 3 runs
        bars = [c for c in ax.collections if len(c.get_segments()) == 3]
        stds = runs.groupby(["stride", "window"], sort=False)[metric].std(ddof=1)
        halves = sorted((s[1][1] - s[0][1]) / 2 for c in bars for s in c.get_segments())
        assert halves == pytest.approx(sorted(stds))
    assert "n = 18 runs (3 runs per point)" in " ".join(t.get_text() for t in fig.texts)


@pytest.mark.parametrize("values, lo, hi", [([41.25, 43.75], 32.5, 52.5), ([99.0, 99.5], 80.0, 100.0),
                                            ([1.0, 2.0], 0.0, 20.0), ([10.0, 90.0], 6.0, 94.0)])
def test_percent_limits(values, lo, hi):
    from tgdfer.figures import percent_limits

    assert percent_limits(values) == pytest.approx((lo, hi))


def test_readme_figure_is_the_demos_own_run():
    """The README's first figure is `make readme-figure`'s copy of the demo's strip: its PNG names the
    demo's run, the demo's store and the demo's (proxy CLIP) encoder, and the caption says so."""
    import re
    import tomllib
    from pathlib import Path

    readme = Path("README.md").read_text()
    path = re.search(r"!\[[^\]]*\]\(([^)]+\.png)\)", readme)[1]
    target = re.search(r"^readme-figure:.*\n\tcp (\S+) (\S+)$", Path("Makefile").read_text(), re.M)
    assert target and path == target[2] == "docs/figures/demo_strip_fold1.png"
    demo = tomllib.loads(Path("pipelines/synthetic.toml").read_text())
    run = f"{demo['train']['out']}/fold{demo['train']['fold']}"
    assert target[1] == f"{run}/figures/strip_fold{demo['train']['fold']}_most_confident.png"
    about = Image.open(path).text
    assert about["Source"] == f"tgdfer evaluate {run}"
    assert about["Store"] == demo["extract"]["store"]
    assert about["Encoder"].startswith(f"{demo['encoder']['model']} (file, weights sha256 ")
    caption = " ".join(readme.split(path, 1)[1].lstrip(")\n").split("\n\n", 1)[0].split())  # the paragraph under it
    assert "make demo" in caption and "proxy CLIP" in caption and "runs/synth/fold1" in caption


def test_sweep_figure_takes_list_valued_settings():
    """A swept `augment.crop_scale = [0.08, 1.0]` ended sweep and report in `unhashable type: 'list'`."""
    import pandas as pd

    from tgdfer.figures import sweep_figure

    rows = [{"crop_scale": scale, "milestones": ms, "fold": f, "UAR": 40.0 + f + i, "WAR": 50.0 + f + i}
            for i, scale in enumerate(([0.08, 1.0], [0.5, 1.0])) for ms in ([5], [5, 8]) for f in (1, 2)]
    runs = pd.DataFrame(rows)
    fig = sweep_figure(runs, "crop_scale", ["[0.08, 1.0]", "[0.5, 1.0]"], ["milestones"])
    ax = fig.axes[0]
    means = [l for l in ax.lines if l.get_gid() == "mean"]
    assert len(means) == 2 and sorted(y for l in means for y in l.get_ydata()) == [41.5, 41.5, 42.5, 42.5]
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == ["milestones=[5, 8]", "milestones=[5]"]


def test_sweep_figure_over_stores_names_them_short_and_keeps_its_panels():
    """A sweep whose points each train on their own store: the x categories are full paths, which overran
    the panels under the ticks until matplotlib collapsed the axes (UserWarning, an unreadable figure)."""
    import warnings

    import pandas as pd

    from tgdfer.figures import sweep_figure, tick_labels

    stores = ["/scratch/me/tgdfer/stores/dfew_paper/fold_all.zarr", "/scratch/me/tgdfer/stores/dfew_recommended/fold_all.zarr"]
    runs = pd.DataFrame([{"store": st, "fold": f, "UAR": 40.0 + f + i, "WAR": 50.0 + f + i}
                         for i, st in enumerate(stores) for f in (1, 2)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # constrained layout's "axes sizes collapsed to zero" is a UserWarning
        fig = sweep_figure(runs, "store", stores)
        fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert [t.replace("\n", "") for t in ticks] == ["dfew_paper/fold_all.zarr", "dfew_recommended/fold_all.zarr"]
    assert all(max(len(line) for line in t.split("\n")) <= 16 for t in ticks)
    assert tick_labels(["a/x.zarr", "b/y.zarr"]) == ["x.zarr", "y.zarr"] and tick_labels(["X", "Add"]) == ["X", "Add"]
