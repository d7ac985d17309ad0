"""Stage 2 (`tgdfer train-head`): train the TG-DFER head on a feature store.

The whole store is read once onto the training device and indexed there (no DataLoader): each
epoch every training clip contributes one randomly chosen augmented view (views 1..V-1; view 0
when the store has only the test view), evaluation always uses view 0. Shape legend: N clips,
V views, T frames, D width, C classes, B batch, M replicas (1 here).

Model selection never looks at the test fold by default (`selection = "final"`, or `"val"`: a
stratified validation split carved from the training clips). `"test-best"` reproduces the
reference code's protocol (best epoch chosen on the test fold) and is marked as such in every
output.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import __version__
from .config import to_dict
from .encoders import EncoderConfig, load_encoder
from .errors import ConfigError, TgdferError
from .head import HeadConfig, TGDFERHead
from .labels import CLASSES
from .metrics import REFERENCE_PROTOCOL, Scores, score
from .readers import fold_split
from .store import FeatureStore
from .text import FrozenTextEncoder

log = logging.getLogger(__name__)

Selection = Literal["final", "val", "test-best"]


@dataclass
class TrainConfig:
    store: str = "cache/features.zarr"  # feature store written by `tgdfer extract`
    fold: Optional[int] = None  # DFEW-style test fold (1..K); None for train/test-split datasets
    out: str = "runs/run"  # run folder: config, metrics per epoch, final metrics, checkpoints
    epochs: int = 50  # paper: 50
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

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "prompt_lr", "gamma"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError("milestones", f"must be increasing, got {list(self.milestones)}")


class TrainingDiverged(TgdferError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    loss: float
    train_acc: float
    seconds: float
    clips_per_s: float
    test_war: float
    test_uar: float
    val_war: float = float("nan")
    val_uar: float = float("nan")


@dataclass
class TrainResult:
    run: Path
    selected_epoch: int  # epoch whose weights are in best.pt / the reported scores
    selection: str
    test: Scores
    history: pd.DataFrame
    protocol: str  # "final epoch", "validation split" or REFERENCE_PROTOCOL


# -- data on the device ---------------------------------------------------------------------------


@dataclass
class DeviceData:
    """The store's features and labels on the training device, plus the row splits."""

    feats: torch.Tensor  # [N, V, T, D] float16 on the device
    labels: torch.Tensor  # [N] int64 on the device
    train: np.ndarray  # row indices
    val: np.ndarray
    test: np.ndarray


def split_rows(clips: pd.DataFrame, done: np.ndarray, fold: Optional[int], selection: str,
               val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) rows of the fold; failed or missing clips are left out; val is stratified."""
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
        train = np.setdiff1d(train, val)
    return train, val, test


def load_device_data(store: FeatureStore, cfg: TrainConfig, device: torch.device) -> DeviceData:
    clips = store.clips
    if cfg.fold is not None and cfg.fold not in set(clips["fold"].dropna().astype(int)):
        folds = sorted(set(clips["fold"].dropna().astype(int)))
        raise ConfigError("fold", f"fold {cfg.fold} is not in {store.path} (folds: {folds or 'none'})")
    train, val, test = split_rows(clips, store.done, cfg.fold, cfg.selection, cfg.val_fraction, cfg.seed)
    feats = torch.from_numpy(store.read_feats()).to(device)  # [N, V, T, D] float16, read once
    labels = torch.tensor(clips["label"].to_numpy(), dtype=torch.int64, device=device)
    return DeviceData(feats, labels, train, val, test)


# -- model ----------------------------------------------------------------------------------------


def text_sets(store: FeatureStore) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every stored prompt set as (tokens [P, L] int64, emb [P, D] float32)."""
    out = {}
    for name in store.text_sets:
        _, tokens, emb = store.text(name)
        out[name] = (torch.as_tensor(tokens, dtype=torch.int64), torch.as_tensor(emb, dtype=torch.float32))
    return out


def load_text_encoder(store: FeatureStore, device: torch.device,
                      encoder: Optional[EncoderConfig] = None) -> FrozenTextEncoder:
    """The store's text tower (only), checked against the embeddings extract stored with it.

    A store extracted from a tag or random weights names everything needed; one extracted from a
    local weights file needs that file again: `encoder.pretrained` (the pipeline's [encoder]).
    """
    fp = store.fingerprint["encoder"]
    pretrained = fp["pretrained"]
    if pretrained == "file":
        if encoder is None or not os.path.isfile(encoder.pretrained):
            raise TgdferError(
                f"{store.path} was extracted from a local weights file (sha256 {fp['weights_sha256'][:12]}...); "
                "learnable prompts need its text tower: set [encoder] pretrained to that file")
        pretrained = encoder.pretrained
    return _text_encoder(store, EncoderConfig(model=fp["model"], pretrained=pretrained,
                                             quick_gelu=fp["quick_gelu"]), device)


