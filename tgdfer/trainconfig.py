"""The [train] table (`TrainConfig`) and the model-selection protocols it names.

Its own module so that tgdfer.run (a run folder's config.json) and tgdfer.pipeline can read a
run's settings without importing the trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

from .errors import ConfigError
from .metrics import REFERENCE_PROTOCOL

Selection = Literal["final", "val", "test-best"]
Compile = Literal["off", "on", "graphs"]


@dataclass
class TrainConfig:
    store: str = "cache/features.zarr"  # feature store written by `tgdfer extract` (pipelines: [extract] store if unset)
    fold: Optional[int] = None  # DFEW-style test fold (1..K); None (TOML: "none") for train/test-split datasets
    out: str = "runs/run"  # run folder: config, metrics per epoch, final metrics, checkpoints (the CLI and
    #   tgdfer.train put fold k's run in <out>/fold<k>, never in .../fold<k>/fold<k>: run.fold_folder)
    epochs: int = 50  # the paper gives none (milestones 30, 40 only); DFER-CLIP's train_DFEW.sh: 50
    batch_size: int = 48  # paper: 48
    lr: float = 1e-2  # head parameters (paper: 1e-2)
    prompt_lr: float = 1e-3  # learnable context vectors (paper: 1e-3)
    momentum: float = 0.9  # SGD momentum (reference code: 0.9)
    weight_decay: float = 1e-4  # SGD weight decay (reference code: 1e-4)
    milestones: tuple[int, ...] = (30, 40)  # MultiStepLR epochs (paper: 30, 40)
    gamma: float = 0.1  # MultiStepLR factor (paper: 0.1)
    seed: int = 0  # head init, data order and view choice
    selection: Selection = "final"  # final epoch | best on a validation split | test-best (reference protocol)
    val_fraction: float = 0.1  # share of each class's training clips held out when selection = "val"
    device: str = "auto"  # auto = cuda when available, else cpu
    end_to_end: bool = False  # fine-tune the image encoder from decoded frames (one replica) instead of the store
    encoder_lr: float = 1e-5  # end-to-end: image encoder learning rate (paper: 1e-5; 0 = frozen)
    grad_checkpointing: bool = False  # end-to-end: recompute the encoder's activations in backward (less memory)
    decode_workers: int = 2  # end-to-end: threads decoding and augmenting a batch's clips
    e2e_views: int = 0  # end-to-end: views each clip draws from (0 = the store's; more = fresh augmentation)
    views: int = 0  # augmented views a clip draws from: the store's views 1..views (0 = all V-1 it holds)
    drop_last: bool = False  # skip each epoch's last partial batch (DFER-CLIP's DataLoader does; tgdfer trains on it)
    view_mixing: Literal["clip", "frame"] = "clip"  # clip: one view per clip and epoch; frame: each frame's
    #   feature from its own independently drawn view (feature-space augmentation: many clip variants from few views)
    view_draw: Literal["random", "cycle"] = "random"  # random: an independent draw every epoch (views repeat);
    #   cycle: each clip walks its own shuffled order of its views, so E epochs see min(E, V-1) distinct views
    compile: Compile = "off"  # the training step's forward + loss, text tower included: off = eager; on =
    #   torch.compile (one graph per batch shape); graphs = also captured in CUDA graphs (mode "reduce-overhead",
    #   CUDA only: on a CPU the same as on). Same losses up to float rounding (docs/performance.md)
    tensorboard: bool = False  # also write each epoch's scalars to <run>/tensorboard (pip install 'tgdfer[tensorboard]')

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "prompt_lr", "gamma"):
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigError(name, f"must be > 0 and finite, got {getattr(self, name)}")
        if self.fold is not None and (isinstance(self.fold, bool) or not isinstance(self.fold, int)):
            raise ConfigError("fold", f"must be an integer (or none), got {self.fold!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ConfigError("seed", f"must be an integer in 0..2**63-1 (numpy's and torch's seeds), got {self.seed!r}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError("milestones", f"must be increasing, got {list(self.milestones)}")
        if not self.encoder_lr >= 0:
            raise ConfigError("encoder_lr", f"must be >= 0 (0 = frozen), got {self.encoder_lr}")
        for name in ("decode_workers", "e2e_views", "views"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.compile not in ("off", "on", "graphs"):
            raise ConfigError("compile", f"{self.compile!r} is not one of off, on, graphs")
        if self.view_mixing not in ("clip", "frame"):
            raise ConfigError("view_mixing", f"{self.view_mixing!r} is not one of clip, frame")
        if self.view_draw not in ("random", "cycle"):
            raise ConfigError("view_draw", f"{self.view_draw!r} is not one of random, cycle")
        if self.view_draw == "cycle" and self.view_mixing == "frame":
            raise ConfigError("view_draw", "cycle walks each clip's views in turn; with view_mixing = \"frame\" "
                              "every frame draws its own view (use view_draw = \"random\")")
        if self.end_to_end and (self.views or self.view_mixing != "clip" or self.view_draw != "random"):
            raise ConfigError("views", "views, view_mixing and view_draw choose among a store's cached views; end-to-end "
                              "training draws fresh ones (set e2e_views instead)")


PROTOCOLS = {"final": "final epoch", "val": "best epoch on a validation split of the training fold",
             "test-best": REFERENCE_PROTOCOL}

