"""Train-head benchmark: one epoch from the feature store versus one epoch that recomputes frozen features.

In one process, with the same torch threads, device and head (HeadConfig defaults: w=4, s=1,
n_f=n_c=1, learnable class prompts through the encoder's text tower, visual prompt "add"):

  1. store vs recompute, over the same SynthDFER clips, the same clip order and batch size:
       store      `tgdfer.training.train_epoch` on `DeviceData` (the store's float16 features in
                  memory); the median of --repeats epochs after a warm-up epoch;
       recompute  the reference code's way: a DataLoader decodes and augments each clip
                  (`tgdfer.extraction.ClipViews`, the train view 1), `encode_images` recomputes the
                  frozen image features, then the same head step;
     printed as `speedup: N` (recompute epoch s / store epoch s; target >= 50 with ViT-B-32 on a
     CPU). The one-time costs of the store path (extract, reading the store) are shown beside it.
  2. one epoch at DFEW scale: 9,356 clips of random float16 features [V=2, T=16, D] in memory,
     `train_epoch` at --batch-size; on a CPU a fixed number of steps is timed and extrapolated
     (--steps 0: the whole epoch), and the output says so.
  3. the head step at --batch-size: seconds per step at each of --step-threads, its FLOPs
     (forward + backward, `torch.utils.flop_counter.FlopCounterMode`) as a share of the FLOP/s
     a large float32 matmul reaches on the same threads, and where the step's time goes (each
     part's forward + backward timed alone). --profile adds a torch.profiler table.

The head always trains in float32; --precision is the image encoder's autocast (extract and
the recompute path). Random weights throughout ("none"): timing only.

    python benchmarks/train_head.py                     # ViT-B-32, fp32, CPU, 96 clips
    python benchmarks/train_head.py --threads 1 --step-threads 1
    python benchmarks/train_head.py --steps 0           # a whole DFEW-scale epoch, no extrapolation
    python benchmarks/train_head.py --profile           # torch.profiler table of the head step
    python benchmarks/train_head.py --quick             # tiny model, 8 clips: smoke run
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from tgdfer.augment import AugmentConfig
from tgdfer.devicedata import DeviceData
from tgdfer.encoders import EncoderConfig, LoadedEncoder, encode_images, load_encoder
from tgdfer.extraction import ClipViews, ExtractConfig, extract, resolve_device
from tgdfer.head import HeadConfig, TGDFERHead
from tgdfer.model import build_head
from tgdfer.readers import load_clips
from tgdfer.store import FeatureStore
from tgdfer.synth import SynthConfig, generate
from tgdfer.text import FrozenTextEncoder
from tgdfer.training import TrainConfig, epoch_order, make_optimizer, train_epoch

TARGET = 50.0  # recompute epoch s / store epoch s the issue asks for (ViT-B-32, CPU)
DFEW_TRAIN_CLIPS = 9356  # training clips of one DFEW fold
PAPER_EPOCHS = 50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32", help="open_clip model name (random weights)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="image encoder autocast (extract and recompute); the head trains in fp32")
    p.add_argument("--clips", type=int, default=96, help="SynthDFER clips for store vs recompute")
    p.add_argument("--batch-size", type=int, default=48, help="clips per head step (paper: 48)")
    p.add_argument("--frames", type=int, default=16, help="frames per view (T)")
    p.add_argument("--size", type=int, default=112, help="SynthDFER frame side in pixels")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers of extract and recompute")
    p.add_argument("--encode-batch", type=int, default=128, help="images per encode_images call in the recompute "
                   "path (extract's default: 4 clips x 2 views x 16 frames)")
    p.add_argument("--repeats", type=int, default=3, help="store epochs timed (median) after one warm-up epoch")
    p.add_argument("--dfew-clips", type=int, default=DFEW_TRAIN_CLIPS, help="training clips of the DFEW-scale epoch")
    p.add_argument("--steps", type=int, default=None, help="DFEW-scale steps timed, then extrapolated; 0 = the "
                   "whole epoch (default: whole epoch on a GPU, 20 steps on a CPU)")
    p.add_argument("--step-threads", type=int, nargs="+", default=None,
                   help="torch thread counts of the per-step table (default: 1 and --threads)")
    p.add_argument("--step-repeats", type=int, default=5, help="timed head steps per thread count (median)")
    p.add_argument("--matmul", type=int, default=2048, help="side of the fp32 matmul that measures machine FLOP/s")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="head init, clip order, random features")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's top ops of 3 head steps")
    p.add_argument("--quick", action="store_true", help="tiny model, 8 clips, 8 frames, 2 DFEW steps: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.clips, args.frames, args.size = "tgdfer-tiny-vit", 8, 8, 32
        args.dfew_clips, args.steps, args.repeats, args.step_repeats, args.matmul = 480, 2, 1, 2, 512
    return args


# -- timing helpers -------------------------------------------------------------------------------


def note(message: str) -> None:
    """Progress on stderr (a CPU run takes minutes); the tables go to stdout at the end."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Wall and CPU seconds of repeated calls of one function."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # this process, all its threads

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def timed(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> Timing:
    """Time `repeats` calls of fn after `warmup` untimed ones."""
    return interleaved({"fn": fn}, repeats, device, warmup)["fn"]


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                warmup: int = 1) -> dict[str, Timing]:
    """Time `repeats` rounds of every function in turn (so a shared machine's load hits all alike)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    out = {name: Timing() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            sync(device)
            out[name].wall.append(time.perf_counter() - t0)
            out[name].cpu.append(time.process_time() - c0)
    return out


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (DataLoader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls, convolutions and attention fn runs (forward and backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_flops(n: int, device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of the fastest of `repeats` [n, n] @ [n, n] float32 matmuls on the current threads."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t = timed(lambda: a @ b, repeats, device, warmup=2)
    return 2 * n**3 / min(t.wall)


def head_step(head: TGDFERHead, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """The body of `tgdfer.training.train_epoch` for one batch: x [B, T, D] float32, y [B] -> loss."""
    out = head(x, target=y[None])
    loss = F.cross_entropy(out.logits[0], y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    int((out.logits[0].argmax(-1) == y).sum())  # train_epoch's accuracy count (a device sync)
    return loss.item()


# -- 1. store vs recompute ------------------------------------------------------------------------


@dataclass
class EpochCompare:
    """Store epoch versus recompute epoch over the same clips, order and batches."""

    clips: int
    store: Timing  # train_epoch on DeviceData, --repeats epochs
    recompute: float  # seconds of the recompute epoch
    recompute_cpu: float  # CPU seconds of this process and its DataLoader workers
    wait: float  # seconds the recompute loop waited for the DataLoader
    encode: float  # seconds in encode_images
    head: float  # seconds in head steps
    extract: float  # seconds of the extract call that wrote the store (one-time)
    load: float  # seconds to read the store into DeviceData (once per run)

    @property
    def speedup(self) -> float:
        return self.recompute / self.store.median


def make_data(root: Path, clips: int, size: int) -> pd.DataFrame:
    """A SynthDFER set of JPEG frame folders (DFEW's format) and its clip table (not timed)."""
    out = root / "synth"
    generate(out, SynthConfig(clips=clips, format="frames", size=size, folds=min(5, clips)))
    return load_clips("dfew", split_dir=out / "EmoLabel_DataSplit", frames_dir=out / "frames").table


def extract_config(args: argparse.Namespace, store: Path) -> ExtractConfig:
    """Two views per clip (view 0 test-time, view 1 augmented), as the recompute path decodes them."""
    return ExtractConfig(store=str(store), views=2, frames=args.frames, seed=args.seed, workers=args.workers,
                         device=args.device)


def encoder_config(args: argparse.Namespace) -> EncoderConfig:
    return EncoderConfig(model=args.model, pretrained="none", precision=args.precision)


def run_extract(args: argparse.Namespace, table: pd.DataFrame, store: Path) -> float:
    """Seconds of the `extract` call that writes the store (the store path's one-time cost)."""
    t0 = time.perf_counter()
    result = extract(extract_config(args, store), AugmentConfig(), encoder_config(args), table,
                     data_kind="dfew", overwrite=True)
    if result.failed or result.extracted != len(table):
        raise RuntimeError(f"extract read {result.extracted} of {len(table)} clips: {result.failures[:3]}")
    return time.perf_counter() - t0


def store_data(store: FeatureStore, device: torch.device) -> DeviceData:
    """Every clip of the store on the device; all of them are training rows (one epoch = every clip)."""
    feats = torch.from_numpy(store.read_feats()).to(device)  # [N, V, T, D] float16
    labels = torch.tensor(store.clips["label"].to_numpy(), dtype=torch.int64, device=device)
    none = np.empty(0, dtype=np.int64)
    return DeviceData(feats, labels, np.arange(store.n_clips), none, none)


def fresh_head(args: argparse.Namespace, store: FeatureStore, device: torch.device, text: FrozenTextEncoder,
               cfg: TrainConfig) -> tuple[TGDFERHead, torch.optim.Optimizer]:
    """The paper's head (HeadConfig defaults) from args.seed and its SGD, as `tgdfer.training.train` builds them."""
    head = build_head(HeadConfig(), store, device, args.seed, text_encoder=text)
    return head, make_optimizer(head, cfg)[0]


def store_epochs(args: argparse.Namespace, store: FeatureStore, device: torch.device, text: FrozenTextEncoder,
                 cfg: TrainConfig) -> tuple[Timing, float]:
    """(train_epoch timings, seconds to read the store into memory): warm-up epoch 0, timed epochs 1..repeats."""
    t0 = time.perf_counter()
    data = store_data(store, device)
    load = time.perf_counter() - t0
    head, opt = fresh_head(args, store, device, text, cfg)
    epochs = iter(range(args.repeats + 1))
    timing = timed(lambda: train_epoch(head, data, opt, cfg, next(epochs)), args.repeats, device)
    return timing, load


def _train_view(items: list[dict]) -> dict:
    """DataLoader collate: the augmented view 1 of each clip -> pixels [B, T, 3, S, S] uint8, rows [B]."""
    bad = [it for it in items if it["error"] is not None]
    if bad:
        raise RuntimeError(f"row {bad[0]['row']}: {bad[0]['error']}")
    return {"pixels": torch.stack([it["pixels"][1] for it in items]), "rows": [it["row"] for it in items]}


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding workers must not fight the encoder for cores (as extract's)


def recompute_epoch(args: argparse.Namespace, table: pd.DataFrame, store: FeatureStore, enc: LoadedEncoder,
                    device: torch.device, cfg: TrainConfig, epoch: int = 1) -> dict[str, float]:
    """One epoch the reference code's way: decode + augment (DataLoader), encode_images, head step.

    Same clip order as train_epoch's epoch `epoch`, same batches, a fresh head from the same seed.
    The batch's B*T images go through the encoder --encode-batch at a time (as fast as one call,
    in far less memory).
    Returns seconds (whole epoch), cpu (this process and its workers), wait (for batches), encode, head.
    """
    head, opt = fresh_head(args, store, device, FrozenTextEncoder(enc), cfg)
    order, _ = epoch_order(np.arange(len(table)), 2, cfg.seed, epoch)
    labels = torch.tensor(table["label"].to_numpy(), dtype=torch.int64, device=device)
    dataset = ClipViews(table, order, extract_config(args, store.path), AugmentConfig(), enc.image_size,
                        enc.mean, enc.std)  # each clip: views 0 and 1 (view 0 is resize-only), we train on 1
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=args.workers,
                        collate_fn=_train_view, worker_init_fn=_worker_init if args.workers else None,
                        prefetch_factor=2 if args.workers else None)
    out = dict(wait=0.0, encode=0.0, head=0.0)
    c0 = cpu_seconds()
    t0 = t_prev = time.perf_counter()
    for batch in loader:
        t1 = time.perf_counter()
        pixels = batch["pixels"]  # [B, T, 3, S, S] uint8
        x = torch.cat([encode_images(enc, dataset.to_float(chunk.to(device)))
                       for chunk in pixels.flatten(0, 1).split(args.encode_batch)])
        x = x.view(*pixels.shape[:2], -1)  # [B, T, D] float32
        sync(device)
        t2 = time.perf_counter()
        head_step(head, opt, x, labels[torch.as_tensor(batch["rows"], device=device)])
        t3 = time.perf_counter()
        out["wait"] += t1 - t_prev
        out["encode"] += t2 - t1
        out["head"] += t3 - t2
        t_prev = t3
    out["seconds"], out["cpu"] = time.perf_counter() - t0, cpu_seconds() - c0
    return out


def compare_epochs(args: argparse.Namespace, table: pd.DataFrame, store_path: Path, enc: LoadedEncoder,
                   device: torch.device, cfg: TrainConfig) -> EpochCompare:
    """Extract the clips into a store, then time store epochs and one recompute epoch over them."""
    extract_s = run_extract(args, table, store_path)
    note(f"extract: {extract_s:.1f} s")
    with FeatureStore.open(store_path) as store:
        timing, load = store_epochs(args, store, device, FrozenTextEncoder(enc), cfg)
        note(f"store epochs: {', '.join(f'{w:.2f}' for w in timing.wall)} s")
        rec = recompute_epoch(args, table, store, enc, device, cfg)
        note(f"recompute epoch: {rec['seconds']:.1f} s")
    return EpochCompare(len(table), timing, rec["seconds"], rec["cpu"], rec["wait"], rec["encode"], rec["head"],
                        extract_s, load)


# -- 2. an epoch at DFEW scale --------------------------------------------------------------------


@dataclass
class ScaleEpoch:
    clips: int
    steps: int  # steps of a whole epoch
    timed_steps: int  # steps actually run
    seconds: float  # of the timed steps

    @property
    def epoch(self) -> float:
        return self.seconds * self.steps / self.timed_steps

    @property
    def extrapolated(self) -> bool:
        return self.timed_steps < self.steps


def random_data(clips: int, views: int, frames: int, dim: int, seed: int, device: torch.device) -> DeviceData:
    """Random float16 features [N, V, T, D] and labels in memory: a store's DeviceData at any scale."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.empty(clips, views, frames, dim, dtype=torch.float16)
    for start in range(0, clips, 1024):  # float32 draws in slices: no [N, V, T, D] float32 copy
        n = min(1024, clips - start)
        feats[start:start + n] = torch.randn(n, views, frames, dim, generator=gen).half()
    labels = torch.randint(0, 7, (clips,), generator=gen)
    none = np.empty(0, dtype=np.int64)
    return DeviceData(feats.to(device), labels.to(device), np.arange(clips), none, none)


def scale_epoch(args: argparse.Namespace, head: TGDFERHead, opt: torch.optim.Optimizer, data: DeviceData,
                cfg: TrainConfig, device: torch.device) -> ScaleEpoch:
    """train_epoch over all of `data`, or over its first --steps batches (then extrapolated)."""
    n = len(data.train)
    steps = math.ceil(n / cfg.batch_size)
    todo = args.steps if args.steps is not None else (0 if device.type == "cuda" else 20)
    todo = steps if todo == 0 else min(todo, steps)
    warm = DeviceData(data.feats, data.labels, data.train[:cfg.batch_size], data.val, data.test)
    part = DeviceData(data.feats, data.labels, data.train[:todo * cfg.batch_size], data.val, data.test)
    train_epoch(head, warm, opt, cfg, 0)  # one warm-up step
    sync(device)
    t0 = time.perf_counter()
    train_epoch(head, part, opt, cfg, 1)
    sync(device)
    return ScaleEpoch(n, steps, math.ceil(len(part.train) / cfg.batch_size), time.perf_counter() - t0)


# -- 3. the head step: time, FLOP bound, where the time goes ---------------------------------------


@dataclass
class StepRow:
    threads: int
    step: Timing  # head steps
    flops: int  # one step, forward + backward
    matmul: float  # FLOP/s of a large fp32 matmul on the same threads

    @property
    def achieved(self) -> float:
        return self.flops / self.step.median


def step_rows(args: argparse.Namespace, head: TGDFERHead, opt: torch.optim.Optimizer, x: torch.Tensor,
              y: torch.Tensor, device: torch.device) -> list[StepRow]:
    """Head step time (thread counts interleaved step by step) and matmul FLOP/s at each thread count."""
    flops = count_flops(lambda: head_step(head, opt, x, y))
    main = torch.get_num_threads()
    counts = [main] if device.type == "cuda" else (args.step_threads or sorted({1, main}))

    def step_on(threads: int) -> Callable[[], float]:
        def run() -> float:
            torch.set_num_threads(threads)
            return head_step(head, opt, x, y)
        return run

    steps = interleaved({str(n): step_on(n) for n in counts}, args.step_repeats, device)
    rows = []
    for n in counts:
        torch.set_num_threads(n)
        rows.append(StepRow(n, steps[str(n)], flops, matmul_flops(args.matmul, device)))
    torch.set_num_threads(main)
    return rows


def step_parts(head: TGDFERHead, opt: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The head step cut into parts, each run alone (forward + backward): name -> function.

    Grads are dropped before each part, as the step's zero_grad does. The SGD step reuses the
    grads of the last full step, so it must be timed right after one.
    """
    B, T, D = x.shape
    x4, t, parts = x[None], head.temporal, {"SGD step (momentum, weight decay)": opt.step}

    def run(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def part() -> None:
            head.zero_grad(set_to_none=True)
            fn().sum().backward()
        return part

    if t.fine is not None:
        K, w = t.fine.index.shape
        parts[f"fine temporal, Eq. 2-3 ({K} windows x {w} frames)"] = run(lambda: t.fine(x4))
    if t.coarse is not None:
        parts[f"coarse temporal, Eq. 4 ({T} frames)"] = run(lambda: t.coarse(x4))
    if t.fc is not None:
        cat = torch.randn(1, B, T, t.fc.weight.shape[1], device=x.device)  # [1, B, T, k*D]
        parts["FC, Eq. 5"] = run(lambda: t.fc(cat))
    if head.prompt is not None:
        C, L = head.prompt.prefix.shape[0], head.prompt.length
        parts[f"text tower + learnable context, Eq. 6 ({C} prompts x {L} tokens)"] = run(head.prompt)
    xi = torch.randn(1, B, T, D, device=x.device, requires_grad=True)  # X^I
    fine = head.fine_prompt().detach()  # X^FP
    parts["visual prompt, MLP, logits, loss, Eq. 7-11"] = run(
        lambda: F.cross_entropy(head.forward_head(xi, y[None], fine=fine).logits[0], y))
    return parts


def breakdown(args: argparse.Namespace, head: TGDFERHead, opt: torch.optim.Optimizer, x: torch.Tensor,
              y: torch.Tensor, device: torch.device) -> tuple[Timing, list[tuple[str, Timing, int]]]:
    """(whole step timing, [(part, timing, FLOPs)]) on the current threads, whole step and parts interleaved."""
    parts = step_parts(head, opt, x, y)
    flops = {name: count_flops(fn) for name, fn in parts.items()}
    # each round: the whole step first, so that the SGD part (next) finds a step's grads
    times = interleaved({"step": lambda: head_step(head, opt, x, y), **parts}, args.step_repeats, device)
    head_step(head, opt, x, y)  # leave the head as a step leaves it
    return times["step"], [(name, times[name], flops[name]) for name in parts]


def profile_table(head: TGDFERHead, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  device: torch.device) -> str:
    """torch.profiler's top operators over 3 head steps."""
    head_step(head, opt, x, y)
    with torch.profiler.profile() as prof:
        for _ in range(3):
            head_step(head, opt, x, y)
        sync(device)
    key = "self_cpu_time_total" if device.type == "cpu" else "self_device_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=48)


# -- report ---------------------------------------------------------------------------------------


def print_epochs(console: Console, c: EpochCompare, batch: int) -> None:
    table = Table(title=f"train-head epoch: store vs recompute ({c.clips} clips, batch {batch}, same order)")
    for col in ("path", "epoch s", "s/clip", "clips/s", "data wait s", "encode s", "head s", "cpu s"):
        table.add_column(col, justify="left" if col == "path" else "right")
    s = c.store
    table.add_row("store: train_epoch on DeviceData", f"{s.median:.2f}", f"{s.median / c.clips:.4f}",
                  f"{c.clips / s.median:.1f}", "-", "-", f"{s.median:.2f}", f"{s.cpu_median:.2f}")
    table.add_row("recompute: decode, augment, encode_images", f"{c.recompute:.1f}", f"{c.recompute / c.clips:.3f}",
                  f"{c.clips / c.recompute:.2f}", f"{c.wait:.1f}", f"{c.encode:.1f}", f"{c.head:.2f}",
                  f"{c.recompute_cpu:.1f}")
    console.print(table)
    cached = c.extract + c.load + PAPER_EPOCHS * s.median
    console.print(f"store epochs: median of {len(s.wall)} ({', '.join(f'{w:.2f}' for w in s.wall)} s). "
                  f"One-time cost of the store path: extract {c.extract:.1f} s ({c.clips} clips x 2 views), "
                  f"store -> memory {c.load:.2f} s. {PAPER_EPOCHS} epochs: recompute "
                  f"{PAPER_EPOCHS * c.recompute:.0f} s, extract + store {cached:.0f} s "
                  f"({PAPER_EPOCHS * c.recompute / cached:.1f}x).", highlight=False)
    console.print(f"speedup: {c.speedup:.1f}  (recompute epoch / store epoch, wall; target >= {TARGET:.0f}; "
                  f"CPU seconds: {c.recompute_cpu / s.cpu_median:.1f})", highlight=False)


def print_scale(console: Console, e: ScaleEpoch, batch: int, dim: int, frames: int) -> None:
    how = (f"extrapolated from {e.timed_steps} of {e.steps} steps (--steps 0 times the whole epoch)"
           if e.extrapolated else "whole epoch timed")
    console.print(f"DFEW-scale epoch: {e.clips} clips of random float16 features [V=2, T={frames}, D={dim}], "
                  f"batch {batch}: {e.epoch:.1f} s/epoch, {e.seconds / e.timed_steps:.3f} s/step, "
                  f"{e.clips / e.epoch:.0f} clips/s; {how}", highlight=False)


def print_steps(console: Console, rows: list[StepRow], batch: int) -> None:
    table = Table(title=f"head step at batch {batch} (forward + backward + SGD): FLOP bound")
    for col in ("threads", "median s", "min s", "cpu s", "GFLOP/step", "head GFLOP/s", "matmul GFLOP/s",
                "share of matmul"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r.threads), f"{r.step.median:.3f}", f"{min(r.step.wall):.3f}", f"{r.step.cpu_median:.3f}",
                      f"{r.flops / 1e9:.1f}", f"{r.achieved / 1e9:.1f}", f"{r.matmul / 1e9:.1f}",
                      f"{r.achieved / r.matmul:.2f}")
    console.print(table)


def print_parts(console: Console, step: Timing, parts: list[tuple[str, Timing, int]], threads: int) -> None:
    table = Table(title=f"where the head step's time goes ({threads} threads, each part alone, forward + backward)")
    for col in ("part", "ms", "share", "GFLOP", "GFLOP/s"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for name, t, flops in parts:
        table.add_row(name, f"{t.median * 1e3:.0f}", f"{t.median / step.median:.0%}", f"{flops / 1e9:.2f}",
                      f"{flops / t.median / 1e9:.1f}" if flops else "-")
    rest = step.median - sum(t.median for _, t, _ in parts)
    table.add_row("rest (casts, concat, influence, autograd between parts)", f"{rest * 1e3:.0f}",
                  f"{rest / step.median:.0%}", "", "")
    table.add_row("whole step", f"{step.median * 1e3:.0f}", "100%", "", "")
    console.print(table)


def describe(args: argparse.Namespace, enc: LoadedEncoder, device: torch.device) -> str:
    h = HeadConfig()
    return (f"{args.model} (random weights) encoder {enc.precision}, head fp32, on {device}; torch threads "
            f"{torch.get_num_threads()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; "
            f"{args.clips} SynthDFER clips ({args.size} px JPEG folders), T={args.frames}, batch {args.batch_size}, "
            f"workers {args.workers}; head: w={h.window} s={h.stride} n_f={h.fine_depth} n_c={h.coarse_depth}, "
            f"learnable={h.learnable} ({h.fine_text}), visual prompt {h.visual_prompt}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # random-weight warnings would drown the tables
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=max(Console().width, 120))  # one line per row, also when piped to a file
    device = resolve_device(args.device)
    cfg = TrainConfig(batch_size=args.batch_size, seed=args.seed, device=str(device))
    with tempfile.TemporaryDirectory(prefix="tgdfer-bench-") as tmp:
        table = make_data(Path(tmp), args.clips, args.size)  # first: its spawn pool is gone before any timing
        enc = load_encoder(encoder_config(args), device=device)
        console.print(describe(args, enc, device), highlight=False)
        store_path = Path(tmp) / "store.zarr"
        compare = compare_epochs(args, table, store_path, enc, device, cfg)
        with FeatureStore.open(store_path) as store:
            head, opt = fresh_head(args, store, device, FrozenTextEncoder(enc), cfg)
            data = random_data(args.dfew_clips, 2, args.frames, store.dim, args.seed, device)
    scale = scale_epoch(args, head, opt, data, cfg, device)
    note(f"DFEW-scale: {scale.timed_steps} steps in {scale.seconds:.1f} s")
    x, y = data.feats[:args.batch_size, 1].float(), data.labels[:args.batch_size]  # [B, T, D], [B]
    steps = step_rows(args, head, opt, x, y, device)
    note("head step table done")
    step, parts = breakdown(args, head, opt, x, y, device)
    profile = profile_table(head, opt, x, y, device) if args.profile else None
    print_epochs(console, compare, args.batch_size)
    print_scale(console, scale, args.batch_size, x.shape[-1], args.frames)
    print_steps(console, steps, args.batch_size)
    print_parts(console, step, parts, torch.get_num_threads())
    if profile:
        console.print(profile, highlight=False, markup=False)
    console.print(f"load average at the end: {os.getloadavg()[0]:.1f}", highlight=False)
    return 0


if __name__ == "__main__":  # SynthDFER generation uses a spawn pool: keep the guard
    raise SystemExit(main())