def _text_encoder(store: FeatureStore, enc_cfg: EncoderConfig, device: torch.device) -> FrozenTextEncoder:
    enc = load_encoder(enc_cfg, device=device, towers=("text",))
    fp = store.fingerprint["encoder"]
    if fp.get("weights_sha256") and enc.fingerprint.get("weights_sha256") != fp["weights_sha256"]:
        raise TgdferError(f"{enc_cfg.pretrained}: sha256 {enc.fingerprint['weights_sha256']} differs from the "
                          f"weights {store.path} was extracted with ({fp['weights_sha256']})")
    text = FrozenTextEncoder(enc)
    _, tokens, emb = store.text("class_names")
    with torch.no_grad():
        again = text.encode_tokens(torch.as_tensor(tokens, dtype=torch.int64, device=device)).float().cpu()
    if not torch.allclose(again, torch.as_tensor(emb), rtol=1e-2, atol=1e-2 * float(again.abs().max())):
        raise TgdferError(f"the {fp['model']} text tower loaded for training does not reproduce the text "
                          f"embeddings stored in {store.path}: wrong weights?")
    return text


def build_head(head_cfg: HeadConfig, store: FeatureStore, device: torch.device, seed: int,
               text_encoder: Optional[FrozenTextEncoder] = None,
               encoder: Optional[EncoderConfig] = None) -> TGDFERHead:
    try:
        head_cfg.check_frames(store.frames)
    except ConfigError as e:  # name the pipeline field: head.window, not window
        raise ConfigError(f"head.{e.field}", f"{str(e).split(': ', 1)[-1]} (the store has {store.frames} frames)") from None
    for field_name, name in (("head.text_prompt", head_cfg.fine_text), ("head.coarse_text", head_cfg.coarse_text)):
        if name not in store.text_sets:
            raise ConfigError(field_name, f"{store.path} has no prompt set {name!r} "
                              f"(it has: {', '.join(store.text_sets) or 'none'})")
    if head_cfg.learnable and text_encoder is None:
        text_encoder = load_text_encoder(store, device, encoder)
    head = TGDFERHead(head_cfg, dim=store.dim, frames=store.frames, classes=len(CLASSES), text=text_sets(store),
                      text_encoder=text_encoder if head_cfg.learnable else None, replicas=1, seeds=[seed])
    return head.to(device)


