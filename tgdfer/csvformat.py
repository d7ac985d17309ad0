"""Generic CSV (or TSV) annotation files with a header row -> clip table.

Generic CSV (`read_csv`): a header row, a path and a label column, optionally a fold or a split
column (used when the header has one named `fold`/`split`; name another, or `"none"`), a
clip-id column, and for a table with neither, a separate list of the test clips. Or separate
files whose names say their part (S2D's FERV39k `train.csv` + `test.csv`), as for lists (`listformat`).
CSV-family files (csv, dfew) take `delimiter`; unset, it is sniffed (csv.Sniffer over ",\t;|").
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .annotations import (Missing, PathLabel, PathLike, PathMap, Role, annotation_files, check_delimiter,
                          check_missing, check_paths_arg, make_labels, parse_int, parse_split, path_label_reader,
                          read_csv_rows, read_test_list, role_name, row_label, toml_none)
from .cliptable import DEFAULT_FRAME_CACHE, ClipTable, Entry, FrameCountCache, build_table, ids_from_paths
from .errors import AnnotationError, ConfigError


def read_csv(
    csv_file: PathLike | Sequence[PathLike] | Mapping[str, PathLike],
    root: PathLike | None = None,
    *,
    path_col: str = "path",
    label_col: str | None = "label",
    fold_col: str | None = "auto",
    split_col: str | None = "auto",
    id_col: str | None = None,
    test_list: PathLike | None = None,
    pattern: str = "*.csv",
    delimiter: str | None = None,
    label_base: int = 0,
    label_names: Sequence[str] | None = None,
    label_from_path: PathLabel = None,
    path_map: Mapping[str, str] | None = None,
    class_names: Sequence[str] | None = None,
    frame_cache: PathLike | None = DEFAULT_FRAME_CACHE,
    missing: Missing = "error",
) -> ClipTable:
    """CSV files with a header row -> clip table.

    `csv_file` is one file (the whole set), or separate files that say their part: a list of
    files, a folder (its files matching `pattern`) or a mapping {role: file}, roles named as in
    `read_list` (`train`/`test` give the split, `set_<k>_train`/`set_<k>_test` the folds; e.g.
    S2D's FERV39k `train.csv` + `test.csv`). Fields are separated by `delimiter` (None: sniffed
    from each file, so TSVs read as they are). Labels are class names (aliases for the default
    7 classes) or integers counted from `label_base` (0 or 1; `label_names` maps them). Where
    each clip of a single file is tested:
    - `fold_col` (integers >= 1) or `split_col` ("train"/"test"); the default "auto" uses a
      column named `fold` or `split` when the header has one; "none" (or None) uses no column;
    - or, for a table with neither, `test_list`: a file naming the test clips, one a line (the
      clip's path as written in the CSV, or its clip id); every other clip is train.
    With none of these the table has neither folds nor a split (fine for `tgdfer check`).
    `id_col` names a clip-id column; without one, ids come from the paths as in `read_list`.
    `label_col = "none"` with `label_from_path` takes every label from the path. Relative paths
    are relative to `root` (default: each CSV's folder).
    """
    check_missing(missing)
    labels = make_labels(class_names, label_names, label_base)
    by_path, paths = path_label_reader(label_from_path), PathMap(path_map)
    label_col, id_col, test_list = toml_none(label_col), toml_none(id_col), toml_none(test_list)
    delimiter = check_delimiter(delimiter)
    if label_col is None and by_path is None:
        raise ConfigError("label_col", "is none, so label_from_path must say where the label is")
    roles = _csv_files(csv_file, pattern)
    split_by_file = roles[0].part != "all"
    if split_by_file and test_list is not None:
        raise ConfigError("test_list", "goes with one whole-set CSV; these files already say their part: "
                                       + ", ".join(str(r.path) for r in roles))
    raw = []  # (role, line, row, absolute path, fold, part)
    for role in roles:
        source = role.path
        header, rows = read_csv_rows(source, required=tuple(c for c in (path_col, label_col, id_col) if c),
                                      delimiter=delimiter, exact=(path_col,))
        if label_col is not None:
            labels.check_base(source, [row[label_col] for _, row in rows], label_col)
        fold_in, split_in = _auto_column(fold_col, "fold", header, source), _auto_column(split_col, "split", header,
                                                                                         source)
        if fold_in is not None and split_in is not None:
            raise ConfigError("split_col", f"give fold_col or split_col, not both (set fold_col = \"none\" for a "
                                           f"train/test split); {source} has both {fold_in!r} and {split_in!r}")
        if split_by_file and (fold_in is not None or split_in is not None):
            raise ConfigError(f"{'fold' if fold_in else 'split'}_col",
                              f"{source} is the {role_name(role)} file and also has the column "
                              f"{fold_in or split_in!r}; set {'fold' if fold_in else 'split'}_col = \"none\"")
        if test_list is not None and (fold_in is not None or split_in is not None):
            raise ConfigError("test_list", f"{source} already says where clips are tested (column "
                                           f"{fold_in or split_in!r}); set that column to \"none\" or drop test_list")
        base = Path(root) if root is not None else source.parent
        for line, row in rows:
            if not row[path_col].strip():  # read as a path, it would be the CSV's own folder
                raise AnnotationError(source, f"the {path_col} cell is empty: every row names its clip", line=line)
            fold = parse_int(row[fold_in], source, line, fold_in, low=1) if fold_in is not None else role.fold
            part = parse_split(row[split_in], source, line, split_in) if split_in is not None else None
            if split_by_file:
                part = role.part
            raw.append((role, line, row, (base / paths(row[path_col])).resolve(), fold, part))
    paths.check_used(", ".join(str(r.path) for r in roles))
    ids = [r[2][id_col] for r in raw] if id_col is not None else ids_from_paths([r[3] for r in raw])
    tested = read_test_list(Path(test_list), [r[2][path_col] for r in raw], ids) if test_list else None
    entries = []
    for (role, line, row, path, fold, part), clip_id in zip(raw, ids):
        label, problem = row_label(labels, by_path, row[label_col] if label_col else None, row[path_col], role.path,
                                    line, label_col or "label", missing)
        if tested is not None:
            part = "test" if clip_id in tested else "train"
        if fold is not None and role.fold is None:
            part = "test"  # a fold column: the clip is tested in its fold
        entries.append(Entry(role.path, line, clip_id, (path,), label, None, fold, part, problem, row[path_col]))
    return build_table(entries, missing=missing, labels=labels, cache=FrameCountCache(frame_cache),
                  path_map=paths)


def _csv_files(csv_file: PathLike | Sequence[PathLike] | Mapping[str, PathLike], pattern: str) -> list[Role]:
    """One whole-set CSV (role "all"), or files that say their part (`annotation_files`)."""
    check_paths_arg(csv_file, "csv_file")
    if isinstance(csv_file, (str, os.PathLike)) and not Path(csv_file).is_dir():
        return [Role(Path(csv_file), None, "all")]
    if isinstance(csv_file, Sequence) and not isinstance(csv_file, str) and len(csv_file) == 1:
        return _csv_files(csv_file[0], pattern)
    return annotation_files(csv_file, pattern, "csv_file")


def _auto_column(value: str | None, name: str, header: list[str], source: Path) -> str | None:
    """fold_col / split_col: "auto" = the column `name` if the header has it; "none" = no column."""
    value = toml_none(value)
    if value == "auto":
        return name if name in header else None
    if value is not None and value not in header:
        raise AnnotationError(source, f"no column {value!r} in the header (columns: {', '.join(header)}); set "
                                      f"{name}_col to \"none\" if the file has no {name} column", line=1)
    return value
