"""Annotation readers: DFEW, FERV39k, plain lists and generic CSV -> one clip table.

Every reader returns a `ClipTable`: `table` follows the clip-table contract (columns `clip_id`
str, `path` str, `label` int64 0..6, `fold` Int64, `split` string, `n_frames` Int64, rows sorted
by `clip_id`) and `skipped` lists the clips left out with `missing="skip"` (`source`, `line`,
`clip_id`, `reason`). `load_clips(kind, **kwargs)` picks a reader from `READERS` by name.

Formats (what each reader expects, and where the format was found)
- DFEW (`read_dfew`): `EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv`, header
  `video_name,label`, label 1..7 in `labels.CLASSES` order; `video_name` is the clip number,
  written padded ("00001") or not ("1"). Frames live in `clip_224x224/<5-digit id>/`, original
  videos as `<id>.mp4` (padded or not). fold = the k whose *test* csv lists the clip.
- FERV39k (`read_ferv39k`): the official setup lists `FERV39k/4_setups/All_scenes/train_All.csv`
  and `test_All.csv` are not comma-separated: one clip a line, `<Scene>/<Emotion>/<NNNN> <Emotion>`
  (e.g. `Action/Happy/0267 Happy`), space-separated, no header, label as a word from {Happy, Sad,
  Neutral, Angry, Surprise, Disgust, Fear}. Paths are relative to `FERV39k/2_ClipsforFaceCrop/`,
  which holds one folder of face-crop JPEGs per clip. Found in MAE-DFER's and SVFAP's
  `preprocess/ferv39k.py` (sunlicai/MAE-DFER, read with `header=None, delimiter=' '`) and in
  third-party loaders that document the line as `"Action/Sad/0010 Sad"`; DFER-CLIP's
  `annotation/FERV39K_train.txt` (zengqunzhao/DFER-CLIP) lists the same folders as
  `.../2_ClipsforFaceCrop/Action/Happy/0267 29 0`, label 0-based in the DFEW order, which is the
  plain list format below. Assumptions: no header line (one loader skips a first row; the
  official-format readers above do not); a clip's number is unique only within its
  Scene/Emotion folder, so `clip_id` is the whole relative path `Action/Happy/0267`.
- Plain lists (`read_list`): `path n_frames label` a line, separated by whitespace (so paths
  cannot hold spaces, as in DFER-CLIP's own loader), label 0..6, as DFER-CLIP's `annotation/*.txt`
  and SynthDFER's `lists/`. `clip_id` is the clip's path relative to the deepest folder that
  holds all clips of the table, video extension dropped (`frames/00001` and
  `videos/00001.mp4` under one root both give `00001`; FERV39k folders give `Action/Happy/0267`).
- Generic CSV (`read_csv`): a header row, a path and a label column (class names, aliases, or
  integers 0- or 1-based), optionally a fold or a split column and a clip-id column.

Which file plays which part (`read_list`, `read_ferv39k`): the `files` argument is a folder
(files matching `pattern` in it), one file, a list of files, or a mapping {role: file}. The role
comes from the mapping key or the file name: a `set_<k>_` before `train`/`test` makes it fold k's
list (`set_1_test.txt`, `DFEW_set_1_test.txt`), otherwise it is the train or test split
(`train.txt`, `FERV39K_test.txt`, `train_All.csv`). A table is either per-fold (fold = the k
whose test list holds the clip, every clip in exactly one test list; the train lists are only
checked against it) or train/test (split = the list that holds the clip), never both.

Frames and paths: paths in the table are absolute and resolved. Relative annotation paths are
relative to `root` (default: the annotation file's folder). n_frames is the number of image files
in a frame folder (os.scandir, no decoding); for a video, the annotated count when the
annotation has one, else the container's frame count from PyAV metadata, <NA> when the container
does not record it. When an annotated n_frames disagrees with a frame folder the folder's count
is kept (it is what the frame source will read; sampling past it would fail) and one warning
names the clips. A clip whose path points to nothing, to an empty frame folder or to an empty
video file raises AnnotationError with file and line (`missing="error"`), or is recorded in
`skipped` with the reason (`missing="skip"`).
"""

