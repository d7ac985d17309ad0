"""Annotation readers: DFEW, FERV39k, plain lists and generic CSV -> one clip table.

Every reader returns a `ClipTable`: `table` follows the clip-table contract (columns `clip_id`
str, `path` str, `label` int64 0..K-1 into the class names, `fold` Int64, `split` string,
`n_frames` Int64, rows sorted by `clip_id`) and `skipped` lists the clips left out with
`missing="skip"` (`source`, `line`, `clip_id`, `reason`, and the clip's `label`, `fold`, `split`,
`path` as annotated). `load_clips(kind, **kwargs)` picks a reader from `READERS` by name.
docs/datasets.md shows a pipeline snippet for every format below.

Formats (what each reader expects, and where the format was found)
- DFEW (`read_dfew`): `EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv`, header
  `video_name,label`, label 1..7 in `labels.CLASSES` order (`label_base=0` for files counting
  from 0); `video_name` is the clip number, written padded ("00001") or not ("1"). Inside the two
  folders the files may also carry their part (`train_set_<k>.csv`/`test_set_<k>.csv`, as S2D
  publishes them, 0-based). The split files may also lie in one folder as
  `train_set_<k>.csv`/`test_set_<k>.csv` (or `set_<k>_train.csv`/`set_<k>_test.csv`). Frames live
  in `clip_224x224/<5-digit id>/`, original
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
- Plain lists (`read_list`): `path n_frames label` a line (DFER-CLIP's `annotation/*.txt`,
  SynthDFER's `lists/`), `path label` (no frame count: counted when read), or `path` alone with
  the label taken from the path; separated by whitespace (paths cannot hold spaces, as in
  DFER-CLIP's own loader); label 0-based by default. `clip_id` is the clip's path relative to the
  deepest folder that holds all clips of the table, video extension dropped (`frames/00001` and
  `videos/00001.mp4` under one root both give `00001`; FERV39k folders give `Action/Happy/0267`).
  A header line is skipped with a warning: a first line whose numeric fields are not numbers.
- Generic CSV (`read_csv`): a header row, a path and a label column, optionally a fold or a split
  column (used when the header has one named `fold`/`split`; name another, or `"none"`), a
  clip-id column, and for a table with neither, a separate list of the test clips. Or separate
  files whose names say their part (S2D's FERV39k `train.csv` + `test.csv`), as for lists.
  CSV-family files (csv, dfew) take `delimiter`; unset, it is sniffed (csv.Sniffer over ",\t;|").

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
  that does not exist here suggest the entry to add (`_path_map_hint`).
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

Which file plays which part (`read_list`, `read_ferv39k`, `read_csv`): `files` (`csv_file`) is a folder
(files matching `pattern` in it), one file, a list of files, or a mapping {role: file}. The role
comes from the mapping key or the file name: a `set_<k>_` before `train`/`test` (or `_set_<k>`
after it) makes it fold k's list (`set_1_test.txt`, `DFEW_set_1_test.txt`, `train_set_1.csv`),
otherwise it is the train or test split (`train.txt`, `FERV39K_test.txt`, `train_All.csv`). A
table is either per-fold (fold = the k whose test list holds the clip, every clip in exactly one
test list; the train lists are only checked against it) or train/test (split = the list that
holds the clip), never both.

Frames and paths: paths in the table are absolute and resolved. Relative annotation paths are
relative to `root` (default: the annotation file's folder). n_frames is the number of image files
in a frame folder (os.scandir, no decoding); for a video, the annotated count when the
annotation has one, else the frames a sequential decode gives (`frames.video_frame_count`: its
packets that hold data, read without decoding, or by decoding a stream that starts inside a GOP;
cached in `frame_cache`). A container header that claims
more frames than the file holds (empty "dropped frame" chunks of old AVIs, a file cut short) is
not trusted; one warning says how many clips did so. When an annotated n_frames disagrees with
a frame folder the folder's count is kept (it is what the frame source will read; sampling past
it would fail) and one warning names the clips; a folder holding fewer images than annotated is
listed in `ClipTable.declared`, which `tgdfer check` reports as short. A clip whose path points to
nothing, to an empty frame folder or to an empty video file raises AnnotationError with file and
line (`missing="error"`), or is recorded in `skipped` with the reason (`missing="skip"`); the
extract stage records skipped clips in the store's failure table (`ClipTable.with_skipped`).
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import logging
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd

from .config import check_type
from .errors import AnnotationError, ConfigError, FrameReadError
from .tmpfiles import tmp_path
from .labels import CLASSES, class_index

logger = logging.getLogger(__name__)
# A table with neither folds nor a split reads (and `tgdfer check`s) fine, but train-head cannot use it.
NO_SPLIT = ("no row has a fold or a split, so no clip is tested: give the CSV a `fold` column (integers) or a `split` "
            "column (train/test) (data.args fold_col / split_col name another column), or set data.args test_list to "
            "a file naming the test clips, one a line (CSV or list); every other clip is then train")

PathLike = str | os.PathLike
Missing = Literal["error", "skip"]
PathLabel = int | str | None  # label_from_path: a path-component index, a regex, or None

COLUMNS: tuple[str, ...] = ("clip_id", "path", "label", "fold", "split", "n_frames")
DTYPES: dict[str, str] = {
    "clip_id": "str", "path": "str", "label": "int64", "fold": "Int64", "split": "string", "n_frames": "Int64",
}
SKIPPED_COLUMNS: tuple[str, ...] = ("source", "line", "clip_id", "reason", "label", "fold", "split", "path")
SKIPPED_DTYPES: dict[str, str] = {
    "source": "str", "line": "Int64", "clip_id": "str", "reason": "str", "label": "Int64", "fold": "Int64",
    "split": "string", "path": "str",
}
IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
DFEW_TRAIN_DIR = "train(single-labeled)"
DFEW_TEST_DIR = "test(single-labeled)"
FERV39K_LABELS = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")  # CLASSES order
DEFAULT_FRAME_CACHE = "cache/frame_counts.json"
SKIPPED_AT_READ = "skipped when reading the annotations"  # prefix of a skipped clip's reason in a store
_NONE = ("", "none")  # how TOML says "no such column / file" (it has no null)

# A file's part from its name or mapping key: "set_<k>_" then train|test, or train|test then "_set_<k>".
_ROLE = re.compile(r"(?:^|_)(?:set_?(?P<fold>\d+)_)?(?P<part>train|test)(?:_?set_?(?P<fold2>\d+))?(?=_|$)",
                   re.IGNORECASE)
_INT = re.compile(r"[+-]?\d+")


@dataclass
class ClipTable:
    """What a reader returns."""

    table: pd.DataFrame  # one row per clip found: clip_id, path, label, fold, split, n_frames
    skipped: pd.DataFrame  # clips left out with missing="skip": SKIPPED_COLUMNS
    # {clip_id: annotated n_frames} of frame folders holding fewer images (the table keeps the folder's
    # count, which is what sampling can read; `tgdfer check` reports them as short)
    declared: dict[str, int] = field(default_factory=dict)

    @property
    def unsplit(self) -> bool:
        """True when no row has a fold or a split (NO_SPLIT says how to add one): nothing to train and test on."""
        return not (self.table["fold"].notna().any() or self.table["split"].notna().any())

    def with_skipped(self) -> pd.DataFrame:
        """Every annotated clip: `table` plus the skipped ones (n_frames <NA>), sorted by clip_id.

        What a feature store holds, so that its clip table describes the annotations and not
        what was on disk that day: the skipped clips become failed rows, and a rerun after the
        files appear extracts them into the same store.
        """
        if self.skipped is None or self.skipped.empty:
            return self.table
        extra = pd.DataFrame({
            "clip_id": self.skipped["clip_id"], "path": self.skipped["path"], "label": self.skipped["label"],
            "fold": self.skipped["fold"], "split": self.skipped["split"],
            "n_frames": pd.array([None] * len(self.skipped), dtype="Int64"),
        })
        both = pd.concat([self.table, extra[self.skipped["label"].notna().to_numpy()]], ignore_index=True)
        both = both.astype(DTYPES).sort_values("clip_id", kind="stable").reset_index(drop=True)
        return both

    def skip_reasons(self) -> dict[str, str]:
        """{clip_id: why it was skipped}, for the clips of `with_skipped()` missing from `table`."""
        if self.skipped is None or self.skipped.empty:
            return {}
        return {str(c): f"{SKIPPED_AT_READ} ({s}:{n}): {r}" for c, s, n, r
                in self.skipped[["clip_id", "source", "line", "reason"]].itertuples(index=False)}

    def summary(self) -> str:
        """One line: how many clips were skipped and why (by kind of reason); '' when none."""
        if self.skipped is None or self.skipped.empty:
            return ""
        kinds = self.skipped["reason"].map(_reason_kind).value_counts()
        total = len(self.table) + len(self.skipped)
        parts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        return f"skipped {len(self.skipped)} of {total} annotated clips ({parts})"


def _reason_kind(reason: str) -> str:
    for words, kind in (("nothing at", "missing"), ("holds no images", "empty folder"),
                        ("is empty", "empty video file"), ("disagrees with the path", "label disagreements"),
                        ("label", "bad labels")):
        if words in reason:
            return kind
    return "other"


@dataclass(frozen=True)
class _Entry:
    """One annotation line, before the clip is looked up on disk."""

    source: Path  # annotation file
    line: int  # 1-based line in source
    clip_id: str
    candidates: tuple[Path, ...]  # where the clip may be; the first that exists is used
    label: int  # 0-based index into the class names
    n_frames: int | None  # annotated frame count, None when the format has none
    fold: int | None  # the fold k of the source file (per-fold annotations)
    part: str | None  # "train" | "test": the source file's part; None when the file has no split
    problem: str | None = None  # a row-level problem (label column vs path): skipped or raised


@dataclass(frozen=True)
class _Role:
    """Which part an annotation file plays."""

    path: Path
    fold: int | None  # k for set_<k>_train / set_<k>_test, None for plain train/test
    part: str  # "train" | "test" | "all" (a whole-set list: no split unless a test_list says)


# ----------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class Labels:
    """How label cells become 0-based indices into `class_names` (build it with `make_labels`)."""

    class_names: tuple[str, ...]  # the class set
    lookup: Callable[[str], int]  # class name -> index (`class_lookup`), ValueError if unknown
    base: int = 0  # the integer written for the first class (or for label_names[0])
    label_names: tuple[int, ...] | None = None  # class index of file integer base + i

    def parse(self, text: str, source: Path, line: int, field: str) -> int:
        """A class name, or an integer counted from `base`; AnnotationError naming file, line, field."""
        if _INT.fullmatch(text):
            value, k = int(text), len(self.label_names or self.class_names)
            low, high = self.base, self.base + k - 1
            if not low <= value <= high:
                what = f"{k} label_names" if self.label_names else f"{k} classes"
                hint = ""
                if value in (low - 1, high + 1):
                    other = 1 - self.base
                    hint = f"; if this file counts labels from {other}, set label_base = {other}"
                raise AnnotationError(source, f"{field} {value} is outside the allowed range {low}..{high} "
                                              f"({what}){hint}", line=line)
            i = value - self.base
            return self.label_names[i] if self.label_names else i
        try:
            return self.lookup(text)
        except ValueError:
            default = self.class_names == CLASSES
            raise AnnotationError(source, f"{field} {text!r} is not {'an emotion' if default else 'a class'}; "
                                          f"expected one of {', '.join(self.class_names)}"
                                          + (f" (or {', '.join(FERV39K_LABELS)})" if default else ""),
                                  line=line) from None

    def check_base(self, source: Path, cells: Sequence[str], field: str) -> None:
        """Refuse a file whose integer labels, taken as a whole, count from the other base.

        Base 1 with every label in 0..K-1 and some 0s (or base 0 with every label in 1..K and
        some K) is a file counted from the other end: read with this base, every row would be
        shifted by one class and only the 0s (the Ks) would be flagged. AnnotationError naming
        the file, the counts and the option to set.
        """
        ints = [int(c) for c in cells if c is not None and _INT.fullmatch(c)]
        if len(set(ints)) < 2:  # one label value says nothing about the base (the row check still applies)
            return
        k = len(self.label_names or self.class_names)
        low, high = min(ints), max(ints)
        if self.base == 1 and low == 0 and high <= k - 1:
            edge, fits, other = 0, f"0..{k - 1}", 0
        elif self.base == 0 and low >= 1 and high == k:
            edge, fits, other = k, f"1..{k}", 1
        else:
            return
        n_edge = sum(1 for v in ints if v == edge)
        raise AnnotationError(source, f"every {field} of its {len(ints)} rows lies in {fits} and {n_edge} are {edge}: "
                                      f"this file counts labels from {other}, but label_base is {self.base} (read so, "
                                      f"{len(ints) - n_edge} rows would shift one class and {n_edge} would be out of "
                                      f"range); set label_base = {other}")


def class_lookup(class_names: Sequence[str]) -> Callable[[str], int]:
    """name -> index in class_names: exact name, case-insensitive; the emotion aliases of `labels`
    (Happy, Angry, ...) only for the default 7 classes. The function raises ValueError."""
    exact = {n.lower(): i for i, n in enumerate(class_names)}
    default = tuple(class_names) == CLASSES

    def lookup(name: str) -> int:
        key = name.strip().lower()
        if key in exact:
            return exact[key]
        if default:
            return class_index(name)
        raise ValueError(f"unknown class {name!r}; expected one of {', '.join(class_names)}")

    return lookup


def make_labels(class_names: Sequence[str] | None, label_names: Sequence[str] | None, label_base: int) -> Labels:
    """Check the class set and the integer mapping (ConfigError naming the field) and build a Labels."""
    names = tuple(CLASSES if class_names is None else class_names)
    if isinstance(class_names, str) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError("class_names", f"must be a non-empty list of class names, got {class_names!r}")
    seen: dict[str, str] = {}
    for n in names:
        if n.lower() in seen:
            raise ConfigError("class_names", f"{n!r} appears twice (as {seen[n.lower()]!r}); class names must be "
                                             "unique (case-insensitive)")
        seen[n.lower()] = n
    if isinstance(label_base, bool) or not isinstance(label_base, int) or label_base not in (0, 1):
        raise ConfigError("label_base", f"must be 0 or 1, got {label_base!r}")
    lookup = class_lookup(names)
    mapped = None
    if label_names is not None:
        if isinstance(label_names, str) or not label_names:
            raise ConfigError("label_names", f"must be a non-empty list of class names, got {label_names!r}")
        mapped = []
        for i, n in enumerate(label_names):
            try:
                mapped.append(lookup(str(n)))
            except ValueError:
                raise ConfigError("label_names", f"entry {i} ({n!r}, the file's integer {label_base + i}) is not "
                                                 f"a class; class_names: {', '.join(names)}") from None
        mapped = tuple(mapped)
    return Labels(names, lookup, label_base, mapped)


# ----------------------------------------------------------------------------- paths


class PathMap:
    """Rewrites annotated paths written on another machine: {their prefix: our folder}.

    The longest prefix that matches whole path components wins; backslashes read as slashes.
    `check_used` raises a ConfigError naming a prefix that matched no path.
    """

    def __init__(self, mapping: Mapping[str, str] | None):
        if mapping is not None and not isinstance(mapping, Mapping):
            raise ConfigError("path_map", f"must be a table {{\"/their/prefix\" = \"our/folder\"}}, got {mapping!r}")
        items = []
        for prefix, target in (mapping or {}).items():
            if not isinstance(target, (str, os.PathLike)) or not str(prefix).strip():
                raise ConfigError("path_map", f"entry {prefix!r} = {target!r}: both sides must be paths")
            items.append((_slashes(str(prefix)).rstrip("/") or "/", str(target)))
        self.items = sorted(items, key=lambda kv: -len(kv[0]))
        self.used: set[str] = set()

    def __call__(self, raw: str) -> str:
        if not self.items:
            return raw
        text = _slashes(raw)
        for prefix, target in self.items:
            if text == prefix or text.startswith(prefix + "/") or prefix == "/":
                self.used.add(prefix)
                rest = text[len(prefix):].lstrip("/")
                return str(Path(target) / rest) if rest else target
        return raw

    def check_used(self, what: str) -> None:
        unused = [p for p, _ in self.items if p not in self.used]
        if unused:
            raise ConfigError("path_map", f"prefix {unused[0]!r} matches none of the paths in {what}; "
                                          "check the prefix as written in the annotation file")


def _slashes(text: str) -> str:
    return text.replace("\\", "/") if "\\" in text else text


def path_label_reader(spec: PathLabel) -> Callable[[str], str] | None:
    """label_from_path -> a function from the annotated path to the label text it holds (or None)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in _NONE):
        return None
    if isinstance(spec, bool):
        raise ConfigError("label_from_path", f"must be a path-component index or a regex, got {spec!r}")
    if isinstance(spec, int):
        def component(raw: str) -> str:
            parts = [p for p in PurePosixPath(_slashes(raw)).parts if p != "/"]
            try:
                part = parts[spec]
            except IndexError:
                raise ValueError(f"the path has {len(parts)} components, no component {spec}") from None
            return part.split(".")[0] if spec == -1 else part
        return component
    try:
        pattern = re.compile(str(spec))
    except re.error as e:
        raise ConfigError("label_from_path", f"{spec!r} is not a valid regular expression: {e}") from None
    if pattern.groups < 1:
        raise ConfigError("label_from_path", f"{spec!r} needs a group that captures the label, e.g. "
                                             r"'/(?P<label>\w+)/\d+$'")
    group = "label" if "label" in pattern.groupindex else 1

    def match(raw: str) -> str:
        m = pattern.search(_slashes(raw))
        if m is None or not m.group(group):
            raise ValueError(f"label_from_path {pattern.pattern!r} does not match")
        return m.group(group)

    return match


