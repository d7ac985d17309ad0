"""DFEW's annotation format: its fold split files, in the folder layouts they come in -> clip table.

DFEW (`read_dfew`): `EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv`, header
`video_name,label`, label 1..7 in `labels.CLASSES` order (`label_base=0` for files counting
from 0); `video_name` is the clip number, written padded ("00001") or not ("1"). Inside the two
folders the files may also carry their part (`train_set_<k>.csv`/`test_set_<k>.csv`, as S2D
publishes them, 0-based). The split files may also lie in one folder as
`train_set_<k>.csv`/`test_set_<k>.csv` (or `set_<k>_train.csv`/`set_<k>_test.csv`). Frames live
in `clip_224x224/<5-digit id>/`, original videos as `<id>.mp4` (padded or not). fold = the k
whose *test* csv lists the clip. The split files are CSV-family files: `delimiter` as in
`csvformat` (unset, it is sniffed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .annotations import (Missing, PathLike, Role, check_delimiter, check_missing, check_roles, existing_dir,
                          make_labels, parse_int, read_csv_rows, role_of, row_label, toml_none)
from .cliptable import DEFAULT_FRAME_CACHE, VIDEO_EXTS, ClipTable, Entry, FrameCountCache, build_table
from .errors import AnnotationError, ConfigError


DFEW_TRAIN_DIR = "train(single-labeled)"
DFEW_TEST_DIR = "test(single-labeled)"


def read_dfew(
    split_dir: PathLike,
    frames_dir: PathLike | None = None,
    *,
    videos_dir: PathLike | None = None,
    id_col: str = "video_name",
    label_col: str = "label",
    label_base: int = 1,
    label_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    delimiter: str | None = None,
    frame_cache: PathLike | None = DEFAULT_FRAME_CACHE,
    missing: Missing = "error",
) -> ClipTable:
    """DFEW's fold CSVs -> clip table (fold = the set whose test csv lists the clip).

    `split_dir` is DFEW's `EmoLabel_DataSplit` (holding `train(single-labeled)/set_<k>.csv` and
    `test(single-labeled)/set_<k>.csv`, or in those folders `train_set_<k>.csv` and
    `test_set_<k>.csv` as S2D publishes them) or one folder of `train_set_<k>.csv`/`test_set_<k>.csv`
    (or `set_<k>_train.csv`/`set_<k>_test.csv`); clips are frame folders `frames_dir/<id>` or
    videos `videos_dir/<id>.mp4` (give exactly one of the two). Labels count from `label_base`
    (DFEW's own files: 1; a file that counts from the other base is refused, `Labels.check_base`);
    `label_names` maps them onto other class orders. `delimiter`: the field separator (None: sniffed).
    """
    check_missing(missing)
    delimiter = check_delimiter(delimiter)
    frames_dir, videos_dir = toml_none(frames_dir), toml_none(videos_dir)
    if (frames_dir is None) == (videos_dir is None):
        raise ConfigError("frames_dir", "give exactly one of frames_dir (frame folders) or videos_dir (video files)")
    labels = make_labels(class_names, label_names, label_base)
    split_dir = Path(split_dir)
    clip_dir = existing_dir(frames_dir if frames_dir is not None else videos_dir,
                             "frames_dir" if frames_dir is not None else "videos_dir")
    exts = ("",) if frames_dir is not None else VIDEO_EXTS
    entries: list[Entry] = []
    for role in _dfew_files(split_dir):
        header, rows = read_csv_rows(role.path, required=(id_col, label_col), delimiter=delimiter)
        labels.check_base(role.path, [row[label_col] for _, row in rows], label_col)
        for line, row in rows:
            number = parse_int(row[id_col], role.path, line, id_col, low=1)
            label, problem = row_label(labels, None, row[label_col], "", role.path, line, label_col, missing)
            clip_id = f"{number:05d}"
            names = dict.fromkeys((clip_id, str(number), row[id_col]))  # padded first, then as written
            candidates = tuple(clip_dir / f"{name}{ext}" for ext in exts for name in names)
            entries.append(Entry(role.path, line, clip_id, candidates, label, None, role.fold, role.part, problem))
    return build_table(entries, missing=missing, labels=labels, cache=FrameCountCache(frame_cache))


def _dfew_files(split_dir: Path) -> list[Role]:
    """The (train, test) csv pair of every set k, checked to come in pairs."""
    test_dir, train_dir = split_dir / DFEW_TEST_DIR, split_dir / DFEW_TRAIN_DIR
    if not test_dir.is_dir() and not train_dir.is_dir() and split_dir.is_dir():
        flat = [r for r in (role_of(f.stem, f) for f in sorted(split_dir.glob("*.csv"))) if r and r.fold]
        if flat:  # train_set_1.csv / test_set_1.csv (or set_1_train.csv ...) in one folder
            check_roles(flat)
            folds = {r.fold for r in flat if r.part == "test"}
            for r in flat:
                if r.fold not in folds:
                    raise AnnotationError(r.path, f"no test file for set {r.fold} beside it; each set needs its test csv")
            return sorted(flat, key=lambda r: (r.fold, r.part != "train"))
    for folder in (test_dir, train_dir):
        if not folder.is_dir():
            raise AnnotationError(folder, f"folder not found; split_dir must be DFEW's EmoLabel_DataSplit folder "
                                          f"holding '{DFEW_TRAIN_DIR}' and '{DFEW_TEST_DIR}', or a folder of "
                                          f"train_set_<k>.csv / test_set_<k>.csv files{_split_dir_hint(split_dir)}")
    sets = {d: _dfew_set_files(d, part) for d, part in ((test_dir, "test"), (train_dir, "train"))}
    if not sets[test_dir]:
        raise AnnotationError(test_dir, "no set_<k>.csv (or test_set_<k>.csv) files in this folder")
    for have, need in ((test_dir, train_dir), (train_dir, test_dir)):
        unpaired = sorted(set(sets[have]) - set(sets[need]))
        if unpaired:
            k = unpaired[0]
            raise AnnotationError(need / f"set_{k}.csv", f"file not found; {sets[have][k]} needs its pair")
    return [Role(sets[d][k], k, part)
            for k in sorted(sets[test_dir]) for d, part in ((train_dir, "train"), (test_dir, "test"))]


def _split_dir_hint(split_dir: Path) -> str:
    """Where the split folder is when split_dir names one of its two folders, or the dataset folder above it."""
    if split_dir.name.lower() in (DFEW_TEST_DIR, DFEW_TRAIN_DIR) and (split_dir.parent / DFEW_TEST_DIR).is_dir():
        found = split_dir.parent
    else:  # DFEW's own layout keeps EmoLabel_DataSplit one level below the dataset folder; allow two
        below = sorted(split_dir.glob(f"*/{DFEW_TEST_DIR}")) or sorted(split_dir.glob(f"*/*/{DFEW_TEST_DIR}"))
        if not below:
            return ""
        found = below[0].parent
    return f"; that folder is {found}: set split_dir = \"{found.as_posix()}\""


def _dfew_set_files(folder: Path, part: str) -> dict[int, Path]:
    """{k: the set's csv} in a train/test(single-labeled) folder: `set_<k>.csv` (DFEW's own names) or
    names that carry the part too (`train_set_<k>.csv`, S2D's; `set_<k>_train.csv`)."""
    found: dict[int, Path] = {}
    for f in sorted(folder.iterdir()):
        m = re.fullmatch(r"set_(\d+)\.csv", f.name, re.IGNORECASE)
        role = role_of(f.stem, f) if m is None and f.suffix.lower() == ".csv" else None
        if m is None and (role is None or role.fold is None):
            continue
        if role is not None and role.part != part:
            raise AnnotationError(f, f"a {role.part} file in the {part} folder {folder.name!r}")
        k = int(m[1]) if m else role.fold
        if k in found:
            raise AnnotationError(f, f"set {k} has two files here: this one and {found[k].name}; keep one")
        found[k] = f
    return found
