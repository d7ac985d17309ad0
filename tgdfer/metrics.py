"""DFER metrics (confusion, per-class recall, WAR, UAR) and the paper's result tables.

Shapes: N samples, C classes. Labels are 0-based ints 0..C-1 into the class set's names (tgdfer's
convention; DFEW order for the default 7 emotions, `labels.ClassSet` for any other set).
Metric functions return fractions in [0, 1]; the tables (`fold_table`, `split_table`) show
percent with 2 decimals, as the paper's Tables 1 and 2.

WAR (weighted average recall) is overall accuracy: trace(conf) / N.
UAR (unweighted average recall) is the mean of per-class recall over the classes PRESENT in the
ground truth: a class with no true sample has no recall (NaN in `class_recall`) and is left out
of the mean, whether or not it was predicted. This is scikit-learn's `balanced_accuracy_score`.
The DFER codebases (DFER-CLIP `computer_uar_war`, which TG-DFER follows) build sklearn's
`confusion_matrix(y_true, y_pred)` without `labels=`, i.e. over the classes seen in y_true OR
y_pred, row-normalise it and take the mean of its diagonal: a class absent from both is dropped
(as here), but a class that is predicted yet absent from y_true gives a 0/0 row and a NaN UAR.
On DFEW test folds and the FERV39k test set every class is present, so both give the same
number; the convention here only differs where the reference would print NaN.

For DFEW the reported numbers are the mean over the 5 folds of each fold's UAR, WAR and
per-class accuracy (DFER-CLIP's final "UAR/WAR" is the mean of the per-fold values, not a
pooled confusion over all folds). `fold_table` does the same.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .labels import CLASSES

log = logging.getLogger(__name__)

# The reference protocol's label for `protocol=`: DFER-CLIP keeps the checkpoint with the best
# test accuracy and reports it, which selects on the test fold (optimistic).
REFERENCE_PROTOCOL = "reference (best epoch chosen on the test fold)"


# ---------------------------------------------------------------------------------------------
# Confusion and scores


def _labels(x: Any, name: str) -> np.ndarray | torch.Tensor:
    """`x` as a 1-D integer array or tensor (tensors stay on their device); scores [N, C] -> argmax."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
    if x.ndim == 2:  # [N, C] scores or logits: the predicted class, on the scores' device
        x = x.argmax(1)
    if x.ndim != 1:
        raise ValueError(f"{name} must be labels [N] or scores [N, C], got shape {tuple(x.shape)}")
    is_int = (not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool
              if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.integer))
    if not is_int and len(x):
        raise ValueError(f"{name} must hold integer class labels, got dtype {x.dtype}")
    return x


def confusion(y_true: Any, y_pred: Any, classes: int = len(CLASSES)) -> np.ndarray:
    """Confusion matrix `[C, C]` int64: `conf[i, j]` = samples of true class i predicted as j.

    `y_true` labels `[N]`; `y_pred` labels `[N]` or scores `[N, C]` (argmax). numpy arrays, lists
    or torch tensors on any device: with a tensor the counting runs on its device and only the
    `[C, C]` counts are copied back. Labels outside 0..C-1 raise ValueError.
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred differ in length: {len(t)} vs {len(p)}")
    if isinstance(t, torch.Tensor) or isinstance(p, torch.Tensor):
        device = t.device if isinstance(t, torch.Tensor) else p.device
        t, p = (torch.as_tensor(v, device=device).long() for v in (t, p))
        if len(t):
            lo, hi = torch.stack([torch.minimum(t.min(), p.min()), torch.maximum(t.max(), p.max())]).tolist()
            _check_range(lo, hi, classes)
        counts = torch.bincount(t * classes + p, minlength=classes * classes).cpu().numpy()
    else:
        t, p = t.astype(np.int64, copy=False), p.astype(np.int64, copy=False)
        if len(t):
            _check_range(min(t.min(), p.min()), max(t.max(), p.max()), classes)
        counts = np.bincount(t * classes + p, minlength=classes * classes)
    return counts.reshape(classes, classes).astype(np.int64, copy=False)


def _check_range(lo: int, hi: int, classes: int) -> None:
    if lo < 0 or hi >= classes:
        raise ValueError(f"labels must lie in 0..{classes - 1} (0-based class indices), found {lo}..{hi}")


def class_recall(conf: np.ndarray) -> np.ndarray:
    """Per-class recall `[C]` float64 (the paper's per-expression accuracy); NaN for a class with no sample."""
    conf = np.asarray(conf)
    support = conf.sum(1)  # [C] true samples per class
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(conf) / support, np.nan)