def _none(value: Any) -> Any:
    """TOML's way to say 'none': the string "none" or "" (any case) -> None."""
    return None if value is None or (isinstance(value, str) and value.strip().lower() in _NONE) else value


# ----------------------------------------------------------------------------- frame counts


CACHE_VERSION = 2  # 2: counts are a sequential decode's frames (1 counted packets even where they differ)


class FrameCountCache:
    """Frame counts of video files in a small JSON file, keyed by absolute path, size and mtime.

    Lives where the caller says (`frame_cache`, default `cache/frame_counts.json` under the working
    directory): never inside the dataset, which may be read-only. A cache that cannot be written
    is reported once and the counts are simply not kept.
    """

    def __init__(self, path: PathLike | None):
        self.path = None if _none(path) is None else Path(path)
        self.entries: dict[str, list] = {}  # path -> [size, mtime_ns, frames, claimed]
        self.dirty = False
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.entries = dict(data.get("counts", {})) if data.get("version") == CACHE_VERSION else {}
            except (OSError, ValueError, AttributeError, RecursionError) as e:
                logger.warning("frame count cache %s is unreadable (%s); counting again", self.path, e)

    def count(self, video: Path) -> tuple[int, int | None]:
        """(frames the file holds, frames its header claims or None); FrameReadError when unreadable."""
        from .frames import video_frame_count  # deferred: PyAV only needed for videos

        st = video.stat()
        key = str(video)
        hit = self.entries.get(key)
        if hit is not None and hit[:2] == [st.st_size, st.st_mtime_ns]:
            return int(hit[2]), hit[3]
        c = video_frame_count(video)
        self.entries[key] = [st.st_size, st.st_mtime_ns, c.frames, c.claimed]
        self.dirty = True
        return c.frames, c.claimed

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = tmp_path(self.path)
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "counts": self.entries}), encoding="utf-8")
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError as e:
            logger.warning("cannot write the frame count cache %s (%s); frame counts are not kept "
                           "(set frame_cache to a writable file, or \"none\")", self.path, e)


