"""Which frames of a clip each view uses: TSN-style segment sampling, as in DFER-CLIP.

A clip of `n` frames is cut into `T` equal segments. Test time (view 0) takes the centre of each
segment; train time (views >= 1) takes one random frame per segment. A clip shorter than `T`
repeats its last frame (edge padding). Frame indices are 0-based positions in the clip's frame
order (sorted frame files, or decoded video frames).

This reproduces `VideoDataset._get_train_indices` / `_get_test_indices` of the public DFER-CLIP
code (github.com/zengqunzhao/DFER-CLIP, dataloader/video_dataloader.py) with `duration=1`; the
only difference is the random source: a seeded `numpy.random.Generator` per (seed, clip, view)
instead of numpy's global state, so a view's frames never depend on row order, worker or process.
"""

from __future__ import annotations

import hashlib

import numpy as np


def segment_indices(
    n_frames: int,
    num_segments: int = 16,
    train: bool = False,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Frame indices `[num_segments]` int64 for a clip of `n_frames` frames.

    train=False: segment centres, deterministic. train=True: one uniform draw per segment from
    `rng` (a Generator, a seed, or None for fresh OS entropy).
    """
    n, t = int(n_frames), int(num_segments)
    if n < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if t < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if train:
        return _train_offsets(n, t, np.random.default_rng(rng))
    if n > t:
        tick = n / float(t)
        # Same Python float expression as the reference, so the truncation matches bit for bit.
        return np.array([int(tick / 2.0 + tick * x) for x in range(t)], dtype=np.int64)
    return _edge_pad(n, t)


def _train_offsets(n: int, t: int, rng: np.random.Generator) -> np.ndarray:
    average_duration = n // t
    if average_duration > 0:
        offsets = np.arange(t) * average_duration + rng.integers(average_duration, size=t)
    elif n > t:
        # Kept from the reference; with duration 1 it cannot be reached (n > t means n // t >= 1).
        offsets = np.sort(rng.integers(n, size=t))
    else:
        offsets = _edge_pad(n, t)
    return offsets.astype(np.int64)


def _edge_pad(n: int, t: int) -> np.ndarray:
    """`arange(n)` padded to length t by repeating the last frame (n <= t)."""
    return np.pad(np.arange(n, dtype=np.int64), (0, t - n), mode="edge")


def view_seed(seed: int, clip_id: str, view: int) -> int:
    """A 63-bit seed that depends only on (seed, clip_id, view): stable across processes,
    platforms and Python versions (blake2b, not Python's salted `hash`)."""
    if view < 0:
        raise ValueError(f"view must be >= 0, got {view}")
    key = f"tgdfer-view\x00{int(seed)}\x00{clip_id}\x00{int(view)}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def view_rng(seed: int, clip_id: str, view: int) -> np.random.Generator:
    """The numpy Generator for one (seed, clip, view)."""
    return np.random.default_rng(view_seed(seed, clip_id, view))


def view_indices(
    n_frames: int, clip_id: str, view: int, seed: int, num_segments: int = 16
) -> np.ndarray:
    """Frame indices `[num_segments]` int64 of one view: view 0 = test-time segment centres,
    view >= 1 = train-time random frames drawn from `view_rng(seed, clip_id, view)`."""
    if view < 0:
        raise ValueError(f"view must be >= 0, got {view}")
    if view == 0:
        return segment_indices(n_frames, num_segments, train=False)
    return segment_indices(n_frames, num_segments, train=True, rng=view_rng(seed, clip_id, view))