def war(conf: np.ndarray) -> float:
    """Weighted average recall = overall accuracy, trace / N (NaN for an empty matrix)."""
    conf = np.asarray(conf)
    n = conf.sum()
    return float(np.trace(conf) / n) if n else math.nan


def uar(conf: np.ndarray) -> float:
    """Unweighted average recall: mean recall over the classes present in the ground truth.

    A class with no true sample is left out (see the module docstring for how this compares
    with the DFER reference code); NaN when no class has a sample.
    """
    recall = class_recall(conf)
    present = ~np.isnan(recall)
    return float(recall[present].mean()) if present.any() else math.nan


@dataclass
class Scores:
    """Scores of one evaluation (one fold or split). Rates are fractions in [0, 1]."""

    war: float  # overall accuracy
    uar: float  # mean per-class recall over classes present in the ground truth
    per_class: dict[str, float]  # class name -> recall (NaN: no sample of that class)
    confusion: list[list[int]]  # [C, C], rows = true class, columns = predicted class
    n: int  # number of samples scored

    @classmethod
    def from_confusion(cls, conf: np.ndarray, classes: Sequence[str] = CLASSES) -> Scores:
        """Scores from a confusion matrix `[C, C]` whose rows follow `classes`."""
        conf = np.asarray(conf, dtype=np.int64)
        if conf.shape != (len(classes), len(classes)):
            raise ValueError(f"confusion must be [{len(classes)}, {len(classes)}] for {len(classes)} classes, "
                             f"got {conf.shape}")
        recall = class_recall(conf)
        return cls(war=war(conf), uar=uar(conf), per_class=dict(zip(classes, recall.tolist())),
                   confusion=conf.tolist(), n=int(conf.sum()))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (NaN recalls become None)."""
        return {"war": _json_float(self.war), "uar": _json_float(self.uar),
                "per_class": {k: _json_float(v) for k, v in self.per_class.items()},
                "confusion": [list(map(int, row)) for row in self.confusion], "n": int(self.n)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scores:
        """Inverse of `to_dict` (None recalls become NaN)."""
        return cls(war=_float(d["war"]), uar=_float(d["uar"]),
                   per_class={k: _float(v) for k, v in d["per_class"].items()},
                   confusion=[list(map(int, row)) for row in d["confusion"]], n=int(d["n"]))


def _json_float(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _float(v: float | None) -> float:
    return math.nan if v is None else float(v)


def score(y_true: Any, y_pred: Any, classes: Sequence[str] = CLASSES) -> Scores:
    """WAR, UAR, per-class recall and confusion of predictions (labels [N] or scores [N, C])."""
    conf = confusion(y_true, y_pred, classes=len(classes))
    if conf.sum() == 0:
        raise ValueError("cannot score an empty set of predictions (y_true has no samples)")
    return Scores.from_confusion(conf, classes)


# ---------------------------------------------------------------------------------------------
# Result tables (paper Table 1: DFEW 5 folds; Table 2: FERV39k single split)


def _fold_label(key: str | int) -> tuple[int, str]:
    """(fold number, row label) of a results key: 3, "3", "fold 3", "set_3" -> (3, "fold 3")."""
    m = re.search(r"(\d+)\s*$", str(key))
    if m is None:
        raise ValueError(f"fold key {key!r} holds no fold number; use ints or names like 'fold 1'")
    k = int(m.group(1))
    return k, f"fold {k}"


def _metric_row(s: Scores) -> dict[str, float]:
    return {**s.per_class, "UAR": s.uar, "WAR": s.war}


def _metric_name(column: str, classes: Sequence[str]) -> str | None:
    """Canonical column of a tidy metric name (case-insensitive), None if it is not a metric."""
    lookup = {c.lower(): c for c in (*classes, "UAR", "WAR")}
    return lookup.get(str(column).strip().lower())


def _frame_from_tidy(df: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Wide frame [folds, metrics] of fractions from a tidy results frame.

    Long form: columns `fold`, `metric`, `value`. Wide form: a `fold` column and one column per
    metric (`uar`, `war`, class names; any case). Other columns (epoch, n, ...) are ignored.
    """
    if "fold" not in df.columns:
        raise ValueError(f"a results DataFrame needs a 'fold' column, got columns {list(df.columns)}")
    if {"metric", "value"} <= set(df.columns):
        long = df[["fold", "metric", "value"]]
    else:
        long = df.melt(id_vars="fold", var_name="metric", value_name="value")
    long = long.assign(metric=[_metric_name(m, classes) for m in long["metric"]]).dropna(subset=["metric"])
    dup = long.duplicated(["fold", "metric"])
    if dup.any():
        row = long[dup].iloc[0]
        raise ValueError(f"results DataFrame has more than one value for fold {row['fold']}, "
                         f"metric {row['metric']}; aggregate repeats (seeds, epochs) before making the table")
    wide = long.pivot(index="fold", columns="metric", values="value")
    for m in ("UAR", "WAR"):
        if m not in wide.columns:
            raise ValueError(f"results DataFrame has no {m} values (expected a '{m.lower()}' metric or column)")
    return wide.reindex(columns=[*classes, "UAR", "WAR"]).astype(float)