# ----------------------------------------------------------------------------- readers


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
    _check_missing(missing)
    delimiter = _check_delimiter(delimiter)
    frames_dir, videos_dir = _none(frames_dir), _none(videos_dir)
    if (frames_dir is None) == (videos_dir is None):
        raise ConfigError("frames_dir", "give exactly one of frames_dir (frame folders) or videos_dir (video files)")
    labels = make_labels(class_names, label_names, label_base)
    split_dir = Path(split_dir)
    clip_dir = _existing_dir(frames_dir if frames_dir is not None else videos_dir,
                             "frames_dir" if frames_dir is not None else "videos_dir")
    exts = ("",) if frames_dir is not None else VIDEO_EXTS
    entries: list[_Entry] = []
    for role in _dfew_files(split_dir):
        header, rows = _read_csv_rows(role.path, required=(id_col, label_col), delimiter=delimiter)
        labels.check_base(role.path, [row[label_col] for _, row in rows], label_col)
        for line, row in rows:
            number = _parse_int(row[id_col], role.path, line, id_col, low=1)
            label, problem = _row_label(labels, None, row[label_col], "", role.path, line, label_col, missing)
            clip_id = f"{number:05d}"
            names = dict.fromkeys((clip_id, str(number), row[id_col]))  # padded first, then as written
            candidates = tuple(clip_dir / f"{name}{ext}" for ext in exts for name in names)
            entries.append(_Entry(role.path, line, clip_id, candidates, label, None, role.fold, role.part, problem))
    return _build(entries, missing=missing, labels=labels, cache=FrameCountCache(frame_cache))


