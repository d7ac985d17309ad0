"""JPEG frames decoded in batches on the encoder's device (nvjpeg on CUDA) instead of one by one in the workers.

With `extract.jpeg_decode = "device"` ("auto" picks it when the encoder is on CUDA and no face
stage crops the frames), a DataLoader worker reads a frame-folder clip's sampled files as bytes
(`FolderSource.read_jpegs`: headers checked, nothing decoded) and hands over a `ClipJpegs`. The
main process decodes every frame of the batch in one `torchvision.io.decode_jpeg(list, device=...)`
call and applies each view's transform there, on the device (`ClipTransform.pixels` on device
tensors; the parameters are drawn from the same seeds on the CPU generator as in the workers).

On the CPU the pixels equal the workers' path bit for bit (the same libjpeg-turbo call, the same
transforms on frames of the same memory layout; tests/test_jpegs.py). nvjpeg's IDCT and the CUDA
resize round differently (tests/test_cuda.py states by how much). Clips that are not all RGB
JPEGs (PNG, grey or CMYK frames, videos) are decoded in the workers as before.
Shape legend: V views, T frames, K distinct frames of a clip, S image side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch

from .augment import ClipTransform
from .errors import FrameReadError
from .frames import FolderSource, decode_jpegs

JpegDecode = Literal["auto", "workers", "device"]


@dataclass
class ClipJpegs:
    """One clip's sampled frames, undecoded, and what turns them into its views' pixels."""

    path: str  # the frame folder (for errors)
    names: list[str]  # [K] "file name (index i)" of the distinct frames, in frame order (for errors)
    data: list[bytes]  # [K] their files
    where: np.ndarray  # [V, T] int64: which of the K frames each sampled frame is
    seeds: list[Optional[int]]  # [V] each view's augmentation seed; None = the test view (resize only)


def read_clip_jpegs(src: FolderSource, index: np.ndarray, seeds: Sequence[Optional[int]]) -> Optional[ClipJpegs]:
    """The files of frames `index` [V, T] of `src` as a ClipJpegs; None when one is not an RGB JPEG."""
    distinct, where = np.unique(index, return_inverse=True)
    data = src.read_jpegs(distinct)
    if data is None:
        return None
    names = [f"{src.files[int(i)].name} (index {int(i)})" for i in distinct]
    return ClipJpegs(path=str(src.path), names=names, data=data,
                     where=where.reshape(index.shape).astype(np.int64), seeds=list(seeds))


def decode_clips(clips: Sequence[ClipJpegs], device: torch.device | str, test_tf: ClipTransform,
                 train_tf: Optional[ClipTransform]) -> tuple[list[Optional[torch.Tensor]], dict[int, str]]:
    """Each clip's pixels [V, T, 3, S, S] uint8 on `device` (one decode call for all frames), and
    {clip position: error} for the clips with a frame that does not decode (their entry is None)."""
    frames: list[Optional[list[torch.Tensor]]]
    try:
        flat = decode_jpegs([d for c in clips for d in c.data], device=device)  # [sum K] of [3, H, W]
        bounds = np.cumsum([0] + [len(c.data) for c in clips])
        frames = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    except RuntimeError:  # a damaged file: decode clip by clip to tell which
        frames = [None] * len(clips)
    errors: dict[int, str] = {}
    out: list[Optional[torch.Tensor]] = []
    for k, clip in enumerate(clips):
        try:
            decoded = frames[k] if frames[k] is not None else _decode_one_clip(clip, device)
        except FrameReadError as e:
            errors[k] = str(e)
            out.append(None)
            continue
        video = torch.stack([f.permute(1, 2, 0) for f in decoded])  # [K, H, W, 3], the workers' memory layout
        views = [(test_tf if seed is None else train_tf).pixels(video[torch.as_tensor(w, device=video.device)],
                                                                seed=seed)
                 for w, seed in zip(clip.where, clip.seeds)]
        out.append(torch.stack(views))  # [V, T, 3, S, S]
    return out, errors


def _decode_one_clip(clip: ClipJpegs, device: torch.device | str) -> list[torch.Tensor]:
    for name, data in zip(clip.names, clip.data):
        try:
            decode_jpegs([data], device=device)
        except RuntimeError as e:
            raise FrameReadError(Path(clip.path), f"frame file {name} is not a readable image: {e}") from None
    return decode_jpegs(clip.data, device=device)


def batch_pixels(items: Sequence[dict], pixels: Optional[torch.Tensor], device: torch.device,
                 test_tf: ClipTransform, train_tf: Optional[ClipTransform]) -> tuple[Optional[torch.Tensor], dict[int, str]]:
    """The readable items of a batch (`extraction.ClipViews`) as one uint8 batch [B', V, T, 3, S, S] on `device`.

    `pixels` holds the workers' pixels of the items without "jpegs", in order; items with
    "jpegs" are decoded here. Returns the batch of the items that decoded, in order, and
    {item position: error} for those that did not.
    """
    pixels = None if pixels is None else pixels.to(device, non_blocking=True)
    at = [k for k, it in enumerate(items) if it.get("jpegs") is not None]
    if not at:
        return pixels, {}
    decoded, bad = decode_clips([items[k]["jpegs"] for k in at], device, test_tf, train_tf)
    errors = {at[j]: msg for j, msg in bad.items()}
    mine = dict(zip(at, decoded))
    worker = iter(pixels if pixels is not None else [])
    parts = [mine[k] if k in mine else next(worker) for k in range(len(items))]
    kept = [p for k, p in enumerate(parts) if k not in errors]
    return (torch.stack(kept) if kept else None), errors
