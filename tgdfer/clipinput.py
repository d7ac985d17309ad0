"""One clip as encoder input: decode its sampled frames, crop its face, transform each view.

`read_views` is the one place a clip becomes encoder input: `extract` (stage 1), end-to-end
training (`live`) and `tgdfer predict` all call it, so a clip is decoded, sampled, cropped and
augmented the same way in each (docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .augment import ClipTransform
from .facetrack import FaceStage, crop_frames
from .frames import FrameSource, open_frames
from .sampling import view_indices, view_seed


def read_views(path: str | Path | FrameSource, clip_id: str, *, views: int | Sequence[int], frames: int, seed: int,
               backend: str, test_tf: ClipTransform, train_tf: Optional[ClipTransform] = None,
               faces: Optional[FaceStage] = None, boxes: Optional[np.ndarray] = None,
               box_index: Optional[np.ndarray] = None, uint8: bool = False,
               ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Decode and transform views 0..views-1 of one clip.

    Returns (pixels [V, T, 3, S, S] float32 (uint8=True: uint8, before `ClipTransform.to_float`), index [V, T] int64, boxes [V, T, 4] float32, source
    [V, T] int8): the square face crop box of every sampled frame in source pixels (x0, y0, x1, y1),
    NaN without a face stage, and where that frame's face box came from (`facetrack.FACE_SOURCES`:
    0 detected, 1 interpolated, 2 carried over, 3 centre fallback; -1 without a face stage or with
    given `boxes`). `views` may instead list the view ids to read (end-to-end training reads one
    view at a time). With `faces`, each frame is cropped to the clip's face track (`facetrack`);
    `boxes` [V, T, 4] instead gives the crop boxes (a store's, for end-to-end training) and skips detection;
    `box_index` [V, T], the frame numbers they were found for, is checked against the clip's now, and
    the boxes against its frame size (a video re-encoded since extract is refused, not cropped blind).

    The one place that turns a clip into encoder input (`extract`, end-to-end training and
    `tgdfer predict` all call it). `path` may be an open FrameSource (left open). Raises
    FrameReadError (or ValueError) when the clip cannot be read or, by faces.on_missing, has no face.
    """
    src = path if isinstance(path, FrameSource) else open_frames(path, backend=backend)
    try:
        ids = list(range(views)) if isinstance(views, int) else [int(v) for v in views]
        n = len(src)
        index = view_index(n, clip_id, ids, seed, frames)  # [V, T]
        source = np.full(index.shape, -1, np.int8)
        crop = None
        if boxes is not None:
            crop = np.asarray(boxes, np.float64).reshape(*index.shape, 4)
            if faces is None or not np.isfinite(crop).all():
                raise ValueError(f"{clip_id}: crop boxes need the face stage's config and a finite box per frame")
            if box_index is not None and not np.array_equal(np.asarray(box_index).reshape(index.shape), index):
                raise ValueError(f"{clip_id}: its {n} frames sample other frame numbers than when its crop boxes "
                                 "were stored: the video changed since extract (re-encoded, cut?); extract it again")
        distinct = np.unique(index)
        decoded = dict(zip(distinct.tolist(), src.read(distinct)))  # frame -> [H, W, 3], each decoded once
        if crop is not None:
            h, w = decoded[int(distinct[0])].shape[:2]
            if (crop[..., :2] < 0).any() or (crop[..., 2] > w).any() or (crop[..., 3] > h).any():
                raise ValueError(f"{clip_id}: its stored crop boxes reach outside its {w} x {h} frames: the video "
                                 "changed since extract (re-encoded, resized?); extract it again")

        def read(wanted: np.ndarray) -> np.ndarray:  # [K] frame numbers -> [K, H, W, 3]
            new = np.array([f for f in np.unique(wanted).tolist() if f not in decoded], np.int64)
            if len(new):
                decoded.update(zip(new.tolist(), src.read(new)))
            return np.stack([decoded[int(f)] for f in wanted])

        if faces is not None and crop is None:
            track = faces.track(n, frames, read, str(getattr(src, "path", path)))  # detects on frames it reads
            crop = track.crop_boxes(index, faces.cfg.margin)  # [V, T, 4]
            source = track.sources(index)  # [V, T]
    finally:
        if src is not path:
            src.close()
    if crop is None:
        clip = lambda k: read(index[k])  # noqa: E731  [T, H, W, 3]
        out_boxes = np.full((*index.shape, 4), np.nan, np.float32)
    else:
        clip = lambda k: crop_frames(read(index[k]), crop[k], faces.cfg.size)  # noqa: E731  [T, size, size, 3]
        out_boxes = crop.astype(np.float32)
    pixels = torch.stack([
        (train_tf if v else test_tf).pixels(clip(k), seed=view_seed(seed, clip_id, v)) for k, v in enumerate(ids)
    ])  # [V, T, 3, S, S] uint8
    return (pixels if uint8 else test_tf.to_float(pixels)), index, out_boxes, source


def view_index(n: int, clip_id: str, views: Sequence[int], seed: int, frames: int) -> np.ndarray:
    """The frame numbers [V, T] of `views` of a clip of n frames (sampling.view_indices, view by view)."""
    return np.stack([view_indices(n, clip_id, v, seed, frames) for v in views])
