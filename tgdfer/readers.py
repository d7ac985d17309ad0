"""Annotation readers: DFEW, FERV39k, plain lists and generic CSV -> one clip table.

The front door: `load_clips(kind, **kwargs)` picks a reader from `READERS` by name, and
`fold_split` gives a clip table's train and test rows. Every reader returns a `ClipTable`:
`table` follows the clip-table contract (columns `clip_id` str, `path` str, `label` int64
0..K-1 into the class names, `fold` Int64, `split` string, `n_frames` Int64, rows sorted by
`clip_id`) and `skipped` lists the clips left out with
`missing="skip"` (`source`, `line`, `clip_id`, `reason`, and the clip's `label`, `fold`, `split`,
`path` as annotated). docs/datasets.md shows a pipeline snippet for every format.

Where each format lives: one module per format family says what its reader expects and where
the format was found: `dfewformat` (`read_dfew`: DFEW's fold split files and their folder
layouts), `ferv39kformat` (`read_ferv39k`: FERV39k's official setup lists), `listformat`
(`read_list`: whitespace-separated lists, DFER-CLIP's and SynthDFER's), `csvformat`
(`read_csv`: any CSV or TSV with a header row). What they share: `annotations` (which part each
annotation file plays, its lines or CSV rows, label cells, path rewriting) and `cliptable` (the
clip table and `build_table`, the one row check every reader ends in: labels, missing files,
frame counts, folds, the skipped-row table). This module re-exports the names callers import
from `tgdfer.readers` (`__all__`).

Options every reader takes
- `class_names`: the class set labels index into (default `labels.CLASSES`, the 7 emotions). A
  label written as a word is matched case-insensitively against these names; the emotion
  aliases of `labels.py` (Happy, Angry, ...) apply only to the default set. Integer labels are
  checked against len(class_names).
- `label_names`: the file's integers mapped onto class names: integer `label_base + i` means
  `label_names[i]` (e.g. alphabetical ids 0..6 = Angry, Disgust, Fear, Happy, Neutral, Sad,
  Surprise). An integer just outside the range suggests the other `label_base` in the error; a
  file whose labels as a whole count from the other base is refused (`Labels.check_base`).
- `path_map` (list, csv, ferv39k): {"/their/prefix": "data/DFEW"} rewrites annotated paths
  written on another machine (longest matching prefix, whole path components, `\\` read as `/`);
  a prefix that matches no path is a ConfigError naming it. Clips missing under a common folder
  that does not exist here suggest the entry to add (`cliptable._path_map_hint`).
- `label_from_path` (list, csv, ferv39k): the label read from the annotated path, as a
  path-component index (`-2` = the parent folder, FERV39k's `<Scene>/<Emotion>/<NNNN>`) or a
  regular expression whose group `label` (or first group) is the class name. With a label
  column too, every row is checked: a disagreement is an error naming the row, or with
  `missing="skip"` a skipped row with both labels in its reason.
- `frame_cache` (list, csv, dfew, ferv39k): a JSON file caching the frame counts of videos
  (default `cache/frame_counts.json` under the working directory, never inside the dataset;
  `"none"` turns it off), keyed by absolute path, size and modification time.
- `missing`: "error" (default) or "skip": a clip that is missing or empty, or a row whose label
  is not a class or disagrees with its path, stops the read (AnnotationError naming file and
  line) or is left out and listed in `skipped` with the reason. Malformed files (wrong field
  counts, a clip listed twice, conflicting files) always stop it.
In TOML there is no null: an optional column or file is switched off with `"none"` (or `""`).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable

import numpy as np
import pandas as pd

from .annotations import (DELIMITERS, FERV39K_LABELS, Labels, Missing, PathLabel, PathLike, PathMap,
                          class_lookup, csv_delimiter, make_labels, path_label_reader)
from .cliptable import (CACHE_VERSION, COLUMNS, DEFAULT_FRAME_CACHE, DTYPES, IMAGE_EXTS, NO_SPLIT, SKIPPED_AT_READ,
                        SKIPPED_COLUMNS, SKIPPED_DTYPES, VIDEO_EXTS, ClipTable, FrameCountCache)
from .config import check_type, did_you_mean
from .csvformat import read_csv
from .dfewformat import DFEW_TEST_DIR, DFEW_TRAIN_DIR, read_dfew
from .errors import ConfigError
from .ferv39kformat import read_ferv39k
from .listformat import LIST_FIELDS, read_list

__all__ = [
    # the front door
    "READERS", "load_clips", "fold_split", "read_dfew", "read_ferv39k", "read_list", "read_csv",
    # the clip table (cliptable)
    "ClipTable", "COLUMNS", "DTYPES", "SKIPPED_COLUMNS", "SKIPPED_DTYPES", "SKIPPED_AT_READ", "NO_SPLIT",
    "IMAGE_EXTS", "VIDEO_EXTS", "FrameCountCache", "CACHE_VERSION", "DEFAULT_FRAME_CACHE",
    # annotation cells and files (annotations) and the formats' constants
    "Labels", "class_lookup", "make_labels", "PathMap", "path_label_reader", "csv_delimiter", "DELIMITERS",
    "FERV39K_LABELS", "PathLike", "Missing", "PathLabel", "DFEW_TRAIN_DIR", "DFEW_TEST_DIR", "LIST_FIELDS",
]


READERS: dict[str, Callable[..., ClipTable]] = {
    "dfew": read_dfew,
    "ferv39k": read_ferv39k,
    "list": read_list,
    "csv": read_csv,
}


def load_clips(kind: str, **kwargs: Any) -> ClipTable:
    """Read a dataset's annotations with the reader registered as `kind` in READERS."""
    reader = READERS.get(kind)
    if reader is None:
        raise ConfigError("kind", f"unknown dataset kind {kind!r}; known kinds: {', '.join(READERS)}")
    params = inspect.signature(reader).parameters
    for name in kwargs:
        if name not in params:
            raise ConfigError(name, f"not an argument of the {kind!r} reader{did_you_mean(name, params)}; "
                                    f"it takes: {', '.join(params)}")
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and name not in kwargs:
            raise ConfigError(name, f"required by the {kind!r} reader")
    hints = typing.get_type_hints(reader)
    for name, value in kwargs.items():  # a wrong type is a one-line ConfigError here, not a TypeError inside
        check_type(value, hints[name], name)
    return reader(**kwargs)


def fold_split(table: pd.DataFrame, fold: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(train row positions, test row positions) of a clip table  # int64 [N_train], [N_test]

    Per-fold tables need `fold` (one of the table's folds): the test set is that fold, the train
    set every other clip. Train/test tables need `fold=None`.
    """
    folds = sorted(int(k) for k in table["fold"].dropna().unique())
    if folds:
        if fold is None or isinstance(fold, bool) or fold not in folds:
            raise ConfigError("fold", f"this dataset has folds {', '.join(map(str, folds))}; choose one, got {fold!r}")
        test = (table["fold"] == fold).to_numpy(dtype=bool, na_value=False)
        return np.flatnonzero(~test), np.flatnonzero(test)
    if table["split"].notna().any():
        if fold is not None:
            raise ConfigError("fold", f"this dataset has a train/test split, not folds; set fold to none, got {fold!r}")
        split = table["split"]
        return (np.flatnonzero((split == "train").to_numpy(dtype=bool, na_value=False)),
                np.flatnonzero((split == "test").to_numpy(dtype=bool, na_value=False)))
    raise ConfigError("data.args", f"{NO_SPLIT}; then extract again with --overwrite (the store keeps the clip "
                                   "table it was extracted with)")
