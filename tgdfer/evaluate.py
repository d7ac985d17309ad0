"""`tgdfer evaluate`: re-score trained runs from their checkpoints and tabulate them (paper Table 1/2)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from .config import build
from .errors import TgdferError
from .encoders import EncoderConfig
from .head import HeadConfig
from .metrics import Scores, fold_table, split_table
from .store import FeatureStore
from .train import PROTOCOLS, TrainConfig, build_head, evaluate_rows, load_checkpoint, load_device_data, resolve_device


@dataclass
class RunScore:
    run: Path
    fold: Optional[int]
    selection: str
    epoch: int
    test: Scores


def load_run_config(run: str | Path) -> tuple[HeadConfig, TrainConfig, Optional[EncoderConfig]]:
    """The head, train and (when recorded) encoder configs a run was made with (its config.json)."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise TgdferError(f"{run}: not a run folder (no config.json); runs are written by `tgdfer train-head`")
    record = json.loads(path.read_text())
    encoder = build(EncoderConfig, record["encoder"], "encoder") if "encoder" in record else None
    return build(HeadConfig, record["head"], "head"), build(TrainConfig, record["train"], "train"), encoder


def rescore(run: str | Path, device: str = "auto") -> RunScore:
    """Rebuild the run's head from its checkpoint and score it on the test clips of its store."""
    run = Path(run)
    head_cfg, cfg, encoder = load_run_config(run)
    ckpt_path = run / ("last.pt" if cfg.selection == "final" else "best.pt")
    dev = resolve_device(device)
    ckpt = load_checkpoint(ckpt_path, map_location=dev)
    with FeatureStore.open(cfg.store) as store:
        if store.fingerprint != ckpt["store_fingerprint"]:
            raise TgdferError(f"{cfg.store} is not the store {run} was trained on (fingerprints differ); "
                              "re-extract it with the run's settings")
        head = build_head(head_cfg, store, dev, ckpt["head_args"]["seeds"][0], encoder=encoder)
        data = load_device_data(store, cfg, dev)
    head.load_state_dict(ckpt["head_state"])
    return RunScore(run=run, fold=cfg.fold, selection=cfg.selection, epoch=int(ckpt["epoch"]),
                    test=evaluate_rows(head, data, data.test))


def results_table(scores: Sequence[RunScore]) -> tuple[pd.DataFrame, str]:
    """Table 1 layout (one row per fold, plus the mean) or Table 2 layout (one split); and the protocol."""
    protocols = {PROTOCOLS[s.selection] for s in scores}
    if len(protocols) > 1:
        raise TgdferError(f"runs use different model-selection protocols ({'; '.join(sorted(protocols))}); "
                          "tabulate them separately")
    protocol = protocols.pop()
    marked = protocol if protocol == PROTOCOLS["test-best"] else None
    folds = [s.fold for s in scores]
    if all(f is not None for f in folds):
        if len(set(folds)) != len(folds):
            raise TgdferError(f"two runs for the same fold among {[str(s.run) for s in scores]}")
        return fold_table({s.fold: s.test for s in scores}, protocol=marked), protocol
    if len(scores) != 1:
        raise TgdferError("runs without folds (train/test split datasets) are tabulated one at a time")
    return split_table(scores[0].test, protocol=marked), protocol
