"""Issue 19's GPU measures in one run and one table (benchmarks/gpu.sh runs it on a GPU).

Rows, all measured in this process on one device (random weights, timing only):

  encoder     `encode_images` of --encode-batch random images (--precision autocast): frames/s, its
              FLOPs per frame (torch's FlopCounterMode) -> TFLOP/s, as a share of the TFLOP/s of a
              [--matmul]^2 bf16 matmul on the same device (the device's practical peak);
  extract     a whole `extract` call over SynthDFER clips per source (JPEG frame folders: decoded on
              the device when it is CUDA, `extract.jpeg_decode`; mp4 videos), frames/s and its
              streaming ratio to the bare encoder at the same batches (benchmarks/extract.py's measure);
  head step   one training step of the paper's head (learnable prompts through the text tower, batch
              48, T=16, --model's widths) with `train.compile` off / on / graphs: median ms;
  fold        a DFEW-shaped fold (--train-clips + --test-clips clips of random float16 features
              [V=2, T=16, D]), --epochs epochs of `train_replica_epoch` + `evaluate_replicas` each
              (no checkpoint files), compile = --compile; compile time included;
  5x3         5 folds x 3 seeds as 15 replicas of one batched head on the same features, the same way.

A long run stops at --budget-s and the row says how many epochs ran: nothing is extrapolated.

    python benchmarks/gpu_table.py                         # CUDA, ViT-B-32 bf16, DFEW shapes
    python benchmarks/gpu_table.py --cpu --small           # a CPU smoke run of every row (tiny model)
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_head import count_flops, note, random_data, sync  # noqa: E402  (benchmarks/train_head.py)

from tgdfer.devicedata import DeviceData  # noqa: E402
from tgdfer.encoders import EncoderConfig, encode_images, encode_texts, load_encoder  # noqa: E402
from tgdfer.head import HeadConfig, TGDFERHead  # noqa: E402
from tgdfer.labels import NUM_CLASSES  # noqa: E402
from tgdfer.prompts import build_prompt_sets  # noqa: E402
from tgdfer.text import FrozenTextEncoder  # noqa: E402
from tgdfer.training import (TrainConfig, evaluate_replicas, head_step, make_optimizer,  # noqa: E402
                             train_replica_epoch)


def _bench(name: str):
    """benchmarks/<name>.py as a module (its name would clash with tgdfer's functions)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda, cuda:1 (or cpu)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (a smoke run of the script)")
    p.add_argument("--small", action="store_true", help="tiny model and sizes: seconds, for checking the script")
    p.add_argument("--model", default="ViT-B-32", help="open_clip model (random weights)")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"], help="encoder autocast")
    p.add_argument("--encode-batch", type=int, default=1024, help="images per bare encoder call")
    p.add_argument("--matmul", type=int, default=8192, help="side of the bf16 matmul that measures the device peak")
    p.add_argument("--clips", type=int, default=40, help="SynthDFER clips per extraction source")
    p.add_argument("--workers", type=int, default=4, help="extraction DataLoader workers")
    p.add_argument("--batch-clips", type=int, default=8, help="extraction clips per encoder call")
    p.add_argument("--views", type=int, default=2, help="extraction views per clip")
    p.add_argument("--train-clips", type=int, default=9356, help="training clips of the DFEW-shaped fold")
    p.add_argument("--test-clips", type=int, default=2341, help="test clips of the DFEW-shaped fold")
    p.add_argument("--frames", type=int, default=16, help="T")
    p.add_argument("--batch-size", type=int, default=48, help="clips per head step (paper: 48)")
    p.add_argument("--epochs", type=int, default=50, help="epochs of the fold and of the 5x3 run")
    p.add_argument("--compile", default="graphs", choices=["off", "on", "graphs"], help="train.compile of those runs")
    p.add_argument("--budget-s", type=float, nargs=2, default=[70.0, 40.0], metavar=("FOLD", "5X3"),
                   help="stop the fold / the 5x3 run after its first epoch plus this many seconds")
    p.add_argument("--step-repeats", type=int, default=20, help="timed head steps per compile mode (median)")
    args = p.parse_args(argv)
    if args.cpu:
        args.device = "cpu"
    if args.small:
        args.model, args.encode_batch, args.matmul, args.clips, args.workers = "tgdfer-tiny-vit", 16, 256, 4, 1
        args.batch_clips, args.train_clips, args.test_clips, args.frames = 2, 96, 24, 8
        args.batch_size, args.epochs, args.budget_s, args.step_repeats = 16, 2, [60.0, 60.0], 2
        args.compile = "off"  # a compile takes minutes on a small CPU; the modes share one code path
    cuda = torch.device(args.device).type == "cuda"
    # on CUDA off and graphs (on alone is measured by the CPU test; its compile would cost a minute more)
    args.step_modes = ("off", "graphs") if cuda else ("off",) if args.small else ("off", "on")
    return args


def median_seconds(fn, repeats: int, device: torch.device, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def encoder_rows(args: argparse.Namespace, device: torch.device) -> list[tuple[str, str, str]]:
    enc = load_encoder(EncoderConfig(model=args.model, pretrained="none", precision=args.precision), device=device,
                       towers=("image",))
    pixels = torch.randn(args.encode_batch, 3, enc.image_size, enc.image_size, device=device)
    flops = count_flops(lambda: encode_images(enc, pixels[:8])) / 8  # per frame
    s = median_seconds(lambda: encode_images(enc, pixels), 5, device)
    fps = args.encode_batch / s
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # CPU: bf16 matmuls are emulated
    a = torch.randn(args.matmul, args.matmul, device=device, dtype=dtype)
    peak = 2 * args.matmul**3 / median_seconds(lambda: a @ a, 5, device)
    achieved = flops * fps
    return [("image encoder, bare", f"{fps:,.0f} frames/s",
             f"batch {args.encode_batch}, {args.precision}; {flops / 1e9:.2f} GFLOP a frame"),
            ("image encoder TFLOP/s", f"{achieved / 1e12:.2f} ({achieved / peak:.1%} of the matmul)",
             f"[{args.matmul}]^2 {str(dtype).split('.')[-1]} matmul: {peak / 1e12:.1f} TFLOP/s")]


def extract_rows(args: argparse.Namespace, device: torch.device, tmp: Path) -> list[tuple[str, str, str]]:
    bench = _bench("extract")
    ns = argparse.Namespace(model=args.model, precision=args.precision, views=args.views, frames=args.frames,
                            device=str(device), repeats=1, warmup=1)
    encoder = EncoderConfig(model=args.model, pretrained="none", precision=args.precision)
    data = bench.make_data(tmp, args.clips, 112)
    bench.warm_up(load_encoder(encoder, device=device), args.batch_clips * args.views * args.frames, 1)
    rows = []
    for source in ("frames", "video"):
        r = bench.measure(ns, encoder, device, bench.clip_table(data, source), source, args.workers,
                          args.batch_clips, tmp)
        how = "JPEG folders, decoded on the device" if source == "frames" and device.type == "cuda" else \
            ("JPEG folders, decoded in the workers" if source == "frames" else "mp4, PyAV in the workers")
        rows.append((f"extract, {source}", f"{r.fps:,.0f} frames/s, {r.stream_ratio:.2f} of the bare encoder",
                     f"{how}; {r.images} images, {args.workers} workers, batch {args.batch_clips} clips; "
                     f"bare {r.bare_fps:,.0f} frames/s at these batches, encoder busy {r.busy:.0%}"))
    return rows


def paper_head(args: argparse.Namespace, device: torch.device, seeds: list[int]) -> TGDFERHead:
    enc = load_encoder(EncoderConfig(model=args.model, pretrained="none"), device=device, towers=("text",))
    text = {name: encode_texts(enc, prompts) for name, prompts in build_prompt_sets().items()}  # tokens, emb
    return TGDFERHead(HeadConfig(), dim=enc.embed_dim, frames=args.frames, classes=NUM_CLASSES, text=text,
                      text_encoder=FrozenTextEncoder(enc), replicas=len(seeds), seeds=seeds).to(device)


def step_rows(args: argparse.Namespace, device: torch.device) -> list[tuple[str, str, str]]:
    """Median ms of one training step (forward, loss, backward, SGD, the loop's host sync) per compile mode."""
    head = paper_head(args, device, [0])
    opt = make_optimizer(head, TrainConfig(batch_size=args.batch_size))[0]
    data = random_data(args.batch_size, 1, args.frames, head.dim, 0, device)
    x, y = data.feats[None, :, 0].float(), data.labels[None]  # [1, B, T, D], [1, B]
    mask = torch.ones_like(y, dtype=torch.bool)
    out = {}
    for mode in args.step_modes:
        fn = head_step(mode)

        def step() -> None:
            if mode == "graphs":
                torch.compiler.cudagraph_mark_step_begin()
            losses, hits = fn(head, x, y, mask)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            torch.stack([losses.detach(), hits.to(losses.dtype)]).cpu()

        t0 = time.perf_counter()
        step()  # the first call compiles
        first = time.perf_counter() - t0
        out[mode] = (median_seconds(step, args.step_repeats, device), first)
    eager = out["off"][0]
    return [(f"head step, compile={mode}", f"{s * 1e3:.1f} ms ({eager / s:.2f}x eager)",
             f"batch {args.batch_size}, learnable prompts, {args.model} widths; first call {first:.1f} s")
            for mode, (s, first) in out.items()]


def fold_datas(args: argparse.Namespace, device: torch.device, folds: int, dim: int) -> list[DeviceData]:
    """`folds` row splits of one random feature tensor: fold 1 alone is the DFEW-shaped fold."""
    n = args.train_clips + args.test_clips
    data = random_data(n, 2, args.frames, dim, 0, device)
    rows = np.random.default_rng(0).permutation(n)
    tests = [rows[:args.test_clips]] if folds == 1 else np.array_split(rows, folds)
    empty = np.empty(0, dtype=np.int64)
    return [DeviceData(data.feats, data.labels, np.setdiff1d(rows, t), empty, np.sort(t)) for t in tests]


def run_epochs(args: argparse.Namespace, device: torch.device, folds: int, seeds: list[int],
               budget: float) -> tuple[int, float, float]:
    """(epochs run, seconds of the first epoch (it compiles), seconds of the others) of training
    len(folds x seeds) replicas together, scoring each epoch; `budget` seconds bound the others."""
    replica_seeds = [s for _ in range(folds) for s in seeds]
    head = paper_head(args, device, replica_seeds)
    datas = [d for d in fold_datas(args, device, folds, head.dim) for _ in seeds]
    opt, sched = make_optimizer(head, TrainConfig(batch_size=args.batch_size))
    sync(device)
    t0, epoch, first = time.perf_counter(), 0, 0.0
    while epoch < args.epochs and (epoch < 2 or time.perf_counter() - t0 - first < budget):
        epoch += 1
        train_replica_epoch(head, datas, opt, args.batch_size, replica_seeds, epoch, compile=args.compile)
        sched.step()
        evaluate_replicas(head, datas, "test")
        if epoch == 1:
            sync(device)
            first = time.perf_counter() - t0
    sync(device)
    return epoch, first, time.perf_counter() - t0 - first


def training_rows(args: argparse.Namespace, device: torch.device) -> list[tuple[str, str, str]]:
    rows = []
    for (name, folds, seeds), budget in zip((("a DFEW-shaped fold", 1, [0]), ("5 folds x 3 seeds together", 5, [0, 1, 2])),
                                            args.budget_s):
        epochs, first, rest = run_epochs(args, device, folds, seeds, budget)
        cut = "" if epochs == args.epochs else f"; stopped at its budget of {budget:.0f} s after the first epoch"
        rows.append((name, f"{epochs} epochs in {first + rest:.1f} s ({rest / max(epochs - 1, 1):.2f} s an epoch after the first)",
                     f"{args.train_clips + args.test_clips} clips, compile={args.compile}, scored each epoch; "
                     f"the first epoch (compiles) {first:.1f} s{cut}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True  # as a user's fp32 head on Ampere and later may run
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="tgdfer_gpu_table_") as tmp:
        for part, fn in (("encoder", lambda: encoder_rows(args, device)),
                         ("extract", lambda: extract_rows(args, device, Path(tmp))),
                         ("training", lambda: training_rows(args, device)),
                         ("head step", lambda: step_rows(args, device))):
            note(f"{part} ...")
            for row in fn():  # each row as soon as it is measured: a run cut short keeps them
                note(" | ".join(row))
                rows.append(row)
    width = max(len(r[0]) for r in rows)
    value = max(len(r[1]) for r in rows)
    print(f"issue 19 on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'measure':<{width}}  {'value':<{value}}  how")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:<{value}}  {r[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