from __future__ import annotations

import csv
import inspect
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd

from .errors import AnnotationError, ConfigError
from .labels import CLASSES, NUM_CLASSES, class_index

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
Missing = Literal["error", "skip"]

COLUMNS: tuple[str, ...] = ("clip_id", "path", "label", "fold", "split", "n_frames")
DTYPES: dict[str, str] = {
    "clip_id": "str", "path": "str", "label": "int64", "fold": "Int64", "split": "string", "n_frames": "Int64",
}
SKIPPED_COLUMNS: tuple[str, ...] = ("source", "line", "clip_id", "reason")
IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
DFEW_TRAIN_DIR = "train(single-labeled)"
DFEW_TEST_DIR = "test(single-labeled)"
FERV39K_LABELS = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")  # CLASSES order

# A file's part from its name or mapping key: optional "set_<k>_" (fold k), then train or test.
_ROLE = re.compile(r"(?:^|_)(?:set_?(?P<fold>\d+)_)?(?P<part>train|test)(?=_|$)", re.IGNORECASE)


@dataclass
class ClipTable:
    """What a reader returns."""

    table: pd.DataFrame  # one row per clip: clip_id, path, label, fold, split, n_frames
    skipped: pd.DataFrame  # clips left out with missing="skip": source, line, clip_id, reason


@dataclass(frozen=True)
class _Entry:
    """One annotation line, before the clip is looked up on disk."""

    source: Path  # annotation file
    line: int  # 1-based line in source
    clip_id: str
    candidates: tuple[Path, ...]  # where the clip may be; the first that exists is used
    label: int  # 0-based
    n_frames: int | None  # annotated frame count, None when the format has none
    fold: int | None  # the fold k of the source file (per-fold annotations)
    part: str | None  # "train" | "test": the source file's part; None when the file has no split


@dataclass(frozen=True)
class _Role:
    """Which part an annotation file plays."""

    path: Path
    fold: int | None  # k for set_<k>_train / set_<k>_test, None for plain train/test
    part: str  # "train" | "test"


# ----------------------------------------------------------------------------- readers


def read_dfew(
    split_dir: PathLike,
    frames_dir: PathLike | None = None,
    *,
    videos_dir: PathLike | None = None,
    missing: Missing = "error",
) -> ClipTable:
    """DFEW's fold CSVs -> clip table (fold = the set whose test csv lists the clip).

    `split_dir` is DFEW's `EmoLabel_DataSplit` (holding `train(single-labeled)/set_<k>.csv` and
    `test(single-labeled)/set_<k>.csv`); clips are frame folders `frames_dir/<id>` or videos
    `videos_dir/<id>.mp4` (give exactly one of the two).
    """
    _check_missing(missing)
    if (frames_dir is None) == (videos_dir is None):
        raise ConfigError("frames_dir", "give exactly one of frames_dir (frame folders) or videos_dir (video files)")
    split_dir = Path(split_dir)
    clip_dir = _existing_dir(frames_dir if frames_dir is not None else videos_dir,
                             "frames_dir" if frames_dir is not None else "videos_dir")
    exts = ("",) if frames_dir is not None else VIDEO_EXTS
    entries: list[_Entry] = []
    for role in _dfew_files(split_dir):
        header, rows = _read_csv_rows(role.path, required=("video_name", "label"))
        for line, row in rows:
            number = _parse_int(row["video_name"], role.path, line, "video_name", low=1)
            label = _parse_int(row["label"], role.path, line, "label", low=1, high=NUM_CLASSES) - 1
            clip_id = f"{number:05d}"
            names = dict.fromkeys((clip_id, str(number)))  # padded first, then as written
            candidates = tuple(clip_dir / f"{name}{ext}" for ext in exts for name in names)
            entries.append(_Entry(role.path, line, clip_id, candidates, label, None, role.fold, role.part))
    return _build(entries, missing=missing)


