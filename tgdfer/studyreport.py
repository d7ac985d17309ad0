"""`tgdfer report` over a study: several sweep folders that are one fold each, or a per-run CSV.

A sweep folder runs its points on the folds of one dataset. Some studies instead run the same sweep
once per *dataset*: each study fold is a train/test dataset with its own store (fold = None), written
into its own sweep folder (docs/cache-study.md: runs/sweeps/cache_study/fold1 ... fold5). `merged_frame`
puts such folders together so that each is one fold of a single results frame; `runs_frame` reads a
per-run CSV (one row per run: point, fold, seed, metrics; e.g. docs/cache_study_runs.csv) into the same
frame. Either then gets the table of a single sweep (`sweep.paper_table`, `sweep.write_results`):
seeds averaged within a fold, differences paired over folds, Holm over the table's comparisons, the
MDE beside every difference not found (tgdfer.stats).

The study fold of a merged folder: the fold its sweep ran on when it ran on one fold of a
cross-validated dataset; for a train/test dataset (fold = None) the number in the folder's name,
`fold<k>` (fold1, fold1_aa, study_fold3). The name, not the order on the command line, so that
`fold*` in any order, and a second set of folders for the same folds, pair fold k with fold k.

A second set of folders over the same folds (an A/A control: a point trained again with other
seeds, e.g. fold<k>_aa) is given a label, `--label GLOB=TEXT`: the points of every folder whose name
matches GLOB are reported as "POINT TEXT" (V8 -> "V8 A/A"), rows of their own compared like any other
point (fold means paired with the other point's, over the folds both have). Labelling is the honest
minimum: merging the rerun into V8 as extra seeds would hide the control it is; without a label the
two folders of fold 1 holding V8 are refused.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError, TgdferError
from .sweep import (DIGITS, read_json_or_none, read_sweep_meta, comparison_note, metric_columns, paper_table, report,
                    results_frame, sweep_title, write_results)

FOLD_IN_NAME = re.compile(r"fold(\d+)", re.I)
KEYS = ("point", "fold", "seed")
RUN_COLUMNS = ("epoch", "status", "error")  # the rest of a results frame's run columns


@dataclass
class StudyReport:
    """What `report_study` found and wrote."""

    results: pd.DataFrame  # a row per point x fold x seed, then each point's "mean" row (sweep.results_frame)
    table: pd.DataFrame  # sweep.paper_table
    title: str
    note: str  # what the table holds and how it was compared (printed and written under it)
    paths: list[Path]  # the files written (none without `out` for several folders or a CSV)


def report_study(sources: Sequence[str | Path], out: Optional[str | Path] = None, reference: Optional[str] = None,
                 labels: Sequence[str] = ()) -> StudyReport:
    """The table of one sweep folder, of several (one study fold each, `merged_frame`), or of a per-run
    CSV (`runs_frame`); written (results.csv, results.md, results.png) into `out`. One sweep folder
    writes into itself by default; several folders or a CSV write only where `out` says."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise ConfigError("FOLDER", "give a sweep folder, several (one study fold each), or a per-run CSV")
    if labels and len(sources) < 2:
        raise ConfigError("--label", "names the points of some of several merged sweep folders; give several")
    files = [s for s in sources if s.is_file()]
    if files and len(sources) > 1:
        raise ConfigError("FOLDER", f"{files[0]} is a file: give one per-run CSV alone, or sweep folders only")
    for s in sources:
        if not s.exists():
            raise TgdferError(f"{s}: no such folder or file")
    if len(sources) == 1 and not files:  # one sweep: its own folds and title
        inside = sorted(d.parent.name for d in sources[0].glob("*/points.json"))
        if inside and not (sources[0] / "points.json").is_file():
            raise TgdferError(f"{sources[0]}: not a sweep folder but holds {len(inside)} (e.g. "
                              f"{inside[0]}); a study of one sweep folder per fold names them all: "
                              f"tgdfer report {sources[0]}/fold*")
        df, paths = report(sources[0], reference=reference, dest=out)
        title = f"{sweep_title(sources[0])}: mean over runs (%), {sources[0]}"
        return StudyReport(df, paper_table(df, reference), title, comparison_note(df, reference), paths)
    if files:
        df, what = runs_frame(files[0]), f"{files[0].name}"
    else:
        df, what = merged_frame(sources, labels)
    table = paper_table(df, reference)
    runs = df[df["fold"] != "mean"]
    folds, seeds = (sorted(set(runs[c]), key=lambda v: (str(type(v)), v)) for c in ("fold", "seed"))
    per = runs.groupby("point").size()
    title = (f"{what} (folds {', '.join(map(str, folds))} x seeds {', '.join(map(str, seeds))}; "
             f"{per.max() if per.nunique() == 1 else f'{per.min()}-{per.max()}'} runs per point)")
    where = (f"{len(sources)} sweep folders, one study fold each: {', '.join(str(s) for s in sources)}" if not files
             else f"the per-run table {files[0]}")
    renamed = "".join(f" Rows 'POINT {text}': the points of the folders named like {glob}."
                      for glob, text in parse_labels(labels))
    note = f"{' / '.join(metric_columns(df))} of each run, from {where}.{renamed}"
    paths = write_results(df, Path(out), title, note, reference=reference) if out is not None else []
    return StudyReport(df, table, title, " ".join(filter(None, [note, comparison_note(df, reference)])), paths)