def _dfew_files(split_dir: Path) -> list[_Role]:
    """The (train, test) csv pair of every set k, checked to come in pairs."""
    test_dir, train_dir = split_dir / DFEW_TEST_DIR, split_dir / DFEW_TRAIN_DIR
    if not test_dir.is_dir() and not train_dir.is_dir() and split_dir.is_dir():
        flat = [r for r in (_role_of(f.stem, f) for f in sorted(split_dir.glob("*.csv"))) if r and r.fold]
        if flat:  # train_set_1.csv / test_set_1.csv (or set_1_train.csv ...) in one folder
            _check_roles(flat)
            folds = {r.fold for r in flat if r.part == "test"}
            for r in flat:
                if r.fold not in folds:
                    raise AnnotationError(r.path, f"no test file for set {r.fold} beside it; each set needs its test csv")
            return sorted(flat, key=lambda r: (r.fold, r.part != "train"))
    for folder in (test_dir, train_dir):
        if not folder.is_dir():
            raise AnnotationError(folder, f"folder not found; split_dir must be DFEW's EmoLabel_DataSplit folder "
                                          f"holding '{DFEW_TRAIN_DIR}' and '{DFEW_TEST_DIR}', or a folder of "
                                          f"train_set_<k>.csv / test_set_<k>.csv files")
    sets = {d: _dfew_set_files(d, part) for d, part in ((test_dir, "test"), (train_dir, "train"))}
    if not sets[test_dir]:
        raise AnnotationError(test_dir, "no set_<k>.csv (or test_set_<k>.csv) files in this folder")
    for have, need in ((test_dir, train_dir), (train_dir, test_dir)):
        unpaired = sorted(set(sets[have]) - set(sets[need]))
        if unpaired:
            k = unpaired[0]
            raise AnnotationError(need / f"set_{k}.csv", f"file not found; {sets[have][k]} needs its pair")
    return [_Role(sets[d][k], k, part)
            for k in sorted(sets[test_dir]) for d, part in ((train_dir, "train"), (test_dir, "test"))]


def _dfew_set_files(folder: Path, part: str) -> dict[int, Path]:
    """{k: the set's csv} in a train/test(single-labeled) folder: `set_<k>.csv` (DFEW's own names) or
    names that carry the part too (`train_set_<k>.csv`, S2D's; `set_<k>_train.csv`)."""
    found: dict[int, Path] = {}
    for f in sorted(folder.iterdir()):
        m = re.fullmatch(r"set_(\d+)\.csv", f.name, re.IGNORECASE)
        role = _role_of(f.stem, f) if m is None and f.suffix.lower() == ".csv" else None
        if m is None and (role is None or role.fold is None):
            continue
        if role is not None and role.part != part:
            raise AnnotationError(f, f"a {role.part} file in the {part} folder {folder.name!r}")
        k = int(m[1]) if m else role.fold
        if k in found:
            raise AnnotationError(f, f"set {k} has two files here: this one and {found[k].name}; keep one")
        found[k] = f
    return found


