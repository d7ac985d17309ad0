"""`tgdfer report --html`: one self-contained HTML file for a run, an evaluation or a sweep.

The page needs no server and no network: CSS and the table-sorting script are inline, every image
is a base64 `data:` URI, and a Content-Security-Policy forbids any other source. It holds

- the result tables, sortable by clicking a column header (numbers sort as numbers; a cell such as
  "+1.20 [-0.40, 2.80]" sorts by its first number), with their intervals: a 95% t interval over
  the folds under an evaluation's table, and a sweep's paired "vs best" intervals (tgdfer.stats);
- the confusion matrices (row percent, as paper Fig. 3), per fold and their mean, or per sweep point;
- for a run or an evaluation, the strips of the most and least confident test clip of each run
  (paper Fig. 4): the sampled frames with the face box they were cropped to, and each frame's influence;
- the config (config.json, or a sweep's points.json and each point's pipeline) and the store's fingerprint.

Every text taken from a file (clip ids, class names, paths, config values) goes through
`html.escape`: a name such as "<script>" shows as text. Numbers come from the same functions as
the CSV and Markdown tables (`evaluation.results_table`, `sweep.paper_table`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .errors import TgdferError, os_error
from .figures import mean_confusion, row_percent

THUMB = 96  # frame thumbnails are THUMB pixels high
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}h3{font-size:1em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f3f3f3;white-space:nowrap}td.text,th.text{text-align:left}
table.sortable thead th{cursor:pointer}table.sortable thead th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable thead th[aria-sort=descending]::after{content:" \\25BC"}tfoot td{background:#fafafa;font-style:italic}
table.confusion td{min-width:3.2em;text-align:center}
.note{color:#555;max-width:60em}pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:30em}
.strip{display:flex;gap:3px;overflow-x:auto}.frame{text-align:center;font-size:11px}
.frame img{display:block;height:96px}.cell{height:18px;line-height:18px}
"""

SCRIPT = """
function cellKey(td){var v=td.getAttribute('data-v');return v===null?NaN:parseFloat(v);}
function sortTable(th){
  var table=th.closest('table'),tbody=table.tBodies[0],col=th.cellIndex;
  var asc=th.getAttribute('aria-sort')!=='ascending';
  Array.prototype.forEach.call(th.parentNode.cells,function(c){c.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',asc?'ascending':'descending');
  var rows=Array.prototype.slice.call(tbody.rows);
  rows.sort(function(a,b){
    var x=a.cells[col],y=b.cells[col],nx=cellKey(x),ny=cellKey(y),r;
    if(!isNaN(nx)&&!isNaN(ny))r=nx-ny;else if(!isNaN(nx))return -1;else if(!isNaN(ny))return 1;
    else r=x.textContent.localeCompare(y.textContent);
    return asc?r:-r;});
  rows.forEach(function(r){tbody.appendChild(r);});
}
document.addEventListener('DOMContentLoaded',function(){
  document.querySelectorAll('table.sortable thead th').forEach(function(th){
    th.addEventListener('click',function(){sortTable(th);});});});
"""


# -- pieces of a page ----------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Any value as HTML text (quotes escaped too: safe inside attributes)."""
    return html.escape(str(value), quote=True)