def _dfew_files(split_dir: Path) -> list[_Role]:
    """The (train, test) csv pair of every set k, checked to come in pairs."""
    test_dir, train_dir = split_dir / DFEW_TEST_DIR, split_dir / DFEW_TRAIN_DIR
    for folder in (test_dir, train_dir):
        if not folder.is_dir():
            raise AnnotationError(folder, f"folder not found; split_dir must be DFEW's EmoLabel_DataSplit folder "
                                          f"holding '{DFEW_TRAIN_DIR}' and '{DFEW_TEST_DIR}'")
    sets = {d: {int(m[1]) for f in d.iterdir() if (m := re.fullmatch(r"set_(\d+)\.csv", f.name))}
            for d in (test_dir, train_dir)}
    if not sets[test_dir]:
        raise AnnotationError(test_dir, "no set_<k>.csv files in this folder")
    for have, need in ((test_dir, train_dir), (train_dir, test_dir)):
        unpaired = sorted(sets[have] - sets[need])
        if unpaired:
            k = unpaired[0]
            raise AnnotationError(need / f"set_{k}.csv", f"file not found; {have / f'set_{k}.csv'} needs its pair")
    return [_Role(d / f"set_{k}.csv", k, part)
            for k in sorted(sets[test_dir]) for d, part in ((train_dir, "train"), (test_dir, "test"))]


def read_ferv39k(
    lists: PathLike | Sequence[PathLike] | Mapping[str, PathLike],
    root: PathLike,
    *,
    pattern: str = "*.csv",
    missing: Missing = "error",
) -> ClipTable:
    """FERV39k's official setup lists (`Scene/Emotion/NNNN Emotion` a line) -> clip table.

    `lists` is a setup folder such as `FERV39k/4_setups/All_scenes` (its `train_*.csv` and
    `test_*.csv`), one file, a list of files, or {"train": file, "test": file}; `root` is the
    `2_ClipsforFaceCrop` folder the listed paths are relative to. split = the list holding the clip.
    """
    _check_missing(missing)
    root = _existing_dir(root, "root")
    entries: list[_Entry] = []
    for role in _annotation_files(lists, pattern):
        for line, text in _read_lines(role.path):
            fields = text.split()
            if len(fields) != 2:
                raise AnnotationError(role.path, f"expected 2 fields 'Scene/Emotion/NNNN Emotion', got {len(fields)}: "
                                                 f"{text!r}", line=line)
            rel, word = fields
            label = _parse_class(word, role.path, line, "label")
            clip_id = Path(rel).as_posix().strip("/")
            path = (root / rel).resolve()
            entries.append(_Entry(role.path, line, clip_id, (path,), label, None, role.fold, role.part))
    return _build(entries, missing=missing)


def read_list(
    files: PathLike | Sequence[PathLike] | Mapping[str, PathLike],
    root: PathLike | None = None,
    *,
    pattern: str = "*.txt",
    missing: Missing = "error",
) -> ClipTable:
    """Plain `path n_frames label` lists (label 0..6) -> clip table.

    `files` is a folder (its files matching `pattern`), one file, a list of files or a mapping
    {role: file}; roles `set_<k>_train`/`set_<k>_test` give folds (fold = k of the test list
    holding the clip), roles `train`/`test` give splits (see the module docstring). Relative
    paths are relative to `root` (default: each list file's folder).
    """
    _check_missing(missing)
    raw: list[tuple[_Role, int, Path, int, int]] = []  # role, line, absolute path, n_frames, label
    for role in _annotation_files(files, pattern):
        base = Path(root) if root is not None else role.path.parent
        for line, text in _read_lines(role.path):
            fields = text.split()
            if len(fields) != 3:
                raise AnnotationError(role.path, f"expected 3 fields 'path n_frames label', got {len(fields)}: "
                                                 f"{text!r}", line=line)
            n_frames = _parse_int(fields[1], role.path, line, "n_frames", low=1)
            label = _parse_int(fields[2], role.path, line, "label", low=0, high=NUM_CLASSES - 1)
            raw.append((role, line, (base / fields[0]).resolve(), n_frames, label))
    ids = _ids_from_paths([path for _, _, path, _, _ in raw])
    entries = [_Entry(role.path, line, clip_id, (path,), label, n, role.fold, role.part)
               for (role, line, path, n, label), clip_id in zip(raw, ids)]
    return _build(entries, missing=missing)