def read_ferv39k(
    lists: PathLike | Sequence[PathLike] | Mapping[str, PathLike],
    root: PathLike,
    *,
    pattern: str = "*.csv",
    label_from_path: PathLabel = None,
    path_map: Mapping[str, str] | None = None,
    class_names: Sequence[str] | None = None,
    frame_cache: PathLike | None = DEFAULT_FRAME_CACHE,
    missing: Missing = "error",
) -> ClipTable:
    """FERV39k's official setup lists (`Scene/Emotion/NNNN Emotion` a line) -> clip table.

    `lists` is a setup folder such as `FERV39k/4_setups/All_scenes` (its `train_*.csv` and
    `test_*.csv`), one file, a list of files, or {"train": file, "test": file}; `root` is the
    `2_ClipsforFaceCrop` folder the listed paths are relative to. split = the list holding the clip.
    `label_from_path = -2` also checks every line's label word against its Emotion folder.
    """
    _check_missing(missing)
    root = _existing_dir(root, "root")
    labels = make_labels(class_names, None, 0)
    by_path, paths = path_label_reader(label_from_path), PathMap(path_map)
    entries: list[_Entry] = []
    roles = _annotation_files(lists, pattern, "lists")
    for role in roles:
        for line, text in _read_lines(role.path):
            fields = text.split()
            if len(fields) != 2:
                raise AnnotationError(role.path, f"expected 2 fields 'Scene/Emotion/NNNN Emotion', got {len(fields)}: "
                                                 f"{text!r}", line=line)
            rel, word = fields
            label, problem = _row_label(labels, by_path, word, rel, role.path, line, "label", missing)
            clip_id = Path(rel).as_posix().strip("/")
            path = (root / paths(rel)).resolve()
            entries.append(_Entry(role.path, line, clip_id, (path,), label, None, role.fold, role.part, problem))
    paths.check_used(", ".join(str(r.path) for r in roles))
    return _build(entries, missing=missing, labels=labels, cache=FrameCountCache(frame_cache),
                  path_map=paths)


LIST_FIELDS = ("path", "n_frames", "label")


def read_list(
    files: PathLike | Sequence[PathLike] | Mapping[str, PathLike],
    root: PathLike | None = None,
    *,
    pattern: str = "*.txt",
    fields: Sequence[str] | None = None,
    label_base: int = 0,
    label_names: Sequence[str] | None = None,
    label_from_path: PathLabel = None,
    path_map: Mapping[str, str] | None = None,
    test_list: PathLike | None = None,
    class_names: Sequence[str] | None = None,
    frame_cache: PathLike | None = DEFAULT_FRAME_CACHE,
    missing: Missing = "error",
) -> ClipTable:
    """Plain whitespace-separated lists -> clip table.

    A line is `path n_frames label`, `path label` (frames counted when read) or `path` (label
    from the path); `fields` fixes the layout instead (e.g. ["path", "label"]), otherwise the
    field count of each file's first line decides. Labels are integers counted from `label_base` (0) or names.
    `files` is a folder (its files matching `pattern`), one file, a list of files or a mapping
    {role: file}; roles `set_<k>_train`/`set_<k>_test` give folds (fold = k of the test list
    holding the clip), roles `train`/`test` give splits (see the module docstring), and the
    mapping key `all` marks a whole-set list: no split, or with `test_list` (a file naming the
    test clips, one a line, by path as written or clip id) test = listed, train = the rest.
    Relative paths are relative to `root` (default: each list file's folder).
    """
    _check_missing(missing)
    test_list = _none(test_list)
    labels = make_labels(class_names, label_names, label_base)
    by_path, paths = path_label_reader(label_from_path), PathMap(path_map)
    layout = _list_layout(fields, by_path is not None)
    raw: list[tuple[_Role, int, Path, int | None, int, str | None]] = []  # role, line, path, n_frames, label, problem
    written: list[str] = []  # each row's path as written, for test_list
    roles = _annotation_files(files, pattern)
    if test_list is not None and [r.part for r in roles] != ["all"]:
        raise ConfigError("test_list", "goes with one whole-set list: files = { all = \"list.txt\" }; these "
                                       "files already say their part: " + ", ".join(str(r.path) for r in roles))
    for role in roles:
        base = Path(root) if root is not None else role.path.parent
        lines = _skip_header_line(_read_lines(role.path), layout, labels, role.path)
        names = layout or _LIST_LAYOUTS.get((len(lines[0][1].split()), by_path is not None))  # first line decides
        if names is not None and "label" in names:
            at = names.index("label")
            labels.check_base(role.path, [c[at] for _, t in lines if len(c := t.split()) == len(names)], "label")
        for line, text in lines:
            cells = text.split()
            if names is None or len(cells) != len(names):
                expected = " ".join(names) if names else "path n_frames label', 'path label"
                raise AnnotationError(role.path, f"expected {len(names) if names else '2 or 3'} fields "
                                                 f"'{expected}', got {len(cells)}: {text!r}", line=line)
            row = dict(zip(names, cells))
            n_frames = _parse_int(row["n_frames"], role.path, line, "n_frames", low=1) if "n_frames" in row else None
            label, problem = _row_label(labels, by_path, row.get("label"), row["path"], role.path, line, "label",
                                        missing)
            raw.append((role, line, (base / paths(row["path"])).resolve(), n_frames, label, problem))
            written.append(row["path"])
    paths.check_used(", ".join(str(r.path) for r in roles))
    ids = _ids_from_paths([r[2] for r in raw])
    tested = _read_test_list(Path(test_list), written, ids) if test_list is not None else None
    entries = [_Entry(role.path, line, clip_id, (path,), label, n, role.fold,
                      _part(role.part, tested, clip_id), problem)
               for (role, line, path, n, label, problem), clip_id in zip(raw, ids)]
    return _build(entries, missing=missing, labels=labels, cache=FrameCountCache(frame_cache),
                  path_map=paths)


def _part(part: str, tested: set[str] | None, clip_id: str) -> str | None:
    """A row's split: its file's part, or for a whole-set list the test_list's say (None without one)."""
    if part != "all":
        return part
    return None if tested is None else ("test" if clip_id in tested else "train")


def _skip_header_line(lines: list[tuple[int, str]], layout: tuple[str, ...] | None, labels: Labels,
                      source: Path) -> list[tuple[int, str]]:
    """The lines without a header line: a first line whose numeric fields are not numbers.

    Numeric fields are n_frames (with `fields`), or the fields after the path that hold integers
    in each of the next lines (up to 20; e.g. `path n_frames label` over `clips/00001 32 0`), where
    the first line holds neither integers nor class names. Skipping it is logged.
    """
    first = lines[0][1].split()
    rest = [t.split() for _, t in lines[1:21]]
    if layout is not None and "n_frames" in layout and len(first) == len(layout):
        header = not _INT.fullmatch(first[layout.index("n_frames")])
    elif rest and all(len(r) == len(first) for r in rest):
        numeric = [i for i in range(1, len(first)) if all(_INT.fullmatch(r[i]) for r in rest)]
        header = bool(numeric) and not any(_INT.fullmatch(first[i]) or _is_class(labels, first[i]) for i in numeric)
    else:
        header = False
    if not header or len(lines) == 1:
        return lines
    logger.warning("%s: line %d %r is a header line (its numeric fields are not numbers); skipped it",
                   source, lines[0][0], lines[0][1])
    return lines[1:]


