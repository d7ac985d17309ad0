"""The clip table every reader returns, and the one check that builds it from annotation rows.

Each format module turns its annotation lines into `Entry`s (one a line, before the clip is
looked up on disk); `build_table` checks them across files (a clip listed twice, labelled or
placed differently in two files, in two test lists), finds each clip on disk, counts its frames
and assembles the `ClipTable`: `table` follows the clip-table contract (`COLUMNS`, `DTYPES`)
and `skipped` lists the clips left out with `missing="skip"` (`SKIPPED_COLUMNS`).

Frames and paths: paths in the table are absolute and resolved. Relative annotation paths are
relative to `root` (default: the annotation file's folder). n_frames is the number of image files
in a frame folder (os.scandir, no decoding); for a video, the annotated count when the
annotation has one, else the frames a sequential decode gives (`frames.video_frame_count`: its
packets that hold data, read without decoding, or by decoding a stream that starts inside a GOP;
cached in `frame_cache`). A container header that claims more frames than the file holds
(empty "dropped frame" chunks of old AVIs, a file cut short) is not trusted; one warning says
how many clips did so. When an annotated n_frames disagrees with
a frame folder the folder's count is kept (it is what the frame source will read; sampling past
it would fail) and one warning names the clips; a folder holding fewer images than annotated is
listed in `ClipTable.declared`, which `tgdfer check` reports as short. A clip whose path points to
nothing, to an empty frame folder or to an empty video file raises AnnotationError with file and
line (`missing="error"`), or is recorded in `skipped` with the reason (`missing="skip"`); the
extract stage records skipped clips in the store's failure table (`ClipTable.with_skipped`).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from .annotations import Labels, Missing, PathLike, PathMap, _slashes, toml_none
from .errors import AnnotationError, FrameReadError
from .frames import IMAGE_SUFFIXES, frame_entries, frame_order
from .tmpfiles import tmp_path

# The readers log as one logger, `tgdfer.readers`, whichever of their modules warns: the name that
# users and tests filter on.
logger = logging.getLogger("tgdfer.readers")


# A table with neither folds nor a split reads (and `tgdfer check`s) fine, but train-head cannot use it.
NO_SPLIT = ("no row has a fold or a split, so no clip is tested: give the CSV a `fold` column (integers) or a `split` "
            "column (train/test) (data.args fold_col / split_col name another column), or set data.args test_list to "
            "a file naming the test clips, one a line (CSV or list); every other clip is then train")

COLUMNS: tuple[str, ...] = ("clip_id", "path", "label", "fold", "split", "n_frames")

DTYPES: dict[str, str] = {
    "clip_id": "str", "path": "str", "label": "int64", "fold": "Int64", "split": "string", "n_frames": "Int64",
}

SKIPPED_COLUMNS: tuple[str, ...] = ("source", "line", "clip_id", "reason", "label", "fold", "split", "path")

SKIPPED_DTYPES: dict[str, str] = {
    "source": "str", "line": "Int64", "clip_id": "str", "reason": "str", "label": "Int64", "fold": "Int64",
    "split": "string", "path": "str",
}

IMAGE_EXTS: tuple[str, ...] = IMAGE_SUFFIXES  # what a frame folder's frames may be (frames.is_frame_name)
VIDEO_EXTS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
DEFAULT_FRAME_CACHE = "cache/frame_counts.json"
SKIPPED_AT_READ = "skipped when reading the annotations"  # prefix of a skipped clip's reason in a store


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
class Entry:
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
    written: str | None = None  # the clip's path as the annotation writes it (None: the format names no path)


def ids_from_paths(paths: Sequence[Path]) -> list[str]:
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


# ----------------------------------------------------------------------------- frame counts


CACHE_VERSION = 3  # 2: counts are a sequential decode's frames (1 counted packets even where they differ);
# 3: an edit list's hidden frames are not counted (2 counted a trimmed MP4's packets)


class FrameCountCache:
    """Frame counts of video files in a small JSON file, keyed by absolute path, size and mtime.

    Lives where the caller says (`frame_cache`, default `cache/frame_counts.json` under the working
    directory): never inside the dataset, which may be read-only. A cache that cannot be written
    is reported once and the counts are simply not kept.
    """

    def __init__(self, path: PathLike | None):
        self.path = None if toml_none(path) is None else Path(path)
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
        claimed = c.claimed if c.overclaimed else None  # a trimmed file's header counts its hidden frames: no fault
        self.entries[key] = [st.st_size, st.st_mtime_ns, c.frames, claimed]
        self.dirty = True
        return c.frames, claimed

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


# ----------------------------------------------------------------------------- clip table


def build_table(entries: list[Entry], *, missing: Missing, labels: Labels, cache: FrameCountCache,
           path_map: PathMap | None = None) -> ClipTable:
    """Check entries across files, find each clip on disk, and assemble the table.

    `path_map`: the reader takes one, so clips missing under a prefix that does not exist here
    suggest a `path_map` entry (`_path_map_hint`) rather than `missing='skip'`.
    """
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.clip_id, []).append(e)
    per_fold = any(e.fold is not None for e in entries)
    chosen = [_check_clip(groups[clip_id], per_fold, labels.class_names) for clip_id in sorted(groups)]
    if per_fold:
        _warn_incomplete_train_lists(entries, chosen)
    rows, skipped, mismatched, overclaimed, strays = [], [], [], [], []
    listings: dict[Path, list[str]] = {}
    places = [e.problem or _find_clip(e, listings) for e in chosen]
    lost = [e for e, f in zip(chosen, places) if isinstance(f, str) and f.startswith("nothing at")]
    hint = (_path_map_hint(lost, len(chosen), path_map) if path_map is not None else None) or _deeper_hint(lost)
    for e, found in zip(chosen, places):
        fold, split = (e.fold, None) if per_fold else (None, e.part)
        if isinstance(found, str):
            if missing == "error":
                advice = hint or ("fix the path, or leave such clips out: data.args.missing = \"skip\" in a pipeline, "
                                  "missing='skip' in Python")
                raise AnnotationError(e.source, f"clip {e.clip_id}: {found} ({advice})", line=e.line)
            label = None if e.problem else e.label  # a row with a problem is not an annotated clip
            skipped.append((str(e.source), e.line, e.clip_id, found, label, fold, split, str(e.candidates[0])))
            continue
        path, counted, stray = found  # counted: images in a frame folder, None for a video
        if stray:
            strays.append((path, stray))
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
    _warn_strays(strays)
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


def _deeper_hint(lost: list[Entry]) -> str | None:
    """Where the first clip found nowhere lies one or two folders below where it was looked for (a clip folder
    given one level too high: DFEW's `Clip` for `Clip/clip_224x224`): that folder, to point the reader at."""
    if not lost:
        return None
    wanted = Path(lost[0].candidates[0])
    if not wanted.parent.is_dir():
        return None
    for pattern in (f"*/{wanted.name}", f"*/*/{wanted.name}"):
        found = sorted(wanted.parent.glob(pattern))
        if found:
            return (f"{wanted.name} lies deeper, in {found[0].parent}: point the reader's clip folder (frames_dir, "
                    f"videos_dir or root) there")
    return None


def _path_map_hint(lost: list[Entry], total: int, path_map: PathMap | None = None) -> str | None:
    """Advice for clips found nowhere, from their paths as written (`Entry.written`; the resolved path
    for formats that write none).

    Relative paths (written relative to another folder than the one they are read against): the
    first of a few likely folders (the working directory, its `data/`, the annotation file's folder
    and the two above it) that holds the first one gives `root = ...`. Absolute paths (POSIX, or
    Windows `C:\\...`, `\\\\server\\...` written on another machine): their common folder as written,
    which does not exist here, gives `path_map = {...}`, its target the likely folder that holds the
    first clip under a tail of that prefix. Paths that `path_map` already maps to a folder that does not
    exist: that entry, where it led, and (a relative target is read from `root`) the folder it names
    when one of those likely folders holds it. None when no such advice fits (the clips are really missing).
    """
    if not lost:
        return None
    written = [_slashes(e.written) if e.written is not None else str(e.candidates[0]) for e in lost]
    source = lost[0].source
    bases = list(dict.fromkeys([Path.cwd(), Path.cwd() / "data", source.parent, *source.resolve().parents[:2]]))
    many = f"{'all ' if len(lost) > 1 else ''}{len(lost)} of {total} clips"
    entry = path_map.entry(written[0]) if path_map is not None and lost[0].written is not None else None
    if entry is not None:
        return _mapped_hint(entry, written[0], lost[0].candidates[0], bases, many)
    if not any(_foreign_absolute(w) for w in written):
        base = next((b for b in bases if (b / written[0]).exists()), None)
        if base is None or lost[0].written is None:
            return None
        return (f"{many} have relative paths ({written[0]}, ...) that lie under {base.resolve()}: read them from "
                f"there with root = {json.dumps(str(base.resolve()))}")
    common = posixpath.commonpath(written) if len({w.startswith("/") for w in written}) == 1 else ""
    if common in written:
        common = posixpath.dirname(common)
    if common in ("", "/") or re.fullmatch(r"[A-Za-z]:/?|//[^/]+/?", common) or Path(common).exists():
        return None
    rest = PurePosixPath(written[0]).relative_to(common)
    parts = PurePosixPath(common).parts
    tails = [Path(*parts[i:]) for i in range(1, len(parts))] + [Path()]
    target = next((base / tail for tail in tails for base in bases if (base / tail / rest).exists()), None)
    where = "your copy of that folder" if target is None else str(target.resolve())  # relative would be to root
    return (f"{many} lie under {common}, which does not exist here: map it to where the files are with "
            f"path_map = {{ {json.dumps(common)} = {json.dumps(where)} }}")


def _mapped_hint(entry: tuple[str, str], written: str, looked: Path, bases: list[Path], many: str) -> str | None:
    """Advice for clips that a path_map entry sends to a folder that does not exist (None when it exists:
    the clips are really missing). A relative target is read from root (the annotation file's folder
    unless set), a common slip when the folder is relative to the working directory."""
    prefix, target = entry
    rest = PurePosixPath(written[len(prefix):].lstrip("/"))
    folder = looked.parents[len(rest.parts) - 1] if rest.parts else looked  # the target as resolved
    if folder.exists():
        return None
    found = None if Path(target).is_absolute() else next(
        (b / target for b in bases if (b / target / rest).exists()), None)
    advice = (f"; it lies under {found.resolve()} (a relative target is read from root, by default the annotation "
              f"file's folder): write path_map = {{ {json.dumps(prefix)} = {json.dumps(str(found.resolve()))} }}"
              if found is not None else "; point the entry at the folder that holds the clips")
    return (f"{many}: path_map maps {prefix} to {target}, read as {folder}, which does not exist{advice}")


def _foreign_absolute(path: str) -> bool:
    """An absolute path (slashes), POSIX or Windows (a drive `C:/`, a share `//server/`)."""
    return path.startswith("/") or bool(re.match(r"[A-Za-z]:/", path))


def _check_clip(group: list[Entry], per_fold: bool, class_names: Sequence[str]) -> Entry:
    """The entry that places this clip (its test-list entry for folds), after cross-file checks."""
    ref = group[0]
    where = f"{ref.source}:{ref.line}"
    by_source: dict[Path, Entry] = {}
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
        placing = Entry(**{**placing.__dict__, "problem": problem})
    return placing


def _placing_entry(group: list[Entry], per_fold: bool) -> Entry:
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


def _warn_incomplete_train_lists(entries: list[Entry], chosen: list[Entry]) -> None:
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


def _find_clip(e: Entry, listings: dict[Path, list[str]]) -> tuple[Path, int | None, list[str]] | str:
    """(path, frame count of a folder or None for a video, a folder's stray frame names), or the reason the
    clip is unusable. A path found under another Unicode normalisation of its name is used
    (`_spelled_otherwise`; `listings` caches folder listings across clips)."""
    for path in e.candidates:
        if path.is_dir():
            try:
                names = [d.name for d in frame_entries(path)]
                strays = frame_order(names, path)[1]  # two files of one frame number: the folder cannot be read
            except FrameReadError as err:
                return f"frame folder {err}"
            if not names:
                return f"frame folder {path} holds no images ({' '.join(IMAGE_EXTS)})"
            return path, len(names), strays
        if path.is_file():
            return (path, None, []) if path.stat().st_size else f"video file {path} is empty"
    twin, other_case = _spelled_otherwise(e.candidates[0], listings)
    if twin is not None and twin != e.candidates[0]:  # the same name in another Unicode normalisation (from macOS)
        return _find_clip(Entry(**{**e.__dict__, "candidates": (twin,)}), listings)
    tried = " or ".join(str(p) for p in e.candidates[:2]) + (" ..." if len(e.candidates) > 2 else "")
    return f"nothing at {tried}" + (f" (there is {other_case}, which differs in case)" if other_case else "")


def _spelled_otherwise(path: Path, listings: dict[Path, list[str]]) -> tuple[Path | None, Path | None]:
    """(the path that `path` names in another Unicode normalisation, a path differing only in case).

    An annotation written on one system names `café` in NFC, a folder copied from macOS's HFS+ holds
    it in NFD: the same name to a reader, other bytes to Linux; that path is returned as the clip's.
    A name that differs only in letter case is not taken (a case-sensitive file system may hold
    both) but named for the error. `listings` caches each folder's names across clips.
    """
    cur = Path(path.anchor)
    for part in path.parts[1:]:
        if (cur / part).exists():
            cur = cur / part
            continue
        if cur not in listings:
            try:
                listings[cur] = os.listdir(cur)
            except OSError:
                listings[cur] = []
        nfc = unicodedata.normalize("NFC", part)
        same = [n for n in listings[cur] if unicodedata.normalize("NFC", n) == nfc]
        if len(same) == 1:
            cur = cur / same[0]
            continue
        case = [n for n in listings[cur] if unicodedata.normalize("NFC", n).casefold() == nfc.casefold()]
        return None, (cur / case[0] if len(case) == 1 else None)
    return cur, None


def _warn_strays(strays: list[tuple[Path, list[str]]]) -> None:
    if strays:
        path, names = strays[0]
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        logger.warning("%d frame folders hold images named unlike their other frames, read as frames all the same "
                       "(a file manager's copy, a cover image, a second sequence): remove them or move them out "
                       "(first: %s: %s)", len(strays), path, shown)


def _video_frames(path: Path, cache: FrameCountCache) -> tuple[int | None, int | None]:
    """(frames the video holds, frames its header claims); (None, None) when it cannot be read."""
    try:
        return cache.count(path)
    except (FrameReadError, OSError) as e:
        logger.warning("cannot count the frames of %s (%s); n_frames left unknown", path, e)
        return None, None


def _warn_mismatches(mismatched: list[tuple[Entry, int]]) -> None:
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