def sort_key(value: Any) -> Optional[float]:
    """The number a cell sorts by: the value itself, or the first number of a text ("+1.2 [-0.4, 2.8]")."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    m = _NUMBER.match(str(value)) if value is not None and value is not pd.NA else None
    return float(m.group(1)) if m else None


def _cell(value: Any, decimals: int, tag: str = "td") -> str:
    missing = value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
    text = "-" if missing else f"{value:.{decimals}f}" if isinstance(value, (float, np.floating)) else str(value)
    key = sort_key(value)
    attr = f' data-v="{key!r}"' if key is not None else ' class="text"'
    return f"<{tag}{attr}>{esc(text)}</{tag}>"


SUMMARY_ROWS = ("mean", "std", "95% interval")  # the rows under an evaluation's result table


def table(df: pd.DataFrame, caption: str = "", note: str = "", decimals: int = 2, footer: Sequence[str] = ()) -> str:
    """`df` (index as first column) as a sortable table; rows whose index is in `footer` stay below the sorted rows."""
    head = "".join(f'<th scope="col">{esc(c)}</th>' for c in [df.index.name or "", *df.columns])
    body, foot = [], []
    for index, row in zip(df.index, df.itertuples(index=False)):
        cells = _cell(index, decimals, "th") + "".join(_cell(v, decimals) for v in row)
        (foot if str(index) in footer else body).append(f"<tr>{cells}</tr>")
    parts = ['<table class="sortable">', f"<caption>{esc(caption)}</caption>" if caption else "",
             f"<thead><tr>{head}</tr></thead>", f"<tbody>{''.join(body)}</tbody>",
             f"<tfoot>{''.join(foot)}</tfoot>" if foot else "", "</table>"]
    return "".join(parts) + (f'<p class="note">{esc(note)}</p>' if note else "")


def with_interval(results: pd.DataFrame) -> pd.DataFrame:
    """An evaluation's result table (rows "fold k", "mean", "std") plus a "95% interval" row: the t interval of
    the mean over the folds, for every numeric column; unchanged with fewer than two folds."""
    from .stats import t975

    folds = results[results.index.astype(str).str.startswith("fold")].select_dtypes("number")
    if len(folds) < 2:
        return results
    n = folds.notna().sum()
    half = folds.std(ddof=1) * n.map(lambda k: t975(int(k) - 1) if k > 1 else np.nan) / np.sqrt(n)
    mean = folds.mean()
    row = {c: (f"[{mean[c] - half[c]:.2f}, {mean[c] + half[c]:.2f}]" if c in half and np.isfinite(half[c]) else "")
           for c in results.columns}
    return pd.concat([results.astype(object), pd.DataFrame([row], index=["95% interval"])])


def confusion(conf: np.ndarray, classes: Sequence[str], title: str, percent: bool = False) -> str:
    """A confusion matrix as a table of row percentages (rows = true class), shaded like paper Fig. 3."""
    pct = np.asarray(conf, dtype=float) if percent else row_percent(conf)
    head = "".join(f'<th scope="col">{esc(c)}</th>' for c in classes)
    rows = []
    for name, values in zip(classes, pct):
        cells = "".join(
            f'<td style="background:rgba(33,102,172,{v / 100:.2f});color:{"#fff" if v > 55 else "#000"}">{v:.1f}</td>'
            if np.isfinite(v) else "<td>-</td>" for v in values)
        rows.append(f'<tr><th scope="row" class="text">{esc(name)}</th>{cells}</tr>')
    return (f'<h3>{esc(title)}</h3><table class="confusion"><thead><tr><th class="text">true \\ predicted</th>'
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def png_uri(image: np.ndarray | bytes) -> str:
    """An image (uint8 array [H, W, 3], or PNG bytes) as a data: URI."""
    if not isinstance(image, bytes):
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
        image = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def image(path: Path, alt: str) -> str:
    """A PNG file embedded in the page."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise os_error(path, e, "read the figure") from e
    return f'<img src="{png_uri(data)}" alt="{esc(alt)}" style="max-width:100%">'


def _thumb(frame: np.ndarray, box: Optional[np.ndarray]) -> np.ndarray:
    """One frame [H, W, 3] resized to THUMB pixels high, its face box (x0 y0 x1 y1, source pixels) drawn in red."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    scale = THUMB / img.height
    img = img.resize((max(1, round(img.width * scale)), THUMB), Image.BILINEAR)
    if box is not None and np.isfinite(box).all():
        ImageDraw.Draw(img).rectangle([float(v) * scale for v in box], outline=(255, 0, 0), width=2)
    return np.asarray(img)


def strip(st) -> str:
    """A clip's frames (`evaluation.Strip`) side by side, each with its source frame number and influence cell."""
    from matplotlib import colormaps

    from .figures import CMAP

    cmap = colormaps[CMAP]
    frames = st.source if st.source is not None else st.frames
    cells = []
    for t, (frame, value, index) in enumerate(zip(frames, st.influence, st.index)):
        box = st.boxes[t] if st.source is not None and st.boxes is not None else None
        r, g, b, _ = (round(255 * c) for c in cmap(float(np.clip(value, 0, 1))))
        colour = "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"
        truth = "" if st.truth is None else f'<div class="cell">{"in" if st.truth[t] >= 0.5 else "out"}</div>'
        cells.append(f'<div class="frame"><img src="{png_uri(_thumb(frame, box))}" alt="frame {int(index)}">'
                     f'<div>{int(index)}</div><div class="cell" style="background:rgb({r},{g},{b});color:{colour}"'
                     f' title="influence">{float(value):.2f}</div>{truth}</div>')
    legend = ("source frame, influence (Eq. 12; purple low, yellow high)"
              + (", in episode (frame labels)" if st.truth is not None else "")
              + ("; red: the face box the crop was cut from" if st.boxes is not None and st.source is not None else ""))
    return f'<h3>{esc(st.title)}</h3><div class="strip">{"".join(cells)}</div><p class="note">{esc(legend)}</p>'