def make_optimizer(head: TGDFERHead, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """SGD with the paper's parameter groups (head 1e-2, prompts 1e-3) and MultiStepLR."""
    groups = head.param_groups()
    params = [{"params": groups["head"], "lr": cfg.lr, "name": "head"}]
    if groups["prompt"]:
        params.append({"params": groups["prompt"], "lr": cfg.prompt_lr, "name": "prompt"})
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return opt, sched


# -- steps ----------------------------------------------------------------------------------------


def epoch_order(rows: np.ndarray, views: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """This epoch's clip order and the augmented view each clip uses (depends only on seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(rows)
    view = rng.integers(1, views, size=len(order)) if views > 1 else np.zeros(len(order), dtype=np.int64)
    return order, view


def train_epoch(head: TGDFERHead, data: DeviceData, opt: torch.optim.Optimizer, cfg: TrainConfig,
                epoch: int) -> tuple[float, float]:
    """One pass over the training clips; returns (mean loss, train accuracy). Raises on a NaN loss."""
    head.train()
    order, view = epoch_order(data.train, data.feats.shape[1], cfg.seed, epoch)
    dev = data.feats.device
    total_loss, correct = 0.0, 0
    for step, start in enumerate(range(0, len(order), cfg.batch_size)):
        rows = torch.as_tensor(order[start:start + cfg.batch_size], device=dev)
        views = torch.as_tensor(view[start:start + cfg.batch_size], device=dev)
        x = data.feats[rows, views].float()  # [B, T, D]
        y = data.labels[rows]  # [B]
        out = head(x, target=y[None])
        loss = F.cross_entropy(out.logits[0], y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch}, step {step}; the last good "
                                   f"checkpoint is kept in {cfg.out} (try a lower lr)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total_loss += loss.item() * len(rows)
        correct += int((out.logits[0].argmax(-1) == y).sum())
    return total_loss / len(order), correct / len(order)


@torch.no_grad()
def predict_rows(head: TGDFERHead, data: DeviceData, rows: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Logits [n, C] of `rows` from the test-time view 0."""
    head.eval()
    fine = head.fine_prompt()  # X^FP once for all batches
    out = []
    for start in range(0, len(rows), batch_size):
        idx = torch.as_tensor(rows[start:start + batch_size], device=data.feats.device)
        x = data.feats[idx, 0].float()  # [B, T, D]
        out.append(head.forward_head(head.forward_features(x), fine=fine).logits[0])
    return torch.cat(out)


def evaluate_rows(head: TGDFERHead, data: DeviceData, rows: np.ndarray) -> Scores:
    logits = predict_rows(head, data, rows)
    return score(data.labels[torch.as_tensor(rows, device=data.labels.device)], logits)


# -- checkpoints ----------------------------------------------------------------------------------


def save_checkpoint(path: Path, **state: Any) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a torn checkpoint."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise TgdferError(f"{path}: no checkpoint here")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torn, foreign or not a torch file
        raise TgdferError(f"{path}: cannot read checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or "head_state" not in ckpt:
        raise TgdferError(f"{path}: not a tgdfer checkpoint")
    if ckpt.get("tgdfer_version") != __version__:
        log.warning("%s was written by tgdfer %s, this is %s", path, ckpt.get("tgdfer_version"), __version__)
    return ckpt


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# -- the run --------------------------------------------------------------------------------------


PROTOCOLS = {"final": "final epoch", "val": "best epoch on a validation split of the training fold",
             "test-best": REFERENCE_PROTOCOL}


def _selection_metric(record: EpochRecord, selection: str) -> float:
    """Higher is better: WAR then UAR (the paper calls WAR the critical metric)."""
    war, uar = (record.val_war, record.val_uar) if selection == "val" else (record.test_war, record.test_uar)
    return war + 1e-3 * uar


def train(head_cfg: HeadConfig, cfg: TrainConfig, *, resume: bool = False, config_record: Optional[dict] = None,
          on_epoch: Optional[Callable[[EpochRecord], None]] = None,
          text_encoder: Optional[FrozenTextEncoder] = None, encoder: Optional[EncoderConfig] = None) -> TrainResult:
    """Train on the store at cfg.store; writes cfg.out/{config.json, metrics.csv, final.json, last.pt, best.pt}."""
    out = Path(cfg.out)
    if out.exists() and any(out.glob("*.pt")) and not resume:
        raise TgdferError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # dropout and anything else drawing from the global generator
    with FeatureStore.open(cfg.store) as store:
        head = build_head(head_cfg, store, device, cfg.seed, text_encoder, encoder)
        data = load_device_data(store, cfg, device)
        fingerprint = store.fingerprint
        frames, dim = store.frames, store.dim
    opt, sched = make_optimizer(head, cfg)
    record_cfg = {"head": to_dict(head_cfg), "train": to_dict(cfg), **(config_record or {})}
    if encoder is not None:
        record_cfg["encoder"] = to_dict(encoder)
    (out / "config.json").write_text(json.dumps(record_cfg, indent=2))
    history: list[EpochRecord] = []
    start, best = 1, (-math.inf, 0)
    if resume and (out / "last.pt").exists():
        ckpt = load_checkpoint(out / "last.pt", map_location=device)
        head.load_state_dict(ckpt["head_state"])
        opt.load_state_dict(ckpt["opt_state"])
        sched.load_state_dict(ckpt["sched_state"])
        torch.set_rng_state(ckpt["torch_rng"])
        history = [EpochRecord(**r) for r in ckpt["history"]]
        start, best = ckpt["epoch"] + 1, tuple(ckpt["best"])
        log.info("resuming %s at epoch %d", out, start)
    meta = dict(config=record_cfg, head_args=dict(dim=dim, frames=frames, classes=len(CLASSES), seeds=head.seeds),
                store_fingerprint=fingerprint, tgdfer_version=__version__, mode="cached")
    for epoch in range(start, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        loss, acc = train_epoch(head, data, opt, cfg, epoch)
        sched.step()
        seconds = time.perf_counter() - t0
        test = evaluate_rows(head, data, data.test)
        val = evaluate_rows(head, data, data.val) if len(data.val) else None
        rec = EpochRecord(epoch=epoch, lr=lr, loss=loss, train_acc=acc, seconds=seconds,
                          clips_per_s=len(data.train) / seconds, test_war=test.war, test_uar=test.uar,
                          val_war=val.war if val else float("nan"), val_uar=val.uar if val else float("nan"))
        history.append(rec)
        state = dict(head_state=head.state_dict(), epoch=epoch, **meta)
        if cfg.selection != "final" and _selection_metric(rec, cfg.selection) > best[0]:
            best = (_selection_metric(rec, cfg.selection), epoch)
            save_checkpoint(out / "best.pt", **state)
        save_checkpoint(out / "last.pt", **state, opt_state=opt.state_dict(), sched_state=sched.state_dict(),
                        torch_rng=torch.get_rng_state(), history=[vars(r) for r in history], best=list(best))
        pd.DataFrame([vars(r) for r in history]).to_csv(out / "metrics.csv", index=False)
        if on_epoch:
            on_epoch(rec)
    return _finish(out, head, data, cfg, history, best)


def _finish(out: Path, head: TGDFERHead, data: DeviceData, cfg: TrainConfig, history: list[EpochRecord],
            best: tuple) -> TrainResult:
    """Score the selected weights on the test rows and write final.json."""
    selected = cfg.epochs
    if cfg.selection != "final":
        selected = int(best[1])
        head.load_state_dict(load_checkpoint(out / "best.pt", map_location=data.feats.device)["head_state"])
    test = evaluate_rows(head, data, data.test)
    protocol = PROTOCOLS[cfg.selection]
    final = {"selection": cfg.selection, "protocol": protocol, "selected_epoch": selected, "fold": cfg.fold,
             "test": test.to_dict(), "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test)}
    (out / "final.json").write_text(json.dumps(final, indent=2))
    return TrainResult(run=out, selected_epoch=selected, selection=cfg.selection, test=test,
                       history=pd.DataFrame([vars(r) for r in history]), protocol=protocol)