def _is_class(labels: Labels, text: str) -> bool:
    try:
        labels.lookup(text)
        return True
    except ValueError:
        return False


# (field count of a file's first line, label from the path?) -> its lines' fields, when `fields` is not given
_LIST_LAYOUTS = {(3, False): LIST_FIELDS, (2, False): ("path", "label"), (3, True): LIST_FIELDS,
                 (2, True): ("path", "label"), (1, True): ("path",)}


def _list_layout(fields: Sequence[str] | None, by_path: bool) -> tuple[str, ...] | None:
    if fields is None:
        return None
    names = tuple(fields)
    if isinstance(fields, str) or "path" not in names or len(set(names)) != len(names) \
            or not set(names) <= set(LIST_FIELDS) or ("label" not in names and not by_path):
        raise ConfigError("fields", f"must list 'path' and, unless label_from_path is set, 'label', each once, "
                                    f"from {', '.join(LIST_FIELDS)}; got {fields!r}")
    return names


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
    _check_missing(missing)
    labels = make_labels(class_names, label_names, label_base)
    by_path, paths = path_label_reader(label_from_path), PathMap(path_map)
    label_col, id_col, test_list = _none(label_col), _none(id_col), _none(test_list)
    delimiter = _check_delimiter(delimiter)
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
        header, rows = _read_csv_rows(source, required=tuple(c for c in (path_col, label_col, id_col) if c),
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
                              f"{source} is the {_role_name(role)} file and also has the column "
                              f"{fold_in or split_in!r}; set {'fold' if fold_in else 'split'}_col = \"none\"")
        if test_list is not None and (fold_in is not None or split_in is not None):
            raise ConfigError("test_list", f"{source} already says where clips are tested (column "
                                           f"{fold_in or split_in!r}); set that column to \"none\" or drop test_list")
        base = Path(root) if root is not None else source.parent
        for line, row in rows:
            fold = _parse_int(row[fold_in], source, line, fold_in, low=1) if fold_in is not None else role.fold
            part = _parse_split(row[split_in], source, line, split_in) if split_in is not None else None
            if split_by_file:
                part = role.part
            raw.append((role, line, row, (base / paths(row[path_col])).resolve(), fold, part))
    paths.check_used(", ".join(str(r.path) for r in roles))
    ids = [r[2][id_col] for r in raw] if id_col is not None else _ids_from_paths([r[3] for r in raw])
    tested = _read_test_list(Path(test_list), [r[2][path_col] for r in raw], ids) if test_list else None
    entries = []
    for (role, line, row, path, fold, part), clip_id in zip(raw, ids):
        label, problem = _row_label(labels, by_path, row[label_col] if label_col else None, row[path_col], role.path,
                                    line, label_col or "label", missing)
        if tested is not None:
            part = "test" if clip_id in tested else "train"
        if fold is not None and role.fold is None:
            part = "test"  # a fold column: the clip is tested in its fold
        entries.append(_Entry(role.path, line, clip_id, (path,), label, None, fold, part, problem))
    return _build(entries, missing=missing, labels=labels, cache=FrameCountCache(frame_cache),
                  path_map=paths)


def _csv_files(csv_file: PathLike | Sequence[PathLike] | Mapping[str, PathLike], pattern: str) -> list[_Role]:
    """One whole-set CSV (role "all"), or files that say their part (`_annotation_files`)."""
    _check_paths_arg(csv_file, "csv_file")
    if isinstance(csv_file, (str, os.PathLike)) and not Path(csv_file).is_dir():
        return [_Role(Path(csv_file), None, "all")]
    if isinstance(csv_file, Sequence) and not isinstance(csv_file, str) and len(csv_file) == 1:
        return _csv_files(csv_file[0], pattern)
    return _annotation_files(csv_file, pattern, "csv_file")


def _auto_column(value: str | None, name: str, header: list[str], source: Path) -> str | None:
    """fold_col / split_col: "auto" = the column `name` if the header has it; "none" = no column."""
    value = _none(value)
    if value == "auto":
        return name if name in header else None
    if value is not None and value not in header:
        raise AnnotationError(source, f"no column {value!r} in the header (columns: {', '.join(header)}); set "
                                      f"{name}_col to \"none\" if the file has no {name} column", line=1)
    return value


def _read_test_list(path: Path, written: list[str], ids: list[str]) -> set[str]:
    """Clip ids named by a test list (one clip a line: its path as written in the CSV, or its id)."""
    by_written = dict(zip(written, ids))
    known = set(ids)
    tested = set()
    for line, text in _read_lines(path):
        name = re.split(r"[,\s]", text, maxsplit=1)[0]
        clip_id = by_written.get(name) or (name if name in known else None)
        if clip_id is None:
            if line == 1 and not any(c in name for c in "/\\.") and name.isidentifier():
                continue  # a header line such as "path"
            raise AnnotationError(path, f"{name!r} is neither a path nor a clip id of the CSV", line=line)
        tested.add(clip_id)
    return tested


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


# ----------------------------------------------------------------------------- annotation files


def _annotation_files(files: PathLike | Sequence[PathLike] | Mapping[str, PathLike], pattern: str,
                      field: str = "files") -> list[_Role]:
    """The annotation files with their roles (see the module docstring), checked for clashes.

    `field` names the option in a ConfigError when `files` is not a path, a list or a table of paths.
    """
    _check_paths_arg(files, field)
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
        role = _role_of(name, path)
        if role is not None:
            roles.append(role)
        elif explicit:
            raise AnnotationError(path, f"cannot tell the part from {name!r}: name it train/test or set_<k>_train/"
                                        f"set_<k>_test, or pass a mapping such as {{'train': ..., 'test': ...}}")
    if not roles:
        raise AnnotationError(files, f"no annotation files matching {pattern!r} named train/test or set_<k>_train/test")
    _check_roles(roles)
    return roles