def read_csv(
    csv_file: PathLike,
    root: PathLike | None = None,
    *,
    path_col: str = "path",
    label_col: str = "label",
    fold_col: str | None = "fold",
    split_col: str | None = None,
    id_col: str | None = None,
    label_base: int = 0,
    missing: Missing = "error",
) -> ClipTable:
    """A CSV with a header row -> clip table.

    Labels are class names/aliases (`labels.class_index`) or integers counted from `label_base`
    (0 or 1). `fold_col` (integers >= 1) or `split_col` ("train"/"test") says where each clip is
    tested; set both to None for a table with neither. `id_col` names a clip-id column; without
    one, ids come from the paths as in `read_list`. Relative paths are relative to `root`
    (default: the CSV's folder).
    """
    _check_missing(missing)
    if label_base not in (0, 1):
        raise ConfigError("label_base", f"must be 0 or 1, got {label_base!r}")
    if fold_col is not None and split_col is not None:
        raise ConfigError("split_col", "give fold_col or split_col, not both (fold_col=None for a train/test split)")
    source = Path(csv_file)
    wanted = tuple(c for c in (path_col, label_col, fold_col, split_col, id_col) if c is not None)
    _, rows = _read_csv_rows(source, required=wanted)
    base = Path(root) if root is not None else source.parent
    paths = [(base / row[path_col]).resolve() for _, row in rows]
    ids = [row[id_col] for _, row in rows] if id_col is not None else _ids_from_paths(paths)
    entries = []
    for (line, row), path, clip_id in zip(rows, paths, ids):
        label = _parse_label(row[label_col], source, line, label_col, label_base)
        fold = _parse_int(row[fold_col], source, line, fold_col, low=1) if fold_col is not None else None
        part = _parse_split(row[split_col], source, line, split_col) if split_col is not None else None
        entries.append(_Entry(source, line, clip_id, (path,), label, None, fold, "test" if fold else part))
    return _build(entries, missing=missing)


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
            raise ConfigError(name, f"not an argument of the {kind!r} reader; it takes: {', '.join(params)}")
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and name not in kwargs:
            raise ConfigError(name, f"required by the {kind!r} reader")
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
    raise ConfigError("fold", "this clip table has neither folds nor a train/test split; "
                              "read it with a fold or split column")


# ----------------------------------------------------------------------------- annotation files


def _annotation_files(files: PathLike | Sequence[PathLike] | Mapping[str, PathLike], pattern: str) -> list[_Role]:
    """The annotation files with their roles (see the module docstring), checked for clashes."""
    if isinstance(files, Mapping):
        named = [(Path(p), str(key), True) for key, p in files.items()]
    elif isinstance(files, (str, os.PathLike)) and Path(files).is_dir():
        named = [(f, f.stem, False) for f in sorted(Path(files).glob(pattern)) if f.is_file()]
    elif isinstance(files, (str, os.PathLike)):
        if not Path(files).exists():
            raise AnnotationError(files, "annotation file or folder not found")
        named = [(Path(files), Path(files).stem, True)]
    else:
        named = [(Path(f), Path(f).stem, True) for f in files]
    roles = []
    for path, name, explicit in named:
        m = _ROLE.search(name)
        if m is not None:
            roles.append(_Role(path, int(m["fold"]) if m["fold"] else None, m["part"].lower()))
        elif explicit:
            raise AnnotationError(path, f"cannot tell the part from {name!r}: name it train/test or set_<k>_train/"
                                        f"set_<k>_test, or pass a mapping such as {{'train': ..., 'test': ...}}")
    if not roles:
        raise AnnotationError(files, f"no annotation files matching {pattern!r} named train/test or set_<k>_train/test")
    _check_roles(roles)
    return roles