def _results_frame(results: Mapping[str | int, Scores] | pd.DataFrame,
                   classes: Sequence[str] | None) -> pd.DataFrame:
    """Wide frame of fractions, one row per fold (rows "fold k" in fold order)."""
    if isinstance(results, pd.DataFrame):
        wide = _frame_from_tidy(results, classes or CLASSES)
    else:
        if not results:
            raise ValueError("fold_table needs at least one fold's results")
        first = next(iter(results.values()))
        for k, s in results.items():
            if set(s.per_class) != set(first.per_class):
                raise ValueError(f"fold {k!r} scores classes {sorted(s.per_class)}, "
                                 f"another fold {sorted(first.per_class)}; all folds must use one class list")
        classes = classes or _ordered_classes(first.per_class)
        wide = pd.DataFrame({k: _metric_row(s) for k, s in results.items()}).T
        wide = wide.reindex(columns=[*classes, "UAR", "WAR"]).astype(float)
    folds = [_fold_label(k) for k in wide.index]
    if len({k for k, _ in folds}) != len(folds):
        raise ValueError(f"fold numbers repeat among keys {list(wide.index)}")
    wide.index = [label for _, label in folds]
    return wide.iloc[np.argsort([k for k, _ in folds], kind="stable")]


def _ordered_classes(per_class: Mapping[str, float]) -> list[str]:
    """The class columns: DFEW order when the names are the 7 DFEW classes, else as given."""
    return list(CLASSES) if set(per_class) == set(CLASSES) else list(per_class)


def _finish(wide: pd.DataFrame, index_name: str, protocol: str | None) -> pd.DataFrame:
    """Percent with 2 decimals; a last column "protocol" on every row when a protocol is named."""
    table = (wide * 100).round(2)
    table.index.name, table.columns.name = index_name, None
    if protocol:
        table["protocol"] = protocol
    return table