# -- a per-run CSV ------------------------------------------------------------------------------------


def runs_frame(path: str | Path) -> pd.DataFrame:
    """A per-run CSV as a results frame: a row per run, then each point's mean row.

    The CSV needs columns point, fold, seed, UAR and WAR; AUROC and AUROC sim are compared too when
    present. Rows whose fold is "mean" (a results.csv written by `tgdfer report` has them) are dropped
    and the means recomputed; epoch, status and error are kept where the CSV has them (status else
    "done" for a row with a metric). Every other column is carried over to the mean row: the point's
    mean where numeric (train_s), else its first value (a swept field's label).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise TgdferError(f"{path}: not a per-run CSV ({type(e).__name__}: {e})") from None
    missing = [c for c in (*KEYS, "UAR", "WAR") if c not in df.columns]
    if missing:
        raise TgdferError(f"{path}: no column {missing[0]!r}; a per-run CSV has one row per run with columns "
                          "point, fold, seed, UAR, WAR (and optionally AUROC, AUROC sim, ...), "
                          "e.g. docs/cache_study_runs.csv")
    df = df[df["fold"].astype(str) != "mean"].copy()
    if df.empty:
        raise TgdferError(f"{path}: holds no run")
    for c in ("fold", "seed"):  # a results.csv read back has them as text, beside its "mean" rows
        number = pd.to_numeric(df[c], errors="coerce")
        if number.notna().all() and (number == number.round()).all():
            df[c] = number.astype(int)
    df["point"] = df["point"].astype(str)
    twice = df[df.duplicated(list(KEYS), keep=False)]
    if len(twice):
        r = twice.iloc[0]
        raise TgdferError(f"{path}: point {r['point']!r}, fold {r['fold']}, seed {r['seed']} has "
                          f"{len(twice[(twice[list(KEYS)] == r[list(KEYS)]).all(axis=1)])} rows; a run must have one")
    metrics = metric_columns(df)
    for m in metrics:
        if not pd.api.types.is_numeric_dtype(df[m]):
            raise TgdferError(f"{path}: column {m!r} is not numeric")
    if "status" not in df.columns:
        df["status"] = np.where(df[metrics].notna().any(axis=1), "done", "pending")
    df["status"] = df["status"].map(lambda v: "pending" if pd.isna(v) else str(v))
    df["error"] = df["error"].map(lambda v: "" if pd.isna(v) else str(v)) if "error" in df.columns else ""
    df["epoch"] = pd.to_numeric(df["epoch"], errors="coerce").astype("Int64") if "epoch" in df.columns else pd.NA
    extra = [c for c in df.columns if c not in (*KEYS, *RUN_COLUMNS, *metrics)]
    fields = [c for c in extra if not pd.api.types.is_numeric_dtype(df[c])]
    numbers = [c for c in extra if c not in fields]
    df = df[["point", *fields, "fold", "seed", "epoch", *metrics, *numbers, "status", "error"]]
    return with_means(df.reset_index(drop=True), metrics, numbers)


def with_means(runs: pd.DataFrame, metrics: Sequence[str], numbers: Sequence[str] = ()) -> pd.DataFrame:
    """`runs` (one row per run) with each point's "mean" row after its runs: the mean of its finished
    runs' `metrics` (rounded to their DIGITS) and `numbers`, and how many runs finished ("15/15 done")."""
    rows = []
    for point, part in runs.groupby("point", sort=False):
        done = part[part["status"] == "done"]
        states = set(part["status"])
        state = "done" if states == {"done"} else ("failed" if "failed" in states else "pending")
        mean = {c: part[c].iloc[0] for c in part.columns}
        mean.update({"fold": "mean", "seed": "", "epoch": pd.NA, "status": f"{len(done)}/{len(part)} {state}",
                     "error": next((e for e in part["error"] if e), "")})
        for c in metrics:
            mean[c] = round(float(done[c].mean()), DIGITS[c]) if len(done) else np.nan
        for c in numbers:
            mean[c] = float(done[c].mean()) if len(done) else np.nan
        rows += [part, pd.DataFrame([mean], columns=part.columns)]
    out = pd.concat(rows, ignore_index=True)
    out["fold"], out["seed"] = out["fold"].astype(object), out["seed"].astype(object)
    return out


# -- several sweep folders, one study fold each ------------------------------------------------------------


@dataclass
class _Folder:
    path: Path
    meta: dict
    fold: int
    label: str  # "" or the --label text its name matched


