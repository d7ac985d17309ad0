"""Stage 2's data: the feature store read once onto the training device, and each run's row splits.

No DataLoader: the whole store (`feats` [N, V, T, D] float16) goes onto the device in one read,
checked clip by clip against its checksums, and every step indexes it there. Replicas trained
together share that one tensor; each keeps its own train / val / test rows (`split_rows`).
Shape legend: N clips, V views, T frames, D width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from .encoders import named_device
from .errors import ConfigError, TgdferError
from .labels import CLASSES, stored_classes
from .readers import NO_SPLIT, fold_split
from .store import FeatureStore
from .trainconfig import TrainConfig


@dataclass
class DeviceData:
    """The store's features and labels on the training device, plus one replica's row splits.

    Replicas trained together hold the same `feats` and `labels` tensors (one copy on the device).
    """

    feats: torch.Tensor  # [N, V, T, D] float16 on the device
    labels: torch.Tensor  # [N] int64 on the device
    train: np.ndarray  # row indices
    val: np.ndarray
    test: np.ndarray
    classes: tuple[str, ...] = CLASSES  # the store's class names: label i is classes[i]


def split_rows(clips: pd.DataFrame, done: np.ndarray, fold: Optional[int], selection: str,
               val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) rows of the fold; failed clips are left out (a store with pending ones is refused
    before: `check_finished`); val is stratified."""
    train, test = fold_split(clips, fold)
    train, test = train[done[train]], test[done[test]]
    if len(train) == 0 or len(test) == 0:
        raise TgdferError(f"fold {fold}: no extracted clips to {'train' if len(train) == 0 else 'test'} on")
    val = np.empty(0, dtype=np.int64)
    if selection == "val":
        rng = np.random.default_rng([seed, 7])
        labels = clips["label"].to_numpy()[train]
        picks = [rng.permutation(train[labels == c])[: int(round(val_fraction * (labels == c).sum()))]
                 for c in np.unique(labels)]
        val = np.sort(np.concatenate(picks)).astype(np.int64)
        if len(val) == 0:
            raise ConfigError("val_fraction", f"{val_fraction} of fold {fold}'s {len(train)} training clips rounds to "
                              "an empty validation split in every class; raise it or use selection = \"final\"")
        train = np.setdiff1d(train, val)
    return train, val, test


def check_fold(store: FeatureStore, fold: Optional[int]) -> None:
    """ConfigError naming train.fold's value when the store has no such fold."""
    folds = sorted(set(store.clips["fold"].dropna().astype(int)))
    if fold is not None and fold not in folds:
        if folds:
            why = f"folds: {folds}"
        elif store.clips["split"].notna().any():  # FERV39k's train/test lists: one test set, no folds
            why = "no folds: its clips have a train/test split; train without --fold/--folds (train.fold = \"none\")"
        else:
            why = f"no folds; {NO_SPLIT}"
        raise ConfigError("fold", f"fold {fold} is not in {store.path} ({why})")


def check_finished(store: FeatureStore) -> None:
    """TgdferError when clips of the store are neither extracted nor failed (an extraction interrupted or
    still running, a shard not yet run): trained or scored so, a fold would silently lose them.
    Failed clips (recorded, with their reasons, by extraction) are left out."""
    coverage = store.coverage()
    if coverage["pending"]:
        raise TgdferError(f"{store.path}: {coverage['pending']} of {coverage['clips']} clips are not extracted yet "
                          f"({coverage['done']} done, {coverage['failed']} failed): an extraction was interrupted, is "
                          "still running or left a shard out; run `tgdfer extract` with the same settings to finish "
                          "it (`tgdfer info` shows what is missing)")


def load_replica_data(store: FeatureStore, cfgs: Sequence[TrainConfig], device: torch.device) -> list[DeviceData]:
    """One DeviceData per replica config (its fold's splits), all sharing one copy of the features.

    End-to-end configs never use the stored features (training encodes frames, evaluation re-encodes
    view 0 with the current encoder: `refresh_view0`), so they get a zero view-0 tensor instead.
    """
    for cfg in cfgs:
        check_fold(store, cfg.fold)
    check_finished(store)
    clips, done = store.clips, store.done
    splits = [split_rows(clips, done, c.fold, c.selection, c.val_fraction, c.seed) for c in cfgs]
    if cfgs[0].end_to_end:
        feats = torch.zeros(len(clips), 1, store.frames, store.dim, dtype=torch.float16, device=device)  # [N, 1, T, D]
    else:
        # [N, V, T, D] float16, read once; every done clip checked against its checksum and for NaN / inf
        feats = torch.from_numpy(store.read_feats_verified()).to(device)
    labels = torch.tensor(clips["label"].to_numpy(), dtype=torch.int64, device=device)
    names = stored_classes(store.fingerprint).names
    return [DeviceData(feats, labels, *rows, classes=names) for rows in splits]


def load_device_data(store: FeatureStore, cfg: TrainConfig, device: torch.device) -> DeviceData:
    return load_replica_data(store, [cfg], device)[0]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return named_device(name)  # ConfigError for a misspelt name or a GPU that is not there

