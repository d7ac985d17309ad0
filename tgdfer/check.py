"""`tgdfer check DATA_CONFIG`: read every annotation row and decode every frame of every clip.

Extraction decodes only the frames sampling picks, so a corrupt frame is found only when a view
happens to need it. The check decodes them all (worker processes, one clip per task) before a
long extraction and reports per clip:

    ok          every frame decodes and there are as many as declared
    missing     the annotation points to nothing
    empty       an empty frame folder or a zero-byte / frame-less video
    unreadable  a frame (named) or the container cannot be decoded
    short       fewer frames decode than declared (the annotation's n_frames, or for a video
                without one the frames its packets hold)
    misread     random access disagrees with a sequential decode: the frame backend returned
                other frames than those asked for (checked on `verify_decode` sampled videos)
    label       the row's label is not a class, or disagrees with its path (`label_from_path`)
    large       over a cap of tgdfer.limits (frame size, frames, decoded bytes): refused before
                decoding; `tgdfer --limit NAME=VALUE check ...` raises the cap (docs/limits.md)

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


@dataclass(frozen=True)
class ClipReport:
    """What checking one clip found."""

    status: str  # one of STATUSES
    decoded: Optional[int]  # frames that decoded (None when the clip could not be opened)
    claimed: Optional[int]  # a video header's frame count, when it claims more than the file holds
    reason: str  # why the status is not "ok" ("" when it is)


def check_clip(path: str, declared: Optional[int]) -> ClipReport:
    """Decode every frame of one clip and compare the count with `declared` (None: no claim)."""
    from .frames import decode_all, video_frame_count

    claimed = None
    try:
        if os.path.isfile(path):
            count = video_frame_count(path)
            claimed = count.claimed if count.overclaimed else None
        decoded = decode_all(path)
    except FrameReadError as e:
        reason = str(e).removeprefix(f"{e.path}: ")
        empty = "is empty" in reason or "has no frames" in reason or "no frame images" in reason
        large = LIMIT_HINT in reason or "too large to decode" in reason  # over a cap: refused, not damaged
        status = "large" if large else "empty" if empty else "unreadable"
        return ClipReport(status, None, claimed, reason)
    if decoded == 0:
        return ClipReport("empty", 0, claimed, "no frame decodes")
    if declared is not None and decoded < declared:
        return ClipReport("short", decoded, claimed, f"{decoded} frames decode, {declared} declared")
    return ClipReport("ok", decoded, claimed, "")


def _skip_status(reason: str) -> str:
    if "label" in reason:
        return "label"
    return "missing" if "nothing at" in reason else "empty"


def check_clips(clips: ClipTable, workers: int = 0, on_start: Optional[Callable[[int], None]] = None,
                on_progress: Optional[Callable[[int], None]] = None, verify_decode: int = 0,
                frame_backend: str = "auto") -> pd.DataFrame:
    """One row per annotated clip (RESULT_COLUMNS), problems first, then by clip_id.

    `clips` should come from a reader run with missing="skip", so that its skipped rows are
    reported instead of stopping the read. `workers` processes decode (0 = in this process).
    `verify_decode` videos (a seeded sample of the ok ones) have 4 random frames read with
    `frame_backend` and compared by pixels with a sequential decode (`misread` when they differ).
    """
    rows = [dict(clip_id=r.clip_id, status=_skip_status(r.reason), path=r.path, declared=None, decoded=None,
                 claimed=None, source=r.source, line=r.line, reason=r.reason)
            for r in clips.skipped.itertuples(index=False)]
    table = clips.table
    declared = [None if pd.isna(n) else int(n) for n in table["n_frames"]]
    if on_start:
        on_start(len(table))
    reports: list[Optional[ClipReport]] = [None] * len(table)
    if workers > 0 and len(table) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(check_clip, p, n): i for i, (p, n) in enumerate(zip(table["path"], declared))}
            for done, future in enumerate(as_completed(futures), start=1):
                reports[futures[future]] = future.result()
                if on_progress:
                    on_progress(done)
    else:
        for i, (p, n) in enumerate(zip(table["path"], declared)):
            reports[i] = check_clip(p, n)
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
