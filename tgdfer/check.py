"""`tgdfer check DATA_CONFIG`: read every annotation row and look at every clip.

Extraction decodes only the frames sampling picks, so a broken clip is found only when a view
happens to need it. The check looks at every clip first (worker processes, clips in chunks)
and reports per clip:

    ok          the clip holds as many frames as declared, and they look readable
    missing     the annotation points to nothing
    empty       an empty frame folder or a zero-byte / frame-less video
    unreadable  a frame (named) or the container cannot be read
    short       fewer frames than declared (the annotation's n_frames, also for a frame folder
                holding fewer images than annotated; for a video without one, the frames its
                packets hold)
    misread     random access disagrees with a sequential decode: the frame backend returned
                other frames than those asked for (checked on `verify_decode` sampled videos)
    label       the row's label is not a class, or disagrees with its path (`label_from_path`)
    large       over a cap of tgdfer.limits (frame size, frames, decoded bytes): refused before
                decoding; `tgdfer --limit NAME=VALUE check ...` raises the cap (docs/limits.md)

By default nothing is decoded (`inspect_clip`): a frame folder's images are listed and stat'ed
(a 0-byte frame is unreadable) and the first and last image's headers read (they must open); a
video's packets are counted. `decode=True` (`tgdfer check --decode`)
decodes every frame instead (`decode_clip`), which also finds a frame damaged in the middle.
A video whose container header claims more frames than it holds is noted (`claimed`) but is
not an error: tgdfer reads the frames it holds.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, Optional

import pandas as pd

from .errors import FrameReadError
from .limits import LIMIT_HINT
from .readers import ClipTable

STATUSES = ("ok", "missing", "empty", "unreadable", "short", "misread", "label", "large")
RESULT_COLUMNS = ("clip_id", "status", "path", "declared", "decoded", "claimed", "source", "line", "reason")
CHUNK = 256  # clips per worker task at most (a task per clip costs more than stat'ing one)


@dataclass(frozen=True)
class ClipReport:
    """What checking one clip found."""

    status: str  # one of STATUSES
    decoded: Optional[int]  # frames found: decoded (decode=True), else listed / packets counted; None if unopened
    claimed: Optional[int]  # a video header's frame count, when it claims more than the file holds
    reason: str  # why the status is not "ok" ("" when it is)


def check_clip(path: str, declared: Optional[int], decode: bool = False) -> ClipReport:
    """Look at one clip (`inspect_clip`, or every frame decoded with `decode`) and compare its
    frame count with `declared` (None: no claim)."""
    from .frames import video_frame_count

    claimed = None
    try:
        if decode:
            if os.path.isfile(path):
                count = video_frame_count(path)
                claimed = count.claimed if count.overclaimed else None
            found = decode_clip(path)
        else:
            found, claimed = inspect_clip(path)
    except FrameReadError as e:
        reason = str(e).removeprefix(f"{e.path}: ")
        empty = "is empty" in reason or "has no frames" in reason or "no frame images" in reason
        large = LIMIT_HINT in reason or "too large to decode" in reason  # over a cap: refused, not damaged
        status = "large" if large else "empty" if empty else "unreadable"
        return ClipReport(status, None, claimed, reason)
    if found == 0:
        return ClipReport("empty", 0, claimed, "no frame decodes" if decode else "the video holds no frames")
    if declared is not None and found < declared:
        held = "decode" if decode else ("in the folder" if os.path.isdir(path) else "in the file")
        return ClipReport("short", found, claimed, f"{found} frames {held}, {declared} declared")
    return ClipReport("ok", found, claimed, "")


def decode_clip(path: str) -> int:
    """`decode=True`: every frame decoded (`frames.decode_all`); the frames that decode.

    Further decode-time checks of a clip go here (they raise FrameReadError naming the frame).
    """
    from .frames import decode_all

    return decode_all(path)


def inspect_clip(path: str) -> tuple[int, Optional[int]]:
    """(frames the clip holds, a video header's count when it claims more) without decoding pixels.

    A folder: its images (the files `frames.FolderSource` reads) listed and stat'ed (a 0-byte
    frame is unreadable; two of one frame number are refused); the headers of the first and the last
    in frame order opened (they must open and be within the frame size limit; frames of other sizes
    read at the first one's). No Path per frame: this runs once per file of the dataset. A video: its packets counted (`frames.video_frame_count`).
    FrameReadError names what cannot be read.
    """
    from .frames import check_frame_count, check_frame_size, frame_entries, frame_order, video_frame_count

    if os.path.isdir(path):
        images = frame_entries(path)
        if not images:
            raise FrameReadError(path, "no frame images in this folder")
        check_frame_count(path, len(images))  # within the limits (tgdfer.limits), as extraction checks
        for e in images:
            if e.stat().st_size == 0:
                raise FrameReadError(path, f"frame file {e.name} holds 0 bytes")
        names = frame_order([e.name for e in images], path)[0]
        first, last = names[0], names[-1]
        size, other = _image_size(path, first), _image_size(path, last)
        for name, (width, height) in ((first, size), (last, other)):
            check_frame_size(path, width, height, what=f"frame file {name}")  # over a cap before any other verdict
        return len(images), None
    if os.path.isfile(path) and os.stat(path).st_size == 0:
        raise FrameReadError(path, "the video file is empty (0 bytes)")
    count = video_frame_count(path, check=True)  # frame size within the limits from the stream header, then counted
    check_frame_count(path, count.frames)
    return count.frames, count.claimed if count.overclaimed else None


def _image_size(clip: str, name: str) -> tuple[int, int]:
    """(width, height) from the header of image `name` in folder `clip` as shown (its EXIF orientation
    applied, as frames.FolderSource reads it; no pixels decoded)."""
    from PIL import Image

    from .orientation import image_orientation, shown_size

    try:
        with Image.open(os.path.join(clip, name)) as im:
            height, width = shown_size(im.height, im.width, image_orientation(im))
            return width, height
    except Image.DecompressionBombError as e:  # over PIL's own cap (2 x 89 MP), as frames.FolderSource says
        raise FrameReadError(clip, f"frame file {name} is too large to decode ({e}): PIL refuses such images "
                                   f"whatever --limit says") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise FrameReadError(clip, f"frame file {name} is not a readable image: {e}") from e


def _check_chunk(items: list[tuple[str, Optional[int]]], decode: bool) -> list[ClipReport]:
    return [check_clip(p, n, decode) for p, n in items]


def _skip_status(reason: str) -> str:
    if "label" in reason:
        return "label"
    return "missing" if "nothing at" in reason else "empty"


def check_clips(clips: ClipTable, workers: int = 0, on_start: Optional[Callable[[int], None]] = None,
                on_progress: Optional[Callable[[int], None]] = None, decode: bool = False, verify_decode: int = 0,
                frame_backend: str = "auto") -> pd.DataFrame:
    """One row per annotated clip (RESULT_COLUMNS), problems first, then by clip_id.

    `clips` should come from a reader run with missing="skip", so that its skipped rows are
    reported instead of stopping the read. A frame folder holding fewer images than annotated
    (`ClipTable.declared`) is checked against the annotated count. `workers` processes check
    clips in chunks (0 = in this process); `decode` decodes every frame (`check_clip`).
    `verify_decode` videos (a seeded sample of the ok ones) have 4 random frames read with
    `frame_backend` and compared by pixels with a sequential decode (`misread` when they differ).
    """
    rows = [dict(clip_id=r.clip_id, status=_skip_status(r.reason), path=r.path, declared=None, decoded=None,
                 claimed=None, source=r.source, line=r.line, reason=r.reason)
            for r in clips.skipped.itertuples(index=False)]
    table = clips.table
    annotated = clips.declared or {}
    declared = [annotated.get(c, None if pd.isna(n) else int(n)) for c, n in zip(table["clip_id"], table["n_frames"])]
    items = list(zip(table["path"], declared))
    if on_start:
        on_start(len(table))
    reports: list[ClipReport] = []
    if workers > 0 and len(items) > 1:
        size = max(1, min(CHUNK, len(items) // (workers * 8)))
        chunks = {i: items[i:i + size] for i in range(0, len(items), size)}
        done_chunks: dict[int, list[ClipReport]] = {}
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_check_chunk, chunk, decode): i for i, chunk in chunks.items()}
            done = 0
            for future in as_completed(futures):
                done_chunks[futures[future]] = future.result()
                done += len(done_chunks[futures[future]])
                if on_progress:
                    on_progress(done)
        reports = [r for i in sorted(done_chunks) for r in done_chunks[i]]
    else:
        for i, (p, n) in enumerate(items):
            reports.append(check_clip(p, n, decode))
            if on_progress:
                on_progress(i + 1)
    if verify_decode > 0:
        from .decoding_check import verify_sample

        ok = [i for i, rep in enumerate(reports) if rep.status == "ok"]
        misread = verify_sample([table["path"].iloc[i] for i in ok], verify_decode, backend=frame_backend)
        for j, reason in misread.items():
            reports[ok[j]] = ClipReport("misread", reports[ok[j]].decoded, reports[ok[j]].claimed, reason)
    for clip_id, path, n, rep in zip(table["clip_id"], table["path"], declared, reports):
        rows.append(dict(clip_id=clip_id, status=rep.status, path=path, declared=n, decoded=rep.decoded,
                         claimed=rep.claimed, source=None, line=None, reason=rep.reason))
    out = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    for col in ("declared", "decoded", "claimed", "line"):
        out[col] = out[col].astype("Int64")
    order = out["status"].map({s: i for i, s in enumerate(STATUSES)}).replace(0, len(STATUSES))
    return out.assign(_o=order).sort_values(["_o", "clip_id"], kind="stable").drop(columns="_o").reset_index(drop=True)


def status_counts(results: pd.DataFrame) -> dict[str, int]:
    """{status: clips} for every status, in STATUSES order."""
    counts = results["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}