def _check_paths_arg(files: Any, field: str) -> None:
    """A path, a list of paths or a table {role: path}; anything else is a ConfigError naming `field`."""
    def is_path(v: Any) -> bool:
        return isinstance(v, (str, os.PathLike)) and bool(str(v).strip())

    ok = (is_path(files)
          or (isinstance(files, Mapping) and bool(files) and all(is_path(v) for v in files.values()))
          or (isinstance(files, Sequence) and not isinstance(files, str) and bool(files)
              and all(is_path(v) for v in files)))
    if not ok:
        raise ConfigError(field, f"must be a file or folder, a list of files, or a table such as "
                                 f"{{ train = \"train.csv\", test = \"test.csv\" }}; got {files!r}")


def _role_of(name: str, path: Path) -> _Role | None:
    """The part a file plays from its name or mapping key, or None when the name does not say."""
    if name.lower() == "all":
        return _Role(path, None, "all")
    m = _ROLE.search(name)
    if m is None:
        return None
    fold = m["fold"] or m["fold2"]
    return _Role(path, int(fold) if fold else None, m["part"].lower())


def _check_roles(roles: list[_Role]) -> None:
    """One file per role; all per-fold or all train/test; per-fold needs test lists."""
    seen: dict[tuple[int | None, str], Path] = {}
    for r in roles:
        key = (r.fold, r.part)
        if key in seen:
            raise AnnotationError(r.path, f"both this file and {seen[key]} are the {_role_name(r)} list; "
                                          f"pass one (narrow the pattern or use a mapping)")
        seen[key] = r.path
    if any(r.part == "all" for r in roles) and len(roles) > 1:
        raise AnnotationError(roles[0].path, "a whole-set list ('all') comes alone; name its test clips with "
                                             "test_list instead of a second list")
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


