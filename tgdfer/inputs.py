"""What `tgdfer predict INPUT...` and `tgdfer.Predictor(run)(INPUT)` accept: one definition for both.

An INPUT is one of
  - a video file (whatever PyAV opens; the decoder, not the suffix, decides);
  - a folder of frame images (.jpg/.jpeg/.png/.bmp/.webp/.tif): one clip;
  - a folder of videos: each video one clip, in natural order (clip_2 before clip_10);
  - a glob pattern (`clips/*.mp4`, `data/**/*.avi`): its matches, in natural order;
  - a list file: `.txt` / `.lst`, one path per line (blank lines and `#` comments skipped), or
    `.csv`, the column `path` when the first row names one (other columns are ignored: an
    annotation CSV works), else one path per row. Relative paths are read from the list file's
    folder, as the `csv` reader of `[data]` reads them. A listed folder of videos gives its videos.

    expand_inputs(["clips/", "more/*.mp4", "todo.csv"])   # -> [Path | BadInput, ...], in order

An input that names nothing usable (a glob matching nothing, an unreadable list, an empty row, a
listed path that does not exist) becomes a `BadInput` in its place, its error naming the file
and, for a list, the line; the other inputs go on. Nothing here opens a video: a list file never
reaches a decoder, so no decoder's native log line can reach the terminal for one.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .annotations import csv_delimiter, csv_records, decode_text
from .errors import AnnotationError
from .frames import _natural_key, is_frame_name

LIST_SUFFIXES = (".txt", ".lst", ".csv")  # an INPUT with this suffix lists clips
# a folder's files read as videos: the usual containers, camcorders' AVCHD (.mts/.m2ts), broadcast and
# phone formats; a file by name is opened whatever its suffix
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".mts", ".m2ts",
                  ".ts", ".3gp", ".3g2", ".mxf", ".vob", ".ogv", ".dv", ".f4v", ".asf", ".gif")
# a folder's files that are no clip and need no word (notes, annotations, subtitles, checksums)
_SIDECAR_SUFFIXES = (".txt", ".md", ".csv", ".json", ".toml", ".yaml", ".yml", ".xml", ".srt", ".vtt", ".md5",
                     ".sha256", ".log", ".pdf", ".html", ".zip", ".tar", ".gz", ".wav", ".mp3", ".m4a", ".aac")
PATH_COLUMN = "path"  # the column of a CSV list that holds the paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadInput:
    """An INPUT (or one row of a list file) that names no clip, and why."""

    input: str  # the argument, or "list.csv:3" for a row
    error: str  # one line naming the file (and line)


Expanded = Union[Path, BadInput]


def is_glob(text: str) -> bool:
    """A pattern rather than a path: it has glob characters and no file of that name exists."""
    return any(c in text for c in "*?[") and not Path(text).exists()


def is_list_file(path: Path) -> bool:
    return path.suffix.lower() in LIST_SUFFIXES and path.is_file()


def expand_input(item: str | Path) -> tuple[list[Expanded], bool]:
    """One INPUT -> its clips, and whether it names several by its kind (a glob, a list file, a folder
    of videos) rather than one clip (a video file, a frame folder). Paths are not checked here,
    except those a list names: a missing listed path is a BadInput naming the list and line."""
    text = str(item)
    path = Path(text)
    if is_glob(text):
        matches = sorted(glob.glob(text, recursive=True), key=_natural_key)
        return [Path(m) for m in matches] or [BadInput(text, f"{text}: no file or folder matches")], True
    if path.is_dir():
        clips = folder_clips(path)
        return clips, clips != [path]
    if is_list_file(path):
        return read_list(path), True
    return [path], False


def expand_inputs(inputs: Sequence[str | Path]) -> list[Expanded]:
    """Every INPUT's clips in order (`expand_input`)."""
    return [clip for item in inputs for clip in expand_input(item)[0]]


