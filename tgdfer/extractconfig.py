"""The [extract] table (`ExtractConfig`): how `tgdfer extract` samples, transforms and writes a store.

Its own module (as tgdfer.trainconfig is the [train] table's) so that tgdfer.fixedsettings, which
tgdfer.extraction builds its fingerprints with, can read a pipeline's [extract] settings without
importing the extractor. tgdfer.extraction exports it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from .errors import ConfigError
from .jpegs import JpegDecode


@dataclass
class ExtractConfig:
    store: str = "cache/features.zarr"  # output store: a .zarr folder, or a .h5 file with backend hdf5
    backend: Literal["zarr", "hdf5"] = "zarr"  # hdf5: written via a staging zarr, exported at the end
    views: int = 9  # view 0 = test-time (segment centres, resize only); views 1..V-1 augmented (8: within about a
    #   WAR of fresh augmentation every epoch in DFEW's 50-epoch schedule, 1: about 3 WAR below; docs/cache-study.md)
    frames: int = 16  # T, frames sampled per view (TSN segments)
    seed: int = 0  # with clip_id and view, fixes every sampled frame and augmentation draw
    normalize: Literal["clip", "none"] = "clip"  # CLIP mean/std, or plain [0, 1] scaling (reference code)
    batch_clips: int = 4  # clips per encoder call (the encoder sees batch_clips * views * frames images)
    workers: int = 2  # DataLoader worker processes decoding and augmenting; 0 = in the main process
    block_size: int = 64  # clips per ownership block: one writer owns each block's chunks
    zarr_shards: bool = False  # pack each block into one zarr shard file (fewer files on disk)
    frame_backend: Literal["auto", "decord", "pyav"] = "auto"  # video decoder; auto = PyAV (frame-exact)
    descriptors: Optional[str] = None  # TOML/JSON file of per-class descriptors replacing the built-in ones
    device: str = "auto"  # auto = cuda (LOCAL_RANK's GPU under torchrun) when available, else cpu
    augment_test: bool = True  # False: a train/test dataset's test clips get view 0 only, repeated in views
    #   1..V-1 (nothing trains on a test clip's views; FERV39k's test split is a fifth of its clips); refused with folds
    jpeg_decode: JpegDecode = "auto"  # JPEG frame folders: workers = decoded in the DataLoader workers; device =
    #   the workers read bytes, the main process decodes each batch on the encoder's device (nvjpeg on CUDA) and
    #   transforms it there; auto = device on CUDA without a face stage, else workers (tgdfer.jpegs)

    def __post_init__(self):
        for name in ("views", "frames", "batch_clips", "block_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.jpeg_decode not in ("auto", "workers", "device"):
            raise ConfigError("jpeg_decode", f"{self.jpeg_decode!r} is not one of auto, workers, device")
        if self.workers < 0:
            raise ConfigError("workers", f"must be >= 0, got {self.workers}")
        if self.backend == "zarr" and Path(self.store).suffix.lower() in (".h5", ".hdf5"):
            raise ConfigError("store", f"{self.store} names an HDF5 file; set backend = \"hdf5\" "
                              "(CLI: --backend hdf5) or give a .zarr path")