def study_fold(folder: Path, meta: dict) -> int:
    """The study fold a merged sweep folder stands for (module docstring)."""
    folds = meta.get("folds") or [None]
    if len(folds) > 1:
        raise TgdferError(f"{folder}: a sweep over folds {', '.join(map(str, folds))}; merged sweep folders must "
                          f"each be one fold (a train/test dataset: fold = None): report it alone, "
                          f"`tgdfer report {folder}`")
    if folds[0] is not None:
        return int(folds[0])
    found = FOLD_IN_NAME.findall(folder.name)
    if len(found) != 1:
        raise TgdferError(f"{folder}: its sweep ran on a train/test split (fold = None), so its study fold is read "
                          f"from the folder's name, which must hold one fold<k> (e.g. fold1, fold1_aa)")
    return int(found[0])


def parse_labels(labels: Sequence[str]) -> list[tuple[str, str]]:
    """["*_aa=A/A"] -> [("*_aa", "A/A")]; a ConfigError naming --label otherwise."""
    out = []
    for item in labels:
        glob, sep, text = item.partition("=")
        if not sep or not glob.strip() or not text.strip():
            raise ConfigError("--label", f"give GLOB=TEXT, e.g. --label '*_aa=A/A' (the points of the folders named "
                                         f"like *_aa become 'V8 A/A'), got {item!r}")
        out.append((glob.strip(), text.strip()))
    return out


def _folders(paths: Sequence[Path], labels: Sequence[str]) -> list[_Folder]:
    rules = parse_labels(labels)
    used: set[str] = set()
    folders = []
    for path in paths:
        meta = read_sweep_meta(path)
        matched = [(g, t) for g, t in rules if fnmatch.fnmatchcase(path.name, g)]
        if len(matched) > 1:
            raise ConfigError("--label", f"{path} matches {matched[0][0]!r} and {matched[1][0]!r}: one label a folder")
        used.update(g for g, _ in matched)
        folders.append(_Folder(path, meta, study_fold(path, meta), matched[0][1] if matched else ""))
    unused = [g for g, _ in rules if g not in used]
    if unused:
        raise ConfigError("--label", f"{unused[0]!r} matches none of the folders' names "
                                     f"({', '.join(p.name for p in paths)})")
    return folders


def _check_groups(folders: list[_Folder]) -> None:
    """The folders of one label hold the same points (same values) and one folder per fold; no two give one row."""
    first: dict[str, _Folder] = {}
    seen: dict[tuple[str, int], _Folder] = {}
    for f in folders:
        ref = first.setdefault(f.label, f)
        mine = {p["name"]: p["values"] for p in f.meta["points"]}
        theirs = {p["name"]: p["values"] for p in ref.meta["points"]}
        if set(mine) != set(theirs):
            odd = sorted(set(mine) ^ set(theirs))
            raise TgdferError(f"{f.path}: holds other points than {ref.path} ({', '.join(odd)} in one only); merged "
                              "folders are one sweep run once per fold (another set of folders: --label GLOB=TEXT)")
        for name, values in mine.items():
            if values != theirs[name]:
                raise TgdferError(f"{f.path}: point {name!r} has other values ({values}) than in {ref.path} "
                                  f"({theirs[name]})")
        other = seen.setdefault((f.label, f.fold), f)
        if other is not f:
            name = max(other.path.name, f.path.name, key=len)
            m = FOLD_IN_NAME.search(name)
            glob = f"*{name[m.end():]}" if m and name[m.end():] else name
            hint = (f"; give one set of folders a name of its own, e.g. --label '{glob}=A/A' (its points "
                    "become 'POINT A/A')") if not f.label else ""
            raise TgdferError(f"{other.path} and {f.path} are both study fold {f.fold}"
                              f"{f' under --label {f.label!r}' if f.label else ''}{hint}")


def merged_frame(paths: Sequence[str | Path], labels: Sequence[str] = ()) -> tuple[pd.DataFrame, str]:
    """Several sweep folders, one study fold each (module docstring), as one results frame (a row per
    point x fold x seed with the folder's study fold, then each point's mean), and the first folder's
    title (what the sweep compares). A point that never started in any folder of its label (an A/A
    folder's other points) is left out."""
    folders = _folders([Path(p) for p in paths], labels)
    _check_groups(folders)
    parts = []
    for f in folders:
        df = results_frame(f.path)
        started = [p["name"] for p in f.meta["points"] if read_json_or_none(f.path / p["name"] / "point.json")]
        runs = df[df["fold"] != "mean"].assign(fold=f.fold, started=df["point"].isin(started))
        if f.label:
            runs = runs.assign(point=runs["point"] + " " + f.label)
        parts.append(runs)
    runs = pd.concat(parts, ignore_index=True)
    started = runs.groupby("point", sort=False)["started"].any()
    runs = runs[runs["point"].isin(started[started].index)].drop(columns="started")
    if runs.empty:
        raise TgdferError(f"no point has started in {', '.join(str(f.path) for f in folders)}")
    order = {p: i for i, p in enumerate(dict.fromkeys(runs["point"]))}
    runs = runs.sort_values(["point", "fold"], key=lambda c: c.map(order) if c.name == "point" else c,
                            kind="stable").reset_index(drop=True)
    return with_means(runs, metric_columns(runs)), folders[0].meta.get("title") or folders[0].path.name