def _check_roles(roles: list[_Role]) -> None:
    """One file per role; all per-fold or all train/test; per-fold needs test lists."""
    seen: dict[tuple[int | None, str], Path] = {}
    for r in roles:
        key = (r.fold, r.part)
        if key in seen:
            raise AnnotationError(r.path, f"both this file and {seen[key]} are the {_role_name(r)} list; "
                                          f"pass one (narrow the pattern or use a mapping)")
        seen[key] = r.path
    if len({r.fold is None for r in roles}) > 1:
        raise AnnotationError(roles[0].path, "mixes per-fold lists (set_<k>_train/test) with plain train/test lists; "
                                             "pass one kind")
    if roles[0].fold is not None and not any(r.part == "test" for r in roles):
        raise AnnotationError(roles[0].path, "per-fold lists need the test lists (set_<k>_test): a clip's fold is "
                                             "the test list that holds it")


def _role_name(role: _Role) -> str:
    return role.part if role.fold is None else f"set_{role.fold}_{role.part}"


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; AnnotationError if the file is missing or empty."""
    text = _read_text(path)
    lines = [(i, s.strip()) for i, s in enumerate(text.splitlines(), start=1) if s.strip()]
    if not lines:
        raise AnnotationError(path, "holds no clips")
    return lines


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AnnotationError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(path, f"cannot read: {e}") from None


def _read_csv_rows(path: Path, required: Sequence[str]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line, {column: stripped cell}) rows of a CSV; checks columns and field counts."""
    reader = csv.reader(_read_text(path).splitlines())
    header = [h.strip() for h in next(reader, [])]
    absent = [c for c in required if c not in header]
    if absent:
        raise AnnotationError(path, f"no column {absent[0]!r} in the header (columns: {', '.join(header) or 'none'})",
                              line=1)
    rows = []
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise AnnotationError(path, f"expected {len(header)} fields ({','.join(header)}), got {len(fields)}",
                                  line=reader.line_num)
        rows.append((reader.line_num, {h: f.strip() for h, f in zip(header, fields)}))
    if not rows:
        raise AnnotationError(path, "holds no clips (only a header)")
    return header, rows


# ----------------------------------------------------------------------------- fields


def _parse_int(text: str, source: Path, line: int, field: str, *, low: int | None = None,
               high: int | None = None) -> int:
    """An integer field, checked against low..high; AnnotationError naming file, line and field."""
    try:
        value = int(text)
    except ValueError:
        raise AnnotationError(source, f"{field} {text!r} is not an integer", line=line) from None
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise AnnotationError(source, f"{field} {value} is outside the allowed range {allowed}", line=line)
    return value


def _parse_class(text: str, source: Path, line: int, field: str) -> int:
    try:
        return class_index(text)
    except ValueError:
        raise AnnotationError(source, f"{field} {text!r} is not an emotion; expected one of "
                                      f"{', '.join(CLASSES)} (or {', '.join(FERV39K_LABELS)})", line=line) from None


def _parse_label(text: str, source: Path, line: int, field: str, base: int) -> int:
    """A class name/alias, or an integer counted from `base`; returns 0-based."""
    if re.fullmatch(r"[+-]?\d+", text):
        return _parse_int(text, source, line, field, low=base, high=base + NUM_CLASSES - 1) - base
    return _parse_class(text, source, line, field)


def _parse_split(text: str, source: Path, line: int, field: str) -> str:
    part = text.lower()
    if part not in ("train", "test"):
        raise AnnotationError(source, f"{field} {text!r} must be 'train' or 'test'", line=line)
    return part