def folder_clips(folder: Path) -> list[Expanded]:
    """A folder's clips: the folder itself when it holds frame images (or nothing known); else its videos;
    else its sub-folders that hold frame images (a dataset's clip folders, as `tgdfer synth` writes them),
    in natural order. Videos and images side by side are a BadInput naming both (read as a frame folder,
    the videos were skipped and a cover image became a one-frame clip)."""
    try:
        entries = [f for f in folder.iterdir() if not f.name.startswith(".")]
        files = [f for f in entries if f.is_file()]
    except OSError:
        return [folder]  # the reader names the problem
    images = [f.name for f in files if is_frame_name(f.name)]
    videos = sorted((f for f in files if f.suffix.lower() in VIDEO_SUFFIXES), key=lambda f: _natural_key(f.name))
    if images and videos:
        return [BadInput(str(folder), f"{folder}: holds both videos ({_some([v.name for v in videos])}) and images "
                                      f"({_some(images)}); a clip's frame folder holds only its frames: pass the "
                                      f"videos ({folder / '*.mp4'}) or move the images out")]
    if images:
        return [folder]
    skipped = [f.name for f in files if f.suffix.lower() not in VIDEO_SUFFIXES + _SIDECAR_SUFFIXES]
    if skipped:  # a camcorder's or phone's format this list lacks would be left out without a word
        log.warning("%s: %d file(s) not read as clips (not a video or frame image suffix tgdfer knows): %s; "
                    "pass them by name to predict them", folder, len(skipped), _some(skipped))
    if videos:
        return videos
    clip_folders = sorted((d for d in entries if d.is_dir() and _holds_frames(d)), key=lambda d: _natural_key(d.name))
    return clip_folders or [folder]


def _some(names: list[str]) -> str:
    return ", ".join(sorted(names, key=_natural_key)[:3]) + (" ..." if len(names) > 3 else "")


def _holds_frames(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(is_frame_name(e.name) for e in it)
    except OSError:
        return False


def read_list(path: Path) -> list[Expanded]:
    """The clips a list file names (`.txt`/`.lst`: one a line; `.csv`: its `path` column or one a row)."""
    try:
        text = decode_text(path, path.read_bytes())
    except OSError as e:
        return [BadInput(str(path), f"{path}: cannot read the list ({e})")]
    except AnnotationError as e:
        return [BadInput(str(path), str(e))]
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _text_rows(text)
    if isinstance(rows, BadInput):
        return [rows]
    if not rows:
        return [BadInput(str(path), f"{path}: the list names no clips")]
    out: list[Expanded] = []
    for line, value in rows:
        where = f"{path} line {line}"
        if not value.strip():
            out.append(BadInput(f"{path}:{line}", f"{where}: empty path"))
            continue
        clip = Path(value) if Path(value).is_absolute() else path.parent / value
        if not clip.exists():
            out.append(BadInput(str(clip), f"{clip}: no such file or directory (listed in {where})"))
        else:
            out += folder_clips(clip) if clip.is_dir() else [clip]
    return out


def _text_rows(text: str) -> list[tuple[int, str]]:
    """(line number, path) of a plain list: blank lines and `#` comments skipped."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.strip().startswith("#")]


def _csv_rows(path: Path, text: str) -> Union[list[tuple[int, str]], BadInput]:
    """(line number, path) of a CSV list: the `path` column under a header naming it, else the only column.
    Read as the annotation reader reads a CSV (`annotations.csv_records`: its separator sniffed, quoted
    fields, a path kept as written)."""
    try:
        rows = [(n, row) for n, _, row in csv_records(path, text, csv_delimiter(text))
                if any(c.strip() for c in row) and not row[0].strip().startswith("#")]
    except AnnotationError as e:
        return BadInput(str(path), str(e))
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0][1]]
    if PATH_COLUMN in header:
        col, rows = header.index(PATH_COLUMN), rows[1:]
    elif all(len(row) == 1 for _, row in rows):
        col = 0  # a plain list, one path a row, no header
    else:
        return BadInput(str(path), f"{path} line {rows[0][0]}: no '{PATH_COLUMN}' column (the first row has "
                                   f"{', '.join(repr(c) for c in rows[0][1])}); a CSV input needs a header with "
                                   f"a '{PATH_COLUMN}' column, or one path a row")
    return [(n, row[col] if col < len(row) else "") for n, row in rows]
