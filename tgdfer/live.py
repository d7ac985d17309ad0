"""End-to-end mode: frame features from a trainable image encoder, decoded and augmented on the fly.

The head takes features `[M, B, T, D]` and does not know where they come from. In cached
training they are `store.feats[rows, views]`; in end-to-end training (`train-head --end-to-end`)
`LiveFeatures(rows, views)` decodes the same frames, applies the same augmentation (view v of a
clip draws its frame indices and augmentation from `(seed, clip_id, v)` exactly as `extract`
did for the store: `extract.read_views`) and runs the image encoder with gradients. Everything
the store's features depend on (sampling, views, augmentation, preprocessing, encoder) is read
from the store's fingerprint, so with the encoder's learning rate at 0 an end-to-end run sees
the features a cached run reads from the store (up to the store's float16 rounding). A store
extracted with a face stage (`fingerprint["faces"]`) gives its crop boxes: every live frame is cropped
to the box `extract` used for that clip, view and frame (no detection at training time).

Shapes: M replicas (1 in end-to-end mode), B clips, T frames, S image side, D feature width.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Optional

import numpy as np
import torch

from .augment import AugmentConfig, ClipTransform
from .devicedata import DeviceData
from .encoders import EncoderConfig, LoadedEncoder, autocast_context
from .errors import FrameReadError, TgdferError
from .clipinput import read_views
from .facetrack import FaceStage, FacesConfig
from .model import load_image_encoder
from .store import FeatureStore
from .trainconfig import TrainConfig


def augment_from_fingerprint(fp: dict) -> AugmentConfig:
    """The AugmentConfig a store was extracted with (its fingerprint keeps tuples as lists)."""
    raw = fp["sampling"]["augment"]
    return AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


class LiveFeatures:
    """`(rows [M, B], views [M, B]) -> features [M, B, T, D]` from decoded frames through a trainable encoder.

    `enc` is a `LoadedEncoder` (image tower); its parameters are unfrozen here and belong to the
    caller's optimiser (`parameters()`). Clips of a batch are decoded by `workers` threads.
    """

    def __init__(self, enc: LoadedEncoder, store: FeatureStore, *, views: int = 0, workers: int = 2,
                 grad_checkpointing: bool = False):
        fp = store.fingerprint
        if "image" not in enc.towers:
            raise TgdferError("end-to-end training needs the image tower of the encoder")
        sampling, pre = fp["sampling"], fp["preprocessing"]
        if int(pre["size"]) != enc.image_size:
            raise TgdferError(f"{store.path} was extracted at {pre['size']} px but the encoder takes "
                              f"{enc.image_size} px: not the store's encoder")
        kw = dict(size=enc.image_size, config=augment_from_fingerprint(fp), normalize=pre["normalize"],
                  mean=tuple(pre["mean"]), std=tuple(pre["std"]))
        self.test_tf, self.train_tf = ClipTransform(train=False, **kw), ClipTransform(train=True, **kw)
        clips = store.clips
        self.paths = clips["path"].to_numpy()
        self.clip_ids = clips["clip_id"].astype(str).to_numpy()
        self.frames, self.seed = int(sampling["frames"]), int(sampling["seed"])
        self.views = int(views) or int(sampling["views"])  # V of epoch_order: views 1..V-1 are augmented
        faces = FacesConfig.from_fingerprint(fp.get("faces"))
        self.faces = FaceStage(faces) if faces.enabled else None
        self.boxes = store.read_boxes_verified() if faces.enabled else None  # [N, V, T, 4] crop boxes extract used
        self.box_index = store.read_frame_index() if faces.enabled else None  # [N, V, T] the frames they are of
        self.enc = enc
        self.visual = enc.model.visual
        self.visual.requires_grad_(True)
        if grad_checkpointing:
            if not hasattr(self.visual, "set_grad_checkpointing"):
                raise TgdferError(f"{type(self.visual).__name__} does not support gradient checkpointing")
            self.visual.set_grad_checkpointing(True)
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="tgdfer-decode")

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.visual.parameters()

    def train(self, mode: bool = True) -> None:
        self.visual.train(mode)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _clip(self, row: int, view: int) -> torch.Tensor:
        """View `view` of clip `row`: pixels [T, 3, S, S] float32."""
        try:
            pixels = read_views(self.paths[row], self.clip_ids[row], views=[view], frames=self.frames,
                                seed=self.seed, backend="auto", test_tf=self.test_tf, train_tf=self.train_tf,
                                faces=self.faces, **self._stored_boxes(row, view))[0]
        except (FrameReadError, ValueError) as e:
            raise TgdferError(f"end-to-end: cannot read clip {self.clip_ids[row]} ({self.paths[row]}): {e}") from e
        return pixels[0]

    def _stored_boxes(self, row: int, view: int) -> dict:
        """read_views' `boxes` [1, T, 4] extract stored for (row, view) and their `box_index` [1, T]; none
        (detect again) for views beyond the store's."""
        if self.boxes is None or view >= self.boxes.shape[1] or not np.isfinite(self.boxes[row, view]).all():
            return {}
        return dict(boxes=self.boxes[row, [view]], box_index=self.box_index[row, [view]])

    def pixels(self, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
        """Decoded, transformed frames of each (row, view): [n, T, 3, S, S] float32 on the CPU."""
        return torch.stack(list(self._pool.map(self._clip, rows.tolist(), views.tolist())))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [n, T, 3, S, S] -> features [n, T, D] float32; with gradients unless grad is disabled."""
        n, t = pixels.shape[:2]
        with autocast_context(self.enc):
            feats = self.enc.model.encode_image(pixels.flatten(0, 1).to(self.enc.device, non_blocking=True))
        return feats.float().view(n, t, -1)

    def __call__(self, rows: torch.Tensor | np.ndarray, views: torch.Tensor | np.ndarray) -> torch.Tensor:
        """rows, views [M, B] -> features [M, B, T, D] (the stand-in for `store.feats[rows, views]`)."""
        rows_np = torch.as_tensor(rows).cpu().numpy()
        views_np = torch.as_tensor(views).cpu().numpy()
        x = self.encode(self.pixels(rows_np.ravel(), views_np.ravel()))  # [M*B, T, D]
        return x.view(*rows_np.shape, *x.shape[1:])

    @torch.no_grad()
    def view0(self, rows: np.ndarray, batch_clips: int = 16) -> torch.Tensor:
        """Test-time features of `rows` (n >= 1) with the encoder as it is now: [n, T, D] float32, no gradients."""
        was = self.visual.training
        self.visual.eval()
        try:
            out = [self.encode(self.pixels(rows[i:i + batch_clips], np.zeros(len(rows[i:i + batch_clips]), np.int64)))
                   for i in range(0, len(rows), batch_clips)]
        finally:
            self.visual.train(was)
        return torch.cat(out)


def refresh_view0(live: LiveFeatures, data: DeviceData) -> None:
    """End-to-end: overwrite view 0 of the validation and test clips with the current encoder's features."""
    rows = np.union1d(data.val, data.test)
    if len(rows):
        data.feats[torch.as_tensor(rows, device=data.feats.device), 0] = live.view0(rows).to(data.feats)


def refresh_view0_from_checkpoint(store: FeatureStore, ckpt: dict, cfg: TrainConfig, data: DeviceData,
                                  device: torch.device, encoder: Optional[EncoderConfig] = None) -> None:
    """An end-to-end checkpoint's view-0 features of the val/test clips, through its fine-tuned encoder."""
    live = LiveFeatures(load_image_encoder(store, device, encoder, ckpt["encoder_state"]), store,
                        workers=cfg.decode_workers)
    with contextlib.closing(live):
        refresh_view0(live, data)