def fold_table(results: Mapping[str | int, Scores] | pd.DataFrame, *, std: bool = False,
               protocol: str | None = None, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """The DFEW k-fold result table in the layout of the paper's Table 1.

    Rows "fold 1".."fold K" (keys 1, "1", "fold 1" or "set_1" all name fold 1), then "mean"
    (and "std", the sample std over folds, if `std`). Columns: the per-class accuracies in label
    order (DFEW's Happiness .. Fear for the default set; any class set's own), then UAR and WAR, percent with 2 decimals. The mean row is the mean
    of the unrounded per-fold values, as DFER papers report the 5-fold mean; a class absent from
    a fold's test set (NaN) is averaged over the folds that have it.

    `results`: fold -> `Scores`, or a tidy DataFrame of fractions (long `fold, metric, value` or
    wide `fold, uar, war, <class names>`). `protocol` adds a last column "protocol" holding it on
    every row, kept in the CSV and the markdown (use `REFERENCE_PROTOCOL` for results whose epoch
    was chosen on the test fold, so they can never pass for the default protocol's).
    """
    wide = _results_frame(results, classes)
    summary = {"mean": wide.mean()}
    if std:
        summary["std"] = wide.std(ddof=1)
    wide = pd.concat([wide, pd.DataFrame(summary).T])
    return _finish(wide, "fold", protocol)


def split_table(results: Scores | Mapping[str, Scores], *, split: str = "test", per_class: bool = True,
                protocol: str | None = None) -> pd.DataFrame:
    """A single-split result table (FERV39k) in the layout of the paper's Table 2.

    One row per split (`results` a `Scores`: one row named `split`; or split name -> `Scores`),
    columns UAR, WAR, then, if `per_class`, the per-class accuracies (label order; DFEW's for the 7). Percent with 2
    decimals; `protocol` as in `fold_table`.
    """
    if isinstance(results, Scores):
        results = {split: results}
    if not results:
        raise ValueError("split_table needs at least one split's results")
    classes = _ordered_classes(next(iter(results.values())).per_class)
    columns = ["UAR", "WAR", *(classes if per_class else [])]
    wide = pd.DataFrame({k: _metric_row(s) for k, s in results.items()}).T
    return _finish(wide.reindex(columns=columns).astype(float), "split", protocol)


# ---------------------------------------------------------------------------------------------
# Rendering


def format_cell(v: Any, decimals: int = 2) -> str:
    """A table cell as tgdfer shows it in Markdown and on screen: floats with `decimals` decimals, NaN as "-"."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "-"  # the paper's mark for a value not reported
    if isinstance(v, (float, np.floating)):
        return f"{v:.{decimals}f}"
    return str(v).replace("|", r"\|")


def to_markdown(df: pd.DataFrame, title: str | None = None, note: str | None = None, decimals: int = 2) -> str:
    """`df` as a GitHub pipe table (index as first column), floats with `decimals` decimals, NaN as "-".

    `title` is printed in bold above the table, `note` as a paragraph below it.
    """
    header = [str(df.index.name or ""), *map(str, df.columns)]
    numeric = [False, *(pd.api.types.is_numeric_dtype(t) for t in df.dtypes)]
    rows = [[format_cell(i, decimals), *(format_cell(v, decimals) for v in r)]
            for i, r in zip(df.index, df.itertuples(index=False))]
    widths = [max(3, *(len(r[j]) for r in [header, *rows])) for j in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(widths, numeric)) + "|"
    parts = [f"**{title}**", ""] if title else []
    parts += [line(header), rule, *map(line, rows)]
    if note:
        parts += ["", note]
    return "\n".join(parts) + "\n"


def save_table(df: pd.DataFrame, stem: str | Path, title: str | None = None,
               note: str | None = None, decimals: int = 2) -> tuple[Path, Path]:
    """Write `stem.csv` (read back with `pd.read_csv(path, index_col=0)`) and `stem.md`, both with `decimals`."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, md = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    df.round(decimals).to_csv(csv, float_format=f"%.{decimals}f")
    md.write_text(to_markdown(df, title=title, note=note, decimals=decimals), encoding="utf-8")
    log.info("wrote %s and %s", csv, md)
    return csv, md