def _ids_from_paths(paths: Sequence[Path]) -> list[str]:
    """Clip ids: paths relative to the deepest folder holding all clips, video extension dropped."""
    if not paths:
        return []
    base = Path(os.path.commonpath([str(p.parent) for p in paths]))
    ids = []
    for p in paths:
        rel = p.relative_to(base)
        if rel.suffix.lower() in VIDEO_EXTS:
            rel = rel.with_suffix("")
        ids.append(rel.as_posix())
    return ids


# ----------------------------------------------------------------------------- clip table


def _build(entries: list[_Entry], *, missing: Missing) -> ClipTable:
    """Check entries across files, find each clip on disk, and assemble the table."""
    groups: dict[str, list[_Entry]] = {}
    for e in entries:
        groups.setdefault(e.clip_id, []).append(e)
    per_fold = any(e.fold is not None for e in entries)
    chosen = [_check_clip(groups[clip_id], per_fold) for clip_id in sorted(groups)]
    if per_fold:
        _warn_incomplete_train_lists(entries, chosen)
    rows, skipped, mismatched = [], [], []
    for e in chosen:
        found = _find_clip(e)
        if isinstance(found, str):
            if missing == "error":
                raise AnnotationError(e.source, f"clip {e.clip_id}: {found} (fix the path, or pass missing='skip' "
                                                f"to leave such clips out)", line=e.line)
            skipped.append((str(e.source), e.line, e.clip_id, found))
            continue
        path, counted = found  # counted: images in a frame folder, None for a video
        if counted is not None and e.n_frames not in (None, counted):
            mismatched.append((e, counted))
        n_frames = counted if counted is not None else (e.n_frames or _video_frames(path))
        fold, split = (e.fold, None) if per_fold else (None, e.part)
        rows.append((e.clip_id, str(path), e.label, fold, split, n_frames))
    _warn_mismatches(mismatched)
    if not rows:
        raise AnnotationError(chosen[0].source, f"every clip was skipped; the first: {skipped[0][3]}")
    if skipped:
        logger.warning("skipped %d of %d clips (first: %s:%d: %s)", len(skipped), len(chosen), *skipped[0][:2],
                       skipped[0][3])
    return ClipTable(_table(rows), _skipped_table(skipped))


def _check_clip(group: list[_Entry], per_fold: bool) -> _Entry:
    """The entry that places this clip (its test-list entry for folds), after cross-file checks."""
    ref = group[0]
    where = f"{ref.source}:{ref.line}"
    by_source: dict[Path, _Entry] = {}
    for e in group:
        if e.source in by_source:
            raise AnnotationError(e.source, f"clip {e.clip_id} is listed twice (lines {by_source[e.source].line} and "
                                            f"{e.line}); clip ids must be unique", line=e.line)
        by_source[e.source] = e
        if e.label != ref.label:
            raise AnnotationError(e.source, f"clip {e.clip_id} is labelled {CLASSES[e.label]} here but "
                                            f"{CLASSES[ref.label]} in {where}", line=e.line)
        if e.candidates != ref.candidates:
            raise AnnotationError(e.source, f"clip {e.clip_id} points to {e.candidates[0]} here but to "
                                            f"{ref.candidates[0]} in {where}", line=e.line)
        if e.n_frames != ref.n_frames:
            raise AnnotationError(e.source, f"clip {e.clip_id} has n_frames {e.n_frames} here but {ref.n_frames} "
                                            f"in {where}", line=e.line)
    return _placing_entry(group, per_fold)


