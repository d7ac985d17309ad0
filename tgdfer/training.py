"""Stage 2 (`tgdfer train-head`): train the TG-DFER head on a feature store, one or many replicas at once.

The whole store is read once onto the training device and indexed there (no DataLoader): each
epoch every training clip contributes one randomly chosen augmented view (views 1..V-1; view 0
when the store has only the test view), evaluation always uses view 0. Shape legend: N clips,
V views, T frames, D width, C classes, B batch, M replicas.

`train_replicas` trains M replicas of one architecture (DFEW folds x seeds) as one batched
computation on one device: the head carries a replica axis on every trainable tensor, the store
is read once and shared, and each replica keeps its own training split, clip order, view choice,
checkpoint and run folder, exactly as if it had been trained alone (`train` is the M = 1 case).
Replicas whose training sets differ in size take different numbers of steps: their batches are
padded and masked, and a replica without a batch at a step is not moved by it at all.

Model selection never looks at the test fold by default (`selection = "final"`, or `"val"`: a
stratified validation split carved from the training clips). `"test-best"` reproduces the
reference code's protocol (best epoch chosen on the test fold) and is marked as such in every
output.

This module is the loop: optimiser and schedule, one epoch of steps, scoring, the epochs of a
run. Its parts live beside it: tgdfer.trainconfig (the [train] table), tgdfer.devicedata (the
store on the device, each run's rows), tgdfer.model (the head and CLIP towers that fit a store),
tgdfer.replicas (the replica axis: padded batches, masked steps, state slicing and stacking),
tgdfer.run (the run folder: its files, checkpoints, settings and resume checks).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import __version__
from .devicedata import DeviceData, check_fold, load_replica_data, resolve_device
from .encoders import EncoderConfig
from .errors import ConfigError, RunFolderError, TgdferError, os_error
from .fixedsettings import stored_record
from .head import HeadConfig, TGDFERHead
from .labels import ClassSet, check_same_classes, class_set, stored_classes
from .metrics import Scores, score
from .progress import ProgressCallback, Stage, as_callback
from .run import (BEST, CONFIG, FINAL, LAST, METRICS, Replica, check_resume, load_checkpoint, resumed_record,
                  run_record, save_checkpoint, write_text)
from .live import LiveFeatures, refresh_view0
from .model import build_head, check_head, load_image_encoder, load_text_encoder
from .replicas import (masked_step, pad_batches, replica_head_state, replica_opt_state, stack_head_states,
                       stack_opt_states)
from .store import FeatureStore
from .tensorboard_log import check_tensorboard, epoch_writers, write_epoch
from .text import FrozenTextEncoder
from .views import epoch_order
from .trainconfig import PROTOCOLS, TrainConfig

log = logging.getLogger(__name__)

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


def parse_int_list(text: str, name: str) -> list[int]:
    """"1-5" -> [1, 2, 3, 4, 5]; "1,3,5" -> [1, 3, 5]; "1-3,5" -> [1, 2, 3, 5]."""
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        try:
            values = range(int(lo), int(hi) + 1) if sep else [int(part)]
        except ValueError:
            raise ConfigError(name, f"{text!r} is not a list of integers like 1-5 or 1,3,5") from None
        if sep and int(hi) < int(lo):
            raise ConfigError(name, f"{part!r}: an empty range")
        out.extend(values)
    if len(set(out)) != len(out):
        raise ConfigError(name, f"{text!r} repeats a value")
    return out


# -- optimiser ------------------------------------------------------------------------------------


def make_optimizer(head: TGDFERHead, cfg: TrainConfig,
                   encoder_params: Optional[Sequence[torch.nn.Parameter]] = None) -> tuple[torch.optim.Optimizer, Any]:
    """SGD with the paper's parameter groups (head 1e-2, prompts 1e-3, image encoder 1e-5 end-to-end), MultiStepLR.

    Every parameter is stacked over the replica axis and SGD is elementwise, so one optimiser
    steps each replica exactly as its own optimiser would.
    """
    groups = head.param_groups()
    params = [{"params": groups["head"], "lr": cfg.lr, "name": "head"}]
    if groups["prompt"]:
        params.append({"params": groups["prompt"], "lr": cfg.prompt_lr, "name": "prompt"})
    if encoder_params:
        params.append({"params": list(encoder_params), "lr": cfg.encoder_lr, "name": "encoder"})
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return opt, sched


# -- steps ----------------------------------------------------------------------------------------


def replica_losses(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each replica over its own clips: logits [M, B, C], y, mask [M, B] -> [M].

    Padded clips count for nothing; a replica without clips gets 0 (and no gradient).
    """
    M, B, C = logits.shape
    ce = F.cross_entropy(logits.reshape(M * B, C), y.reshape(M * B), reduction="none").view(M, B)
    ce = torch.where(mask, ce, torch.zeros_like(ce))  # a padded clip's loss never reaches the sum
    return ce.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def step_losses(head: TGDFERHead, x: torch.Tensor, y: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A training step's forward and loss: x [M, B, T, D], y, mask [M, B] -> (losses [M], hits [M])."""
    logits = head(x, target=y).logits  # [M, B, C]; the text tower runs here when prompts are learnable
    return replica_losses(logits, y, mask), ((logits.argmax(-1) == y) & mask).sum(dim=1)


@functools.cache
def head_step(mode: str = "off") -> Callable:
    """`step_losses`, eager (off), through torch.compile (on) or compiled and CUDA-graphed (graphs).

    One compiled function per mode for the process: the head is an argument, so heads of one
    architecture and batch shape share a graph (dynamic=False: each shape gets its own).
    """
    if mode == "off":
        return step_losses
    return torch.compile(step_losses, dynamic=False, mode="reduce-overhead" if mode == "graphs" else None)


class Features(Protocol):
    """Where training features come from when not from the store (end-to-end: `live.LiveFeatures`)."""

    views: int  # V of `epoch_order`: each clip trains on one of views 1..V-1 per epoch

    def __call__(self, rows: torch.Tensor, views: torch.Tensor) -> torch.Tensor: ...  # [M, B] -> [M, B, T, D]


@dataclass
class EpochStats:
    """One epoch of M replicas: their mean loss and accuracy, and the steps where they diverged."""

    loss: np.ndarray  # [M] mean training loss over each replica's clips
    acc: np.ndarray  # [M] training accuracy
    diverged: dict[int, str]  # replica -> "loss is nan at epoch e, step k" (the replica stopped there)


def train_replica_epoch(head: TGDFERHead, datas: Sequence[DeviceData], opt: torch.optim.Optimizer,
                        batch_size: int, seeds: Sequence[int], epoch: int,
                        active: Optional[np.ndarray] = None, features: Optional[Features] = None,
                        views: int = 0, mixing: str = "clip", drop_last: bool = False,
                        draw: str = "random", compile: str = "off") -> EpochStats:
    """One pass of every active replica over its own training clips, all replicas in each step.

    Replica m takes its clips in `epoch_order(datas[m].train, V, seeds[m], epoch)` in batches of
    `batch_size`; the replicas' mean losses are summed, so each one's gradient is its own. A
    replica whose loss is NaN or infinite stops (it is never stepped again) and is reported.
    `features` replaces the store's `feats[rows, views]` (end-to-end: `live.LiveFeatures`).
    `views` > 0 draws only from the store's views 1..views; `mixing` = "frame" draws a view per frame;
    `draw` = "cycle" gives each clip its views in turn (`epoch_order`);
    `drop_last` leaves out the clips of a replica's last partial batch (kept when it has no full batch).
    `compile`: how the forward and loss run (`head_step`; TrainConfig.compile).
    """
    step_fn = head_step(compile)
    head.train()
    M = head.replicas
    feats, labels = datas[0].feats, datas[0].labels  # [N, V, T, D], [N], shared by all replicas
    dev = feats.device
    active = np.ones(M, dtype=bool) if active is None else active.copy()
    views_n = feats.shape[1] if features is None else features.views
    if views:
        views_n = min(views_n, views + 1)
    T = feats.shape[2]
    per_frame = T if mixing == "frame" else 0
    orders = [epoch_order(d.train, views_n, s, epoch, per_frame, draw) for d, s in zip(datas, seeds)]
    if drop_last:  # whole batches only (all clips when there is not even one)
        full = [len(o) // batch_size * batch_size or len(o) for o, _ in orders]
        orders = [(o[:n], v[:n]) for (o, v), n in zip(orders, full)]
    steps = max(math.ceil(len(o) / batch_size) for o, _ in orders)
    total, correct = np.zeros(M), np.zeros(M)
    diverged: dict[int, str] = {}
    # cached features: every batch padded to batch_size, so a replica's shapes (and float32 sums) do not
    # depend on the replicas it trains with; live features are one replica and would decode the padding
    width = batch_size if features is None else 0
    for step in range(steps):
        sl = slice(step * batch_size, (step + 1) * batch_size)
        rows, mask = pad_batches([o[sl] if a else o[:0] for (o, _), a in zip(orders, active)], width=width)
        views, _ = pad_batches([v[sl] if a else v[:0] for (_, v), a in zip(orders, active)], width=width)
        rows_t, views_t = torch.as_tensor(rows, device=dev), torch.as_tensor(views, device=dev)
        mask_t = torch.as_tensor(mask, device=dev)
        if features is not None:
            x = features(rows_t, views_t)  # [M, B, T, D]
        elif per_frame:  # views_t [M, B, T]: frame t of clip b from its own view
            x = feats[rows_t[..., None], views_t, torch.arange(T, device=dev)].float()
        else:
            x = feats[rows_t, views_t].float()  # [M, B, T, D]
        y = labels[rows_t]  # [M, B]
        if compile == "graphs":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are done with
        losses, hits = step_fn(head, x, y, mask_t)  # [M], [M]
        host, hits = torch.stack([losses.detach(), hits.to(losses.dtype)]).cpu().numpy()  # one sync a step
        bad = mask.any(axis=1) & ~np.isfinite(host)
        for m in np.flatnonzero(bad):
            diverged[int(m)] = f"loss is {host[m]} at epoch {epoch}, step {step}"
        active &= ~bad
        if not active.any():
            break
        opt.zero_grad(set_to_none=True)
        losses.masked_fill(torch.as_tensor(~active, device=dev), 0.0).sum().backward()  # replicas' grads apart
        masked_step(opt, ~mask.any(axis=1) | ~active)
        total += np.where(active, host * mask.sum(axis=1), 0.0)
        correct += np.where(active, hits, 0)
    sizes = np.array([max(len(o), 1) for o, _ in orders])  # clips trained on this epoch
    return EpochStats(loss=total / sizes, acc=correct / sizes, diverged=diverged)


def train_epoch(head: TGDFERHead, data: DeviceData, opt: torch.optim.Optimizer, cfg: TrainConfig,
                epoch: int) -> tuple[float, float]:
    """One pass of a 1-replica head over the training clips; returns (mean loss, train accuracy)."""
    stats = train_replica_epoch(head, [data], opt, cfg.batch_size, [cfg.seed], epoch, views=cfg.views,
                                mixing=cfg.view_mixing, drop_last=cfg.drop_last, draw=cfg.view_draw,
                                compile=cfg.compile)
    if stats.diverged:
        raise TrainingDiverged(f"{stats.diverged[0]}; the last good checkpoint is kept in {cfg.out} (try a lower lr)")
    return float(stats.loss[0]), float(stats.acc[0])


@torch.no_grad()
def predict_replicas(head: TGDFERHead, feats: torch.Tensor, rows: Sequence[np.ndarray],
                     batch_size: int = 256) -> list[torch.Tensor]:
    """Logits [n_m, C] of each replica m's `rows[m]` from the test-time view 0, all replicas per batch."""
    head.eval()
    fine = head.fine_prompt()  # X^FP [M, C, D] once for all batches
    outs: list[list[torch.Tensor]] = [[] for _ in rows]
    for start in range(0, max(len(r) for r in rows), batch_size):
        idx, mask = pad_batches([r[start:start + batch_size] for r in rows])
        x = feats[torch.as_tensor(idx, device=feats.device), 0].float()  # [M, B, T, D]
        logits = head.forward_head(head.forward_features(x), fine=fine).logits  # [M, B, C]
        for m, k in enumerate(mask.sum(axis=1)):
            outs[m].append(logits[m, :k])
    return [torch.cat(o) if o else feats.new_zeros((0, head.classes), dtype=torch.float32) for o in outs]


def evaluate_replicas(head: TGDFERHead, datas: Sequence[DeviceData], split: str) -> list[Optional[Scores]]:
    """Scores of each replica on its own `split` rows ("test" or "val"); None where it has none."""
    rows = [getattr(d, split) for d in datas]
    if not any(len(r) for r in rows):
        return [None] * len(rows)
    logits = predict_replicas(head, datas[0].feats, rows)
    labels = datas[0].labels
    return [score(labels[torch.as_tensor(r, device=labels.device)], lg, datas[0].classes) if len(r) else None
            for r, lg in zip(rows, logits)]


# -- the run --------------------------------------------------------------------------------------


def _selection_metric(record: EpochRecord, selection: str) -> float:
    """Higher is better: WAR then UAR (the paper calls WAR the critical metric)."""
    war, uar = (record.val_war, record.val_uar) if selection == "val" else (record.test_war, record.test_uar)
    return war + 1e-3 * uar


@dataclass
class _Run:
    """What train_replicas keeps per replica: config, data, run folder, history, best epoch."""

    cfg: TrainConfig
    data: DeviceData
    out: Path
    record: dict  # config.json
    history: list[EpochRecord] = field(default_factory=list)
    best: tuple = (-math.inf, 0)
    start: int = 1  # first epoch still to train
    ckpt: Optional[dict] = None  # last checkpoint when resuming


def train(head_cfg: HeadConfig, cfg: TrainConfig, *, resume: bool = False, config_record: Optional[dict] = None,
          on_epoch: Optional[Callable[[EpochRecord], None]] = None,
          text_encoder: Optional[FrozenTextEncoder] = None, encoder: Optional[EncoderConfig] = None,
          classes: Optional[ClassSet | Sequence[str]] = None, progress: Optional[ProgressCallback] = None
          ) -> TrainResult:
    """Train one replica (cfg.fold, cfg.seed) on cfg.store; writes cfg.out/{config.json, metrics.csv,
    final.json, last.safetensors, best.safetensors}. The M = 1 case of `train_replicas`."""
    each = None if on_epoch is None else (lambda epoch, records: [on_epoch(r) for r in records])
    return train_replicas(head_cfg, cfg, [Replica(cfg.fold, cfg.seed, cfg.out)], resume=resume,
                          config_record=config_record, on_epoch=each, text_encoder=text_encoder,
                          encoder=encoder, classes=classes, progress=progress)[0]


def train_replicas(head_cfg: HeadConfig, cfg: TrainConfig, replicas: Sequence[Replica], *, resume: bool = False,
                   config_record: Optional[dict] = None,
                   on_epoch: Optional[Callable[[int, list[EpochRecord]], None]] = None,
                   text_encoder: Optional[FrozenTextEncoder] = None,
                   encoder: Optional[EncoderConfig] = None,
                   classes: Optional[ClassSet | Sequence[str]] = None,
                   progress: Optional[ProgressCallback] = None) -> list[TrainResult]:
    """Train every replica (fold, seed, run folder) of one architecture together on cfg.store.

    `cfg` holds everything the replicas share; each replica's fold, seed and out replace cfg's.
    Each run folder ends up as a single `train` run with that fold and seed would leave it
    (config.json, metrics.csv, final.json, last/best.safetensors holding a 1-replica head), up to float
    rounding of the batched matmuls and the dropout draws. `on_epoch(epoch, records)` gets one
    record per replica trained in that epoch, in `replicas` order. With `resume`, replicas are
    continued from their last checkpoint (replicas stopped at different epochs train in separate groups).
    A replica whose loss turns NaN stops; the others go on, then TrainingDiverged names it.
    `progress` (tgdfer.progress: a callable, a tqdm bar, a rich Progress) gets one event per epoch
    (means over the replicas); with `cfg.tensorboard` each run folder gets a tensorboard/ log too.
    `classes` (the pipeline's [classes]): a ConfigError naming both sets when the store was built
    for another class set; None trains on whatever set the store has.
    """
    replicas = list(replicas)
    _check_replicas(replicas, resume)
    if cfg.end_to_end and len(replicas) != 1:
        raise ConfigError("end_to_end", f"trains one replica (one fold, one seed) at a time, got {len(replicas)}: "
                          "the image encoder is not batched over replicas")
    device = resolve_device(cfg.device)
    if cfg.tensorboard:
        check_tensorboard()  # before any work: a missing package names the extra
    # the caller's global generators are theirs again afterwards (a notebook's seeded stream went on from
    # this seed); inside, dropout and anything else drawing from them starts at the first replica's seed
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(replicas[0].seed)
        return _train_replicas(head_cfg, cfg, replicas, device, resume, config_record, on_epoch, text_encoder,
                               encoder, classes, progress)


def _train_replicas(head_cfg: HeadConfig, cfg: TrainConfig, replicas: list[Replica], device: torch.device,
                    resume: bool, config_record: Optional[dict], on_epoch: Optional[Callable],
                    text_encoder: Optional[FrozenTextEncoder], encoder: Optional[EncoderConfig],
                    classes: Optional[ClassSet | Sequence[str]], progress: Optional[ProgressCallback]
                    ) -> list[TrainResult]:
    with FeatureStore.open(cfg.store) as store:
        store_classes = stored_classes(store.fingerprint)
        if classes is not None:
            check_same_classes(store_classes, class_set(classes), str(store.path))
        check_head(head_cfg, store)
        cfgs = [replace(cfg, fold=r.fold, seed=r.seed, out=r.out) for r in replicas]
        for c in cfgs:
            check_fold(store, c.fold)
        if cfg.views and cfg.views > store.views - 1:
            raise ConfigError("views", f"{cfg.views} augmented views asked for, but {store.path} holds "
                              f"{store.views - 1} (views 1..{store.views - 1}; view 0 is the test view)")
        content = store.content_hash()  # recorded in every checkpoint: a resume refuses a changed store
        # the features fix [extract], [augment], [faces]: config.json records the store's values (tgdfer.fixedsettings)
        config_record = stored_record(config_record, store.fingerprint, str(store.path))
        if resume:  # before anything is loaded or written: a changed setting refuses the whole command
            for c in cfgs:
                check_resume(c.out, run_record(head_cfg, c, config_record, encoder), store.fingerprint,
                             content, store.path)
        if head_cfg.needs_text_encoder and text_encoder is None:
            text_encoder = load_text_encoder(store, device, encoder)  # once, for every group
        datas = load_replica_data(store, cfgs, device)
        runs = [_prepare_run(c, d, head_cfg, config_record, encoder, resume, store.fingerprint)
                for c, d in zip(cfgs, datas)]
        groups: dict[int, list[int]] = {}
        for i, run in enumerate(runs):  # replicas resumed at different epochs train apart
            groups.setdefault(run.start, []).append(i)
        heads = {start: build_head(head_cfg, store, device, [replicas[i].seed for i in idx], text_encoder, encoder)
                 for start, idx in groups.items()}
        live = _live_features(store, cfg, runs, device, encoder) if cfg.end_to_end else None
        meta = dict(store_fingerprint=store.fingerprint, store_content=content, tgdfer_version=__version__,
                    mode="end-to-end" if live else "cached",
                    head_args=dict(dim=store.dim, frames=store.frames, classes=len(store_classes)),
                    class_names=list(store_classes.names),  # label i's name, for evaluate and predict
                    prompts={name: store.text(name)[0] for name in (head_cfg.fine_text, head_cfg.coarse_text)})
    results: list[Optional[TrainResult]] = [None] * len(replicas)
    failed: list[str] = []
    with contextlib.closing(live) if live else contextlib.nullcontext():  # end-to-end: decode threads end here
        for start, idx in groups.items():
            group = [runs[i] for i in idx]
            stage = Stage(as_callback(progress), "train-head", cfg.epochs, "epoch", start=start - 1,
                          detail=f"x{len(group)} replicas" if len(group) > 1 else replicas[idx[0]].label)
            with epoch_writers([r.out for r in group], cfg.tensorboard) as boards:
                done, diverged = _train_group(heads[start], group, cfg, meta, start,
                                              _epoch_hooks(on_epoch, stage, boards), live)
            failed += [f"{replicas[idx[m]].label}: {msg}; " + (
                           f"the last good checkpoint is kept in {group[m].out}" if (Path(group[m].out) / LAST).is_file()
                           else f"no epoch finished, so {group[m].out} holds no checkpoint")
                       for m, msg in diverged.items()]
            for m, res in done.items():
                results[idx[m]] = res
    if failed:
        raise TrainingDiverged("; ".join(failed) + " (try a lower lr)")
    return results  # type: ignore[return-value]


def _epoch_hooks(on_epoch: Optional[Callable], stage: Stage, boards: list) -> Callable:
    """`on_epoch(epoch, records)` plus the progress event (replica means) and the TensorBoard scalars."""

    def hook(epoch: int, records: list[EpochRecord], active: Sequence[int]) -> None:
        for m, rec in zip(active, records):
            write_epoch(boards[m], rec)
        if records:
            df = pd.DataFrame([vars(r) for r in records])
            keys = ["loss", "train_acc", "test_war", "test_uar"] + (["val_war"] if df.val_war.notna().any() else [])
            stage.update(epoch, {k: round(float(df[k].mean()), 4) for k in keys})
        if on_epoch:
            on_epoch(epoch, records)

    return hook


def _live_features(store: FeatureStore, cfg: TrainConfig, runs: list[_Run], device: torch.device,
                   encoder: Optional[EncoderConfig]) -> LiveFeatures:
    """End-to-end mode: the store's image encoder, trainable, fed by decoded frames (one replica only)."""
    state = runs[0].ckpt.get("encoder_state") if runs[0].ckpt else None
    enc = load_image_encoder(store, device, encoder, state)
    if enc.precision == "fp16":  # fp16 gradients underflow without loss scaling; bf16 has fp32's range
        raise ConfigError("encoder.precision", "end-to-end training runs the encoder under bf16 or fp32 autocast; "
                          "fp16 would need loss scaling: set encoder.precision=bf16 (or fp32)")
    return LiveFeatures(enc, store, views=cfg.e2e_views, workers=cfg.decode_workers,
                        grad_checkpointing=cfg.grad_checkpointing)


def _check_replicas(replicas: Sequence[Replica], resume: bool) -> None:
    if not replicas:
        raise ConfigError("replicas", "nothing to train: give at least one fold or seed")
    outs = [str(Path(r.out).resolve()) for r in replicas]
    if len(set(outs)) != len(outs):
        raise ConfigError("out", "two replicas share one run folder")
    for r in replicas:
        out = Path(r.out)
        if out.is_file():
            raise RunFolderError(out, ": the run folder is a file", "choose another folder with {out}")
        if not resume and out.exists() and any(out.glob(f"*{s}") for s in (".safetensors", ".pt")):
            raise RunFolderError(out, " already holds a run",
                                 "pass {resume} to continue it or choose another folder with {out}")
        if resume and not (out / LAST).exists() and (out / "last.pt").exists():
            load_checkpoint(out / "last.pt")  # LegacyCheckpointError: says how to convert it


def _prepare_run(cfg: TrainConfig, data: DeviceData, head_cfg: HeadConfig, config_record: Optional[dict],
                 encoder: Optional[EncoderConfig], resume: bool, fingerprint: dict) -> _Run:
    """Create the run folder, write config.json, read the last checkpoint when resuming."""
    out = Path(cfg.out)
    record = run_record(head_cfg, cfg, config_record, encoder)
    resumed = resume and (out / LAST).exists()
    if resumed:  # check_resume passed: the run keeps its own record, with the epochs now asked for, and the
        # store's values of the settings it fixes (a run started by an older tgdfer recorded the file's)
        record = resumed_record(out, record)
        with contextlib.suppress(ConfigError):  # tables another tgdfer wrote (a field since removed): kept as written
            record = stored_record(record, fingerprint, str(cfg.store), warn=False)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / CONFIG, json.dumps(record, indent=2))
    except OSError as e:
        raise os_error(out, e, "write the run folder") from e
    run = _Run(cfg=cfg, data=data, out=out, record=record)
    if resumed:
        ckpt = load_checkpoint(out / LAST)
        run.ckpt, run.start = ckpt, int(ckpt["epoch"]) + 1
        run.history = [EpochRecord(**r) for r in ckpt["history"]]
        run.best = tuple(ckpt["best"])
        log.info("resuming %s at epoch %d", out, run.start)
    return run


def _train_group(head: TGDFERHead, runs: list[_Run], cfg: TrainConfig, meta: dict, start: int,
                 on_epoch: Callable, live: Optional[LiveFeatures] = None
                 ) -> tuple[dict[int, TrainResult], dict[int, str]]:
    """Train the replicas that start at the same epoch as one batched head; finish the healthy ones.

    `live` (end-to-end, one replica): features from decoded frames through the trainable encoder.
    `on_epoch(epoch, records, replicas)`: the epoch's records of the replicas still training.
    """
    opt, sched = make_optimizer(head, cfg, list(live.parameters()) if live else None)
    if runs[0].ckpt is not None:  # resume: stack the replicas' checkpoints
        ckpts = [r.ckpt for r in runs]
        head.load_state_dict(stack_head_states(head, [c["head_state"] for c in ckpts]))
        opt.load_state_dict(stack_opt_states([c["opt_state"] for c in ckpts]))
        sched.load_state_dict(ckpts[0]["sched_state"])
        torch.set_rng_state(ckpts[0]["torch_rng"])
        for r in runs:
            r.ckpt = None
    else:
        torch.manual_seed(runs[0].cfg.seed)
    datas, seeds = [r.data for r in runs], [r.cfg.seed for r in runs]
    active = np.ones(len(runs), dtype=bool)
    diverged: dict[int, str] = {}
    for epoch in range(start, cfg.epochs + 1):
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        if live:
            live.train(True)
        stats = train_replica_epoch(head, datas, opt, cfg.batch_size, seeds, epoch, active, features=live,
                                    views=cfg.views, mixing=cfg.view_mixing, drop_last=cfg.drop_last,
                                    draw=cfg.view_draw, compile=cfg.compile)
        for m, msg in stats.diverged.items():
            diverged[m], active[m] = msg, False
        if not active.any():  # every replica diverged (maybe at its first step, before any optimiser step)
            break
        sched.step()
        seconds = time.perf_counter() - t0
        if live:
            refresh_view0(live, datas[0])
        tests, vals = evaluate_replicas(head, datas, "test"), evaluate_replicas(head, datas, "val")
        records = []
        for m in np.flatnonzero(active):
            rec = EpochRecord(epoch=epoch, lr=lr, loss=float(stats.loss[m]), train_acc=float(stats.acc[m]),
                              seconds=seconds, clips_per_s=len(datas[m].train) / seconds,
                              test_war=tests[m].war, test_uar=tests[m].uar,
                              val_war=vals[m].war if vals[m] else float("nan"),
                              val_uar=vals[m].uar if vals[m] else float("nan"))
            _save_epoch(runs[m], head, opt, sched, meta, m, rec, live)
            records.append(rec)
        on_epoch(epoch, records, list(np.flatnonzero(active)))
    healthy = [m for m in range(len(runs)) if m not in diverged]
    return (_finish(head, runs, healthy, cfg, live) if healthy else {}), diverged


def _save_epoch(run: _Run, head: TGDFERHead, opt: torch.optim.Optimizer, sched: Any, meta: dict, m: int,
                rec: EpochRecord, live: Optional[LiveFeatures] = None) -> None:
    """Replica m's epoch: history, metrics.csv, best checkpoint when the selection rule improves, last one."""
    run.history.append(rec)
    state = dict(head_state=replica_head_state(head, m), epoch=rec.epoch, config=run.record,
                 **{**meta, "head_args": {**meta["head_args"], "seeds": [run.cfg.seed]}})
    if live:  # end-to-end: the fine-tuned image tower belongs to the model
        state["encoder_state"] = {k: v.detach().clone() for k, v in live.visual.state_dict().items()}
    selection = run.cfg.selection
    if selection != "final" and _selection_metric(rec, selection) > run.best[0]:
        run.best = (_selection_metric(rec, selection), rec.epoch)
        save_checkpoint(run.out / BEST, **state)
    opt_state = opt.state_dict() if head.replicas == 1 else replica_opt_state(opt.state_dict(), m)
    save_checkpoint(run.out / LAST, **state, opt_state=opt_state,
                    sched_state=sched.state_dict(), torch_rng=torch.get_rng_state(),
                    history=[vars(r) for r in run.history], best=list(run.best))
    write_text(run.out / METRICS, pd.DataFrame([vars(r) for r in run.history]).to_csv(index=False))


def _finish(head: TGDFERHead, runs: list[_Run], healthy: list[int], cfg: TrainConfig,
            live: Optional[LiveFeatures] = None) -> dict[int, TrainResult]:
    """Score each healthy replica's selected weights on its test rows and write its final.json."""
    device = runs[0].data.feats.device
    if cfg.selection != "final":  # the selected epochs' weights, one replica at a time into the stack
        states = [replica_head_state(head, m) for m in range(len(runs))]
        for m in healthy:
            best = load_checkpoint(runs[m].out / BEST, map_location=device)
            states[m] = best["head_state"]
            if live:
                live.visual.load_state_dict(best["encoder_state"])
                refresh_view0(live, runs[m].data)
        head.load_state_dict(stack_head_states(head, states))
    tests = evaluate_replicas(head, [r.data for r in runs], "test")
    protocol = PROTOCOLS[cfg.selection]
    out = {}
    for m in healthy:
        run = runs[m]
        selected = cfg.epochs if cfg.selection == "final" else int(run.best[1])
        final = {"selection": cfg.selection, "protocol": protocol, "selected_epoch": selected, "fold": run.cfg.fold,
                 "seed": run.cfg.seed, "test": tests[m].to_dict(), "n_train": len(run.data.train),
                 "n_val": len(run.data.val), "n_test": len(run.data.test)}
        write_text(run.out / FINAL, json.dumps(final, indent=2))
        out[m] = TrainResult(run=run.out, selected_epoch=selected, selection=cfg.selection, test=tests[m],
                             history=pd.DataFrame([vars(r) for r in run.history]), protocol=protocol)
    return out