def _read_csv_rows(path: Path, required: Sequence[str], delimiter: str | None = None,
                   exact: Sequence[str] = ()) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line, {column: cell}) rows of a CSV; checks columns and field counts.

    `delimiter` None: sniffed from the file's first lines (`csv_delimiter`). Cells are stripped of
    surrounding spaces except in the `exact` columns (paths), which are kept as written: a quoted
    field may hold newlines, commas, leading or trailing spaces. `line` is the line the row ends on.
    """
    text = _read_text(path)
    delimiter = csv_delimiter(text) if delimiter is None else delimiter
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)  # the csv module splits lines itself
    header = [h.strip() for h in next(reader, [])]
    absent = [c for c in required if c not in header]
    if absent:
        raise AnnotationError(path, f"no column {absent[0]!r} in the header (columns: {', '.join(header) or 'none'}; "
                                    f"fields separated by {_DELIMITER_NAMES.get(delimiter, repr(delimiter))}: set "
                                    f"delimiter if the file uses another)", line=1)
    rows = []
    for fields in reader:
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise AnnotationError(path, f"expected {len(header)} fields ({','.join(header)}), got {len(fields)}",
                                  line=reader.line_num)
        rows.append((reader.line_num, {h: f if h in exact else f.strip() for h, f in zip(header, fields)}))
    if not rows:
        raise AnnotationError(path, "holds no clips (only a header)")
    return header, rows


DELIMITERS = ",\t;|"  # what sniffing chooses from
_DELIMITER_NAMES = {",": "','", "\t": "tabs", ";": "';'", "|": "'|'", " ": "spaces"}


def csv_delimiter(text: str) -> str:
    """The field separator of a CSV-family file, sniffed from its first lines (csv.Sniffer, restricted
    to `DELIMITERS`); ',' when they show none (a one-column file)."""
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _check_delimiter(delimiter: str | None) -> str | None:
    """The `delimiter` option: None (sniff), one character, or "tab"/"\\t" for tabs."""
    delimiter = _none(delimiter)
    if delimiter is None:
        return None
    if isinstance(delimiter, str) and delimiter.lower() in ("tab", "\\t"):
        return "\t"
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ConfigError("delimiter", f"must be one character such as \",\" or \"tab\" (or \"none\" to sniff it), "
                                       f"got {delimiter!r}")
    return delimiter


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


def _parse_split(text: str, source: Path, line: int, field: str) -> str:
    part = text.lower()
    if part not in ("train", "test"):
        raise AnnotationError(source, f"{field} {text!r} must be 'train' or 'test'", line=line)
    return part


def _row_label(labels: Labels, by_path: Callable[[str], str] | None, text: str | None, raw_path: str,
               source: Path, line: int, field: str, missing: Missing) -> tuple[int, str | None]:
    """(label, problem) of one row: from the label column, the path, or both checked against each other.

    A path that gives no class, or disagrees with the label column, is a problem: raised with
    missing="error", returned (the row is then skipped) with missing="skip".
    """
    try:
        from_col = labels.parse(text, source, line, field) if text is not None else None
    except AnnotationError as e:  # not a class: with missing="skip", one bad row does not stop the dataset
        if missing == "error":
            raise
        return -1, str(e).removeprefix(f"{source}:{line}: ")
    if by_path is None:
        return from_col, None
    try:
        word = by_path(raw_path)
        from_path = labels.lookup(word)
    except ValueError as e:
        problem = f"no label in the path {raw_path!r}: {e}"
        return _problem(problem, missing, source, line, -1 if from_col is None else from_col)
    if from_col is not None and from_col != from_path:
        names = labels.class_names
        problem = (f"label disagrees with the path: {field} says {names[from_col]} ({text!r}), the path "
                   f"{raw_path!r} says {names[from_path]} ({word!r})")
        return _problem(problem, missing, source, line, from_col)
    return from_path, None


def _problem(message: str, missing: Missing, source: Path, line: int, label: int) -> tuple[int, str]:
    if missing == "error":
        raise AnnotationError(source, f"{message} (fix the row, or pass missing='skip' to leave such rows out)",
                              line=line)
    return label, message


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


def _build(entries: list[_Entry], *, missing: Missing, labels: Labels, cache: FrameCountCache,
           path_map: PathMap | None = None) -> ClipTable:
    """Check entries across files, find each clip on disk, and assemble the table.

    `path_map`: the reader takes one, so clips missing under a prefix that does not exist here
    suggest a `path_map` entry (`_path_map_hint`) rather than `missing='skip'`.
    """
    groups: dict[str, list[_Entry]] = {}
    for e in entries:
        groups.setdefault(e.clip_id, []).append(e)
    per_fold = any(e.fold is not None for e in entries)
    chosen = [_check_clip(groups[clip_id], per_fold, labels.class_names) for clip_id in sorted(groups)]
    if per_fold:
        _warn_incomplete_train_lists(entries, chosen)
    rows, skipped, mismatched, overclaimed = [], [], [], []
    places = [e.problem or _find_clip(e) for e in chosen]
    hint = _path_map_hint([e for e, f in zip(chosen, places) if isinstance(f, str) and f.startswith("nothing at")],
                          len(chosen)) if path_map is not None else None
    for e, found in zip(chosen, places):
        fold, split = (e.fold, None) if per_fold else (None, e.part)
        if isinstance(found, str):
            if missing == "error":
                advice = hint or "fix the path, or pass missing='skip' to leave such clips out"
                raise AnnotationError(e.source, f"clip {e.clip_id}: {found} ({advice})", line=e.line)
            label = None if e.problem else e.label  # a row with a problem is not an annotated clip
            skipped.append((str(e.source), e.line, e.clip_id, found, label, fold, split, str(e.candidates[0])))
            continue
        path, counted = found  # counted: images in a frame folder, None for a video
        if counted is not None and e.n_frames not in (None, counted):
            mismatched.append((e, counted))
        n_frames = counted if counted is not None else e.n_frames
        if n_frames is None:
            n_frames, claimed = _video_frames(path, cache)
            if claimed is not None and n_frames is not None and claimed > n_frames:
                overclaimed.append((path, claimed, n_frames))
        rows.append((e.clip_id, str(path), e.label, fold, split, n_frames))
    cache.save()
    _warn_mismatches(mismatched)
    if overclaimed:
        path, claimed, n = overclaimed[0]
        logger.warning("%d videos: the container header claims more frames than the file holds; using the frames "
                       "it holds (first: %s claims %d, holds %d)", len(overclaimed), path, claimed, n)
    if not rows:
        raise AnnotationError(chosen[0].source, f"every clip was skipped; the first: {skipped[0][3]}"
                                                + (f" ({hint})" if hint else ""))
    declared = {e.clip_id: e.n_frames for e, counted in mismatched if counted < e.n_frames}
    result = ClipTable(_table(rows), _skipped_table(skipped), declared)
    if result.unsplit:
        logger.warning("%s: %s", chosen[0].source, NO_SPLIT)
    if skipped:
        logger.warning("%s (ClipTable.skipped lists them)%s", result.summary(), f"; {hint}" if hint else "")
    return result


def _path_map_hint(lost: list[_Entry], total: int) -> str | None:
    """Advice for clips found nowhere whose paths share a prefix that does not exist on this machine.

    The prefix is the common folder of the missing paths; where the files seem to be is the first
    of a few likely folders (the working directory, its `data/`, the annotation file's folder and
    the two above it) that holds the first missing clip under a tail of that prefix. None when the
    missing clips do not share such a prefix (then they are really missing).
    """
    if not lost:
        return None
    paths = [e.candidates[0] for e in lost]
    common = Path(os.path.commonpath([str(p) for p in paths]))
    if common in paths:
        common = common.parent
    if common.exists() or common == Path(common.anchor):
        return None
    rest = paths[0].relative_to(common)
    bases = list(dict.fromkeys([Path.cwd(), Path.cwd() / "data", lost[0].source.parent,
                                *lost[0].source.resolve().parents[:2]]))
    tails = [Path(*common.parts[i:]) for i in range(1, len(common.parts))] + [Path()]
    target = next((base / tail for tail in tails for base in bases if (base / tail / rest).exists()), None)
    where = "your copy of that folder" if target is None else str(target.resolve())  # relative would be to root
    return (f"{'all ' if len(lost) > 1 else ''}{len(lost)} of {total} clips lie under {common}, which does not exist "
            f"here: map it to where the files are with "
            f"path_map = {{ {json.dumps(str(common))} = {json.dumps(where)} }}")


def _check_clip(group: list[_Entry], per_fold: bool, class_names: Sequence[str]) -> _Entry:
    """The entry that places this clip (its test-list entry for folds), after cross-file checks."""
    ref = group[0]
    where = f"{ref.source}:{ref.line}"
    by_source: dict[Path, _Entry] = {}
    for e in group:
        if e.source in by_source:
            raise AnnotationError(e.source, f"clip {e.clip_id} is listed twice (lines {by_source[e.source].line} and "
                                            f"{e.line}); clip ids must be unique", line=e.line)
        by_source[e.source] = e
        if e.label != ref.label and e.label >= 0 and ref.label >= 0:
            raise AnnotationError(e.source, f"clip {e.clip_id} is labelled {class_names[e.label]} here but "
                                            f"{class_names[ref.label]} in {where}", line=e.line)
        if e.candidates != ref.candidates:
            raise AnnotationError(e.source, f"clip {e.clip_id} points to {e.candidates[0]} here but to "
                                            f"{ref.candidates[0]} in {where}", line=e.line)
        if e.n_frames != ref.n_frames:
            raise AnnotationError(e.source, f"clip {e.clip_id} has n_frames {e.n_frames} here but {ref.n_frames} "
                                            f"in {where}", line=e.line)
    placing = _placing_entry(group, per_fold)
    problem = next((e.problem for e in group if e.problem), None)
    if problem and not placing.problem:
        placing = _Entry(**{**placing.__dict__, "problem": problem})
    return placing


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


def _video_frames(path: Path, cache: FrameCountCache) -> tuple[int | None, int | None]:
    """(frames the video holds, frames its header claims); (None, None) when it cannot be read."""
    try:
        return cache.count(path)
    except (FrameReadError, OSError) as e:
        logger.warning("cannot count the frames of %s (%s); n_frames left unknown", path, e)
        return None, None


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
    return pd.DataFrame({name: pd.array(list(v), dtype=SKIPPED_DTYPES[name]) for name, v in zip(SKIPPED_COLUMNS, cols)})


def _existing_dir(path: PathLike, field: str) -> Path:
    if not Path(path).is_dir():
        raise ConfigError(field, f"folder not found: {path}")
    return Path(path).resolve()


def _check_missing(missing: str) -> None:
    if missing not in ("error", "skip"):
        raise ConfigError("missing", f"must be 'error' or 'skip', got {missing!r}")