def _placing_entry(group: list[_Entry], per_fold: bool) -> _Entry:
    tests = [e for e in group if e.part == "test"]
    if not per_fold:
        train = next((e for e in group if e.part == "train"), None)
        if train is not None and tests:
            raise AnnotationError(tests[0].source, f"clip {tests[0].clip_id} is in the test list here and in the "
                                                   f"train list {train.source}:{train.line}", line=tests[0].line)
        return group[0]
    ref = group[0]
    if not tests:
        raise AnnotationError(ref.source, f"clip {ref.clip_id} is in no test list; in per-fold annotations every "
                                          f"clip must be in exactly one test list (pass all of them)", line=ref.line)
    if len(tests) > 1:
        raise AnnotationError(tests[1].source, f"clip {ref.clip_id} is in two test lists: here and "
                                               f"{tests[0].source}:{tests[0].line}", line=tests[1].line)
    test = tests[0]
    clash = next((e for e in group if e.part == "train" and e.fold == test.fold), None)
    if clash is not None:
        raise AnnotationError(clash.source, f"clip {ref.clip_id} of fold {test.fold}'s test list "
                                            f"{test.source}:{test.line} is also in its train list", line=clash.line)
    return test


def _warn_incomplete_train_lists(entries: list[_Entry], chosen: list[_Entry]) -> None:
    """fold_split trains fold k on every clip tested elsewhere; say when a train list omits some."""
    listed: dict[int, set[str]] = {}
    for e in entries:
        if e.part == "train":
            listed.setdefault(e.fold, set()).add(e.clip_id)
    for k, ids in sorted(listed.items()):
        omitted = [e.clip_id for e in chosen if e.fold != k and e.clip_id not in ids]
        if omitted:
            logger.warning("fold %d's train list omits %d clips tested in other folds (e.g. %s); fold_split "
                           "trains fold %d on them anyway", k, len(omitted), omitted[0], k)


def _find_clip(e: _Entry) -> tuple[Path, int | None] | str:
    """(path, frame count of a folder or None for a video), or the reason the clip is unusable."""
    for path in e.candidates:
        if path.is_dir():
            n = _count_images(path)
            return (path, n) if n else f"frame folder {path} holds no images ({' '.join(IMAGE_EXTS)})"
        if path.is_file():
            return (path, None) if path.stat().st_size else f"video file {path} is empty"
    tried = " or ".join(str(p) for p in e.candidates[:2]) + (" ..." if len(e.candidates) > 2 else "")
    return f"nothing at {tried}"


def _count_images(folder: Path) -> int:
    with os.scandir(folder) as it:
        return sum(1 for d in it if d.name.lower().endswith(IMAGE_EXTS) and d.is_file())


def _video_frames(path: Path) -> int | None:
    """The frame count a video's container records (no decoding); None when it records none."""
    import av  # deferred: only needed for video clips

    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            n = streams[0].frames if streams else 0
    except (av.FFmpegError, OSError) as e:
        logger.warning("cannot read the frame count of %s (%s); n_frames left unknown", path, e)
        return None
    return n or None


def _warn_mismatches(mismatched: list[tuple[_Entry, int]]) -> None:
    if mismatched:
        e, n = mismatched[0]
        logger.warning("%d clips: annotated n_frames differs from the frame folder; using the folder's count "
                       "(first: %s:%d says %d, %s has %d images)", len(mismatched), e.source, e.line, e.n_frames,
                       e.candidates[0], n)


def _table(rows: list[tuple]) -> pd.DataFrame:
    """The clip table with the contract's columns and dtypes."""
    cols = list(zip(*rows)) if rows else [()] * len(COLUMNS)
    return pd.DataFrame({name: pd.array(list(values), dtype=DTYPES[name]) for name, values in zip(COLUMNS, cols)})


def _skipped_table(rows: list[tuple]) -> pd.DataFrame:
    cols = list(zip(*rows)) if rows else [()] * len(SKIPPED_COLUMNS)
    dtypes = ("str", "Int64", "str", "str")
    return pd.DataFrame({name: pd.array(list(v), dtype=d) for name, v, d in zip(SKIPPED_COLUMNS, cols, dtypes)})


def _existing_dir(path: PathLike, field: str) -> Path:
    if not Path(path).is_dir():
        raise ConfigError(field, f"folder not found: {path}")
    return Path(path).resolve()


def _check_missing(missing: str) -> None:
    if missing not in ("error", "skip"):
        raise ConfigError("missing", f"must be 'error' or 'skip', got {missing!r}")