def details(summary: str, value: Any) -> str:
    """A JSON value, folded under `summary`."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>"


def page(title: str, sections: Sequence[str], subtitle: str = "") -> str:
    """The whole HTML document: inline style and script, nothing loaded from elsewhere."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>{esc(title)}</title><style>{CSS}</style><script>{SCRIPT}</script></head><body>"
            f"<h1>{esc(title)}</h1>" + (f'<p class="note">{esc(subtitle)}</p>' if subtitle else "")
            + "\n".join(sections) + "</body></html>\n")


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{esc(title)}</h2>{''.join(parts)}</section>"


# -- what a folder holds -------------------------------------------------------------------------


def store_fingerprints(stores: Sequence[str]) -> str:
    """Each store's fingerprint, folded; a store that cannot be opened says why instead."""
    from .store import FeatureStore

    parts = []
    for path in dict.fromkeys(stores):
        try:
            with FeatureStore.open(path) as store:
                parts.append(details(f"store fingerprint: {path}", store.fingerprint))
        except (TgdferError, OSError) as e:
            parts.append(f'<p class="note">store {esc(path)}: not readable here ({esc(e)})</p>')
    return "".join(parts)


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except OSError as e:
        raise os_error(path, e, "read") from e
    except ValueError as e:  # pandas' ParserError and friends: a damaged table
        raise TgdferError(f"{path}: not a readable table ({str(e).splitlines()[0]})") from e


def _read_json(path: Path) -> Any:
    from .limits import load_json

    try:
        return load_json(path.read_bytes(), str(path))
    except OSError as e:
        raise os_error(path, e, "read") from e


def runs_report(runs: Sequence[Path], title: str, device: str = "auto", influence: Optional[str] = None,
                trust_weights: bool = False, extra: Sequence[str] = ()) -> str:
    """The page of one run or an evaluation's runs: result table with intervals, epochs (one run),
    confusion matrices, frame strips, config and store fingerprint. `extra`: sections placed after the results."""
    from .evaluation import DECIMALS, check_influence, confidence_strips, frame_truth, load_run, results_table, score_run
    from .run import CONFIG, METRICS, load_run_config

    runs = [Path(r) for r in runs]
    influence = check_influence(influence or load_run_config(runs[0])[0].influence)
    scores, strips, stores = [], [], []
    for run in runs:
        lr = load_run(run, device, trust_weights)
        s = score_run(lr)
        scores.append(s)
        strips += confidence_strips(lr, s, frame_truth(lr), influence)
        stores.append(lr.cfg.store)
    results, protocol = results_table(scores)
    classes = scores[0].classes
    shown = with_interval(results)
    note = "Test clips of each run, view 0, re-scored from its checkpoint." + (
        " 95% interval: t interval of the mean over the folds." if "95% interval" in shown.index else "")
    parts = [section("Results (%)", table(shown, f"TG-DFER results (%), model selection: {protocol}", note,
                                          DECIMALS["results"], SUMMARY_ROWS)), *extra]
    if len(runs) == 1 and (runs[0] / METRICS).is_file():
        epochs = _read_csv(runs[0] / METRICS)
        if "epoch" not in epochs.columns:
            raise TgdferError(f"{runs[0] / METRICS}: no epoch column; it is written by `tgdfer train-head`")
        parts.append(section("Epochs", table(epochs.set_index("epoch").dropna(axis=1, how="all"), "metrics.csv",
                                             decimals=4)))
    confs = {s.name: np.asarray(s.test.confusion) for s in scores}
    matrices = [confusion(c, classes, f"{name} (n = {int(c.sum())})") for name, c in confs.items()]
    if len(confs) > 1:
        matrices.append(confusion(mean_confusion(list(confs.values())), classes,
                                  f"mean of {len(confs)} folds", percent=True))
    parts.append(section("Confusion matrices (% of the true class)", *matrices))
    if strips:
        parts.append(section(f"Frames of the most and least confident test clips ({influence} influence)",
                             *map(strip, strips)))
    parts.append(section("Config and store", *(details(f"{run / CONFIG}", _read_json(run / CONFIG)) for run in runs),
                         store_fingerprints(stores)))
    return page(title, parts, f"runs: {', '.join(str(r) for r in runs)}")


def evaluation_report(folder: Path, record: Mapping, device: str = "auto", trust_weights: bool = False) -> str:
    """An evaluation folder's page: its runs re-scored, plus the Table 6 and localisation tables it saved."""
    from .evaluation import DECIMALS, LOCALISATION_TITLE, TABLE6_TITLE

    extra = []
    for stem, caption, decimals in (("table6", TABLE6_TITLE, DECIMALS["table6"]),
                                    ("localisation", LOCALISATION_TITLE, DECIMALS["localisation"])):
        if (folder / f"{stem}.csv").is_file():
            extra.append(section(caption, table(_read_csv(folder / f"{stem}.csv", index_col=0), stem + ".csv",
                                                decimals=decimals)))
    return runs_report([Path(r) for r in record["runs"]], f"Evaluation {folder}", device,
                       record.get("influence"), trust_weights, extra)


def sweep_report(folder: Path) -> str:
    """A sweep folder's page: the paper-layout table with "vs best" intervals, every run, the plot,
    each point's confusion matrix (mean over its runs), points.json, each point's pipeline, the stores."""
    from .metrics import Scores
    from .run import load_run_config, replica_runs
    from .sweep import comparison_note, paper_table, report

    df, paths = report(folder)
    meta = _read_json(folder / "points.json")
    runs = df[df["fold"] != "mean"].set_index("point")
    parts = [section("Results (%), mean over runs",
                     table(paper_table(df), meta.get("title") or folder.name, comparison_note(df))),
             section("Every run", table(runs.drop(columns=["error"]), "results.csv"))]
    png = folder / "results.png"
    if png in paths:
        parts.append(section("Plot", image(png, "UAR and WAR of each point")))
    matrices, points, stores = [], [], []
    for p in meta["points"]:
        confs, classes = [], None
        for row in runs.loc[[p["name"]]].itertuples() if p["name"] in runs.index else []:
            if row.status != "done":
                continue
            reps = replica_runs(folder / p["name"], [row.fold] if row.fold != "" else [], meta["seeds"])
            run = Path(reps[meta["seeds"].index(row.seed)].out)  # the run folder `tgdfer sweep` trained
            scores = Scores.from_dict(_read_json(run / "final.json")["test"])
            confs.append(np.asarray(scores.confusion))
            classes = list(scores.per_class)
            stores.append(load_run_config(run)[1].store)
        if confs:
            matrices.append(confusion(mean_confusion(confs), classes, f"{p['name']} (mean of {len(confs)} runs)",
                                      percent=True))
        info = folder / p["name"] / "point.json"
        if info.is_file():
            points.append(details(f"{p['name']}: point.json (values, resolved pipeline, status)", _read_json(info)))
    if matrices:
        parts.append(section("Confusion matrices (% of the true class)", *matrices))
    parts.append(section("Config and store", details("points.json", meta), *points, store_fingerprints(stores)))
    return page(f"Sweep {meta.get('title') or folder.name}", parts, f"sweep folder: {folder}")


def folder_kind(folder: Path) -> str:
    """"sweep", "evaluation" or "run", from the files `tgdfer sweep`, `evaluate` and `train-head` write."""
    from .evaluation import RECORD
    from .run import CONFIG

    for name, kind in (("points.json", "sweep"), (RECORD, "evaluation"), (CONFIG, "run")):
        if (folder / name).is_file():
            return kind
    raise TgdferError(f"{folder}: not a sweep, evaluation or run folder (no points.json, evaluation.json "
                      "or config.json)")


def write_report(folder: str | Path, out: Optional[str | Path] = None, device: str = "auto",
                 trust_weights: bool = False) -> Path:
    """Write the HTML report of the sweep, evaluation or run in `folder` to `out` (default: folder/report.html)."""
    from .evaluation import read_record
    from .tmpfiles import tmp_path

    folder = Path(folder)
    kind = folder_kind(folder)
    if kind == "sweep":
        text = sweep_report(folder)
    elif kind == "evaluation":
        text = evaluation_report(folder, read_record(folder), device, trust_weights)
    else:
        text = runs_report([folder], f"Run {folder}", device, trust_weights=trust_weights)
    out = Path(out) if out is not None else folder / "report.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_path(out)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as e:
        raise os_error(out, e, "write the report") from e
    return out
