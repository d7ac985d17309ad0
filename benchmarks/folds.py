"""Folds benchmark: 5 folds trained together in one process versus one after another, and a Table 4 sweep.

On a random-feature store (default: DFEW's size, 16,372 clips in 5 folds, 2 views x 16 frames x
512 dims, the text features of the --model's text tower), with the paper's head (HeadConfig
defaults: learnable class prompts through the text tower, w=4, s=1, n_f=n_c=1, visual prompt "add"):

  1. sequential  the way a user runs the folds without batching: `tgdfer train-head --fold k`
                 for k = 1..5, each its own process that starts Python, reads the store onto the
                 device, loads the text tower, trains --epochs epochs and scores its test fold;
  2. together    one process, `tgdfer train-head --folds 1-5`: the 5 fold replicas as one batched
                 head on one copy of the store, the same epochs, batches and data;
     printed side by side (wall and CPU seconds, peak memory of a process), with the largest
     difference between the two runs' test WAR per fold (the same training, up to float
     rounding), and `speedup: N` = sequential wall seconds / together wall seconds;
  3. the wall time of `tgdfer sweep` over the 9 points of pipelines/sweeps/table4_window.toml,
     5 folds each, --sweep-epochs epochs, on the same store (--no-sweep skips it).

Every command runs as a subprocess and is timed from outside; nothing runs twice ("one run").
Random weights and random features: timing only.

    python benchmarks/folds.py                         # DFEW size, 1 epoch (hours on a CPU)
    python benchmarks/folds.py --clips 1000            # a smaller store, same shapes
    python benchmarks/folds.py --quick                 # tiny model, 100 clips: a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from tgdfer.config import load_toml
from tgdfer.encoders import EncoderConfig, load_encoder
from tgdfer.extraction import write_text_features
from tgdfer.store import FeatureStore

DFEW_CLIPS = 16372  # DFEW's single-labelled clips, 5 folds
TARGET_CPU, TARGET_GPU = 0.9, 4.0  # together / sequential speedup the issue asks for
TABLE4 = Path(__file__).resolve().parent.parent / "pipelines" / "sweeps" / "table4_window.toml"
# A child process: the tgdfer CLI, then its peak memory on stderr (RSS, and the GPU's when used).
CHILD = """
import resource, sys
from tgdfer.cli import app
try:
    app(sys.argv[1:])
finally:
    import torch
    gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
    print(f"PEAK rss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} gpu_bytes={gpu}", file=sys.stderr)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32", help="open_clip model whose text tower and width are used")
    p.add_argument("--clips", type=int, default=DFEW_CLIPS, help="clips in the store (5 folds)")
    p.add_argument("--frames", type=int, default=16, help="frames per view (T)")
    p.add_argument("--epochs", type=int, default=1, help="epochs of each fold, both ways")
    p.add_argument("--batch-size", type=int, default=48, help="clips per step (paper: 48)")
    p.add_argument("--sweep-epochs", type=int, default=1, help="epochs of every Table 4 point")
    p.add_argument("--no-sweep", action="store_true", help="skip the Table 4 sweep")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads of every child (OMP_NUM_THREADS)")
    p.add_argument("--seed", type=int, default=0, help="random features and labels")
    p.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help="tiny model, 100 clips, 8 frames: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.clips, args.frames, args.batch_size = "tgdfer-tiny-vit", 100, 8, 16
    return args


def note(message: str) -> None:
    """Progress on stderr (a CPU run takes many minutes); the tables go to stdout at the end."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the store and the pipeline -----------------------------------------------------------------------


def make_store(path: Path, args: argparse.Namespace) -> int:
    """Random float16 features [N, 2, T, D], labels 0..6, folds 1..5, the model's text features; returns D."""
    enc = load_encoder(EncoderConfig(model=args.model, pretrained="none"), towers=("text",))
    dim = enc.embed_dim
    rng = np.random.default_rng(args.seed)
    n = args.clips
    clips = pd.DataFrame({
        "clip_id": [f"{i:05d}" for i in range(1, n + 1)], "path": [f"/random/{i}" for i in range(n)],
        "label": rng.integers(0, 7, n), "fold": pd.array(rng.permutation(np.arange(n) % 5 + 1), dtype="Int64"),
        "split": pd.array([pd.NA] * n, dtype="string"), "n_frames": pd.array([args.frames] * n, dtype="Int64")})
    with FeatureStore.create(path, clips=clips, views=2, frames=args.frames, dim=dim, block_size=256,
                             fingerprint={"encoder": enc.fingerprint}) as store:
        for start in range(0, n, 256):
            rows = np.arange(start, min(start + 256, n))
            feats = rng.standard_normal((len(rows), 2, args.frames, dim), dtype=np.float32).astype(np.float16)
            store.write_clips(rows, feats, np.zeros((len(rows), 2, args.frames), np.int32))
        write_text_features(store, enc, None)
    return dim


def write_pipeline(path: Path, store: Path, args: argparse.Namespace) -> None:
    """The paper's head and optimiser (HeadConfig / TrainConfig defaults) on the random store."""
    path.write_text(f"""[encoder]
model = "{args.model}"
pretrained = "none"
[head]
{"heads = 2" + chr(10) + "dim_head = 8" + chr(10) + "mlp_dim = 32" if args.quick else ""}
[train]
store = "{store}"
out = "{path.parent / 'runs'}"
epochs = {args.epochs}
batch_size = {args.batch_size}
device = "{args.device}"
""")


def write_table4_sweep(path: Path, pipeline: Path, out: Path, args: argparse.Namespace) -> int:
    """pipelines/sweeps/table4_window.toml's points on the benchmark's pipeline; returns the point count."""
    raw = load_toml(TABLE4)
    points = raw["points"]
    if args.quick:  # 8 frames: the 8-frame windows still fit
        points = points[:3]
    lines = [f'[sweep]\nbase = "{pipeline}"\nout = "{out}"\nfolds = "1-5"\nseeds = [0]\n'
             f'set = ["train.epochs={args.sweep_epochs}"]\n']
    for p in points:
        head = ", ".join(f"{k} = {json.dumps(v)}" for k, v in p["head"].items())
        lines.append(f"[[points]]\nhead = {{ {head} }}\n")
    path.write_text("\n".join(lines))
    return len(points)


# -- running the CLI in children ------------------------------------------------------------------------


@dataclass
class Child:
    wall: float
    cpu: float  # user + system seconds of the child
    rss_mb: float
    gpu_mb: float


def run_child(cli_args: list[str], env: dict) -> Child:
    """`tgdfer <cli_args>` in a fresh Python process, timed from outside."""
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *cli_args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = os.times()
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"tgdfer {' '.join(cli_args)} failed with exit code {proc.returncode}")
    peak = re.search(r"PEAK rss_kb=(\d+) gpu_bytes=(\d+)", proc.stderr)
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return Child(wall, cpu, int(peak.group(1)) / 1024 if peak else float("nan"),
                 int(peak.group(2)) / 2**20 if peak else float("nan"))


def war_by_fold(root: Path, pattern: str) -> dict[int, float]:
    out = {}
    for final in sorted(root.glob(pattern)):
        record = json.loads(final.read_text())
        out[int(record["fold"])] = record["test"]["war"]
    return out


# -- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # random-weight warnings would drown the tables
    console = Console(width=max(Console().width, 110))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else \
        ("cpu" if args.device == "auto" else args.device)
    work = args.keep or Path(tempfile.mkdtemp(prefix="tgdfer-folds-"))
    work.mkdir(parents=True, exist_ok=True)
    note(f"writing a random-feature store of {args.clips} clips into {work}")
    t0 = time.perf_counter()
    dim = make_store(work / "store.zarr", args)
    store_s = time.perf_counter() - t0
    pipeline = work / "pipeline.toml"
    write_pipeline(pipeline, work / "store.zarr", args)
    load0 = os.getloadavg()[0]
    note("sequential: 5 processes, tgdfer train-head --fold k")
    seq = [run_child(["train-head", "-c", str(pipeline), "--fold", str(k), "--out", str(work / "seq" / f"fold{k}")],
                     env) for k in range(1, 6)]
    note(f"sequential: {sum(c.wall for c in seq):.1f} s; together: tgdfer train-head --folds 1-5")
    together = run_child(["train-head", "-c", str(pipeline), "--folds", "1-5", "--out", str(work / "together")], env)
    load1 = os.getloadavg()[0]
    a, b = war_by_fold(work / "seq", "fold*/final.json"), war_by_fold(work / "together", "fold*/final.json")
    diff = max(abs(a[k] - b[k]) for k in a)
    sweep = None
    if not args.no_sweep:
        sweep_file = work / "table4.toml"
        n_points = write_table4_sweep(sweep_file, pipeline, work / "sweep", args)
        note(f"Table 4 sweep: {n_points} points x 5 folds, {args.sweep_epochs} epoch(s) each")
        sweep = (n_points, run_child(["sweep", str(sweep_file)], env))
    load2 = os.getloadavg()[0]

    n_train = round(args.clips * 4 / 5)
    console.print(f"store: {args.clips} clips x 2 views x {args.frames} frames x {dim} dims (float16, "
                  f"{args.clips * 2 * args.frames * dim * 2 / 2**20:.0f} MiB), written in {store_s:.0f} s; "
                  f"model {args.model} (random weights), device {device}, "
                  f"threads {args.threads or torch.get_num_threads()}; {args.epochs} epoch(s) of about "
                  f"{n_train} training clips per fold, batch {args.batch_size}", highlight=False)
    t = Table(title="5 folds: one after another vs together", show_lines=False)
    for col in ("path", "processes", "wall s", "cpu s", "peak RSS MiB (one process)", "peak GPU MiB"):
        t.add_column(col, justify="right" if col != "path" else "left")
    seq_wall, seq_cpu = sum(c.wall for c in seq), sum(c.cpu for c in seq)
    t.add_row("sequential: train-head --fold k, k = 1..5", "5", f"{seq_wall:.1f}", f"{seq_cpu:.1f}",
              f"{max(c.rss_mb for c in seq):.0f}", f"{max(c.gpu_mb for c in seq):.0f}")
    t.add_row("together: train-head --folds 1-5", "1", f"{together.wall:.1f}", f"{together.cpu:.1f}",
              f"{together.rss_mb:.0f}", f"{together.gpu_mb:.0f}")
    console.print(t)
    console.print("per fold, sequential wall s: " + ", ".join(f"{c.wall:.1f}" for c in seq), highlight=False)
    console.print(f"largest test-WAR difference between the two ways, over the folds: {diff:.4f}", highlight=False)
    speedup = seq_wall / together.wall
    target = TARGET_GPU if device.startswith("cuda") else TARGET_CPU
    console.print(f"speedup: {speedup:.2f}  (target >= {target} on {'a GPU' if target == TARGET_GPU else 'a CPU'};"
                  f" CPU seconds ratio {seq_cpu / together.cpu:.2f})", highlight=False)
    if sweep:
        n_points, child = sweep
        console.print(f"Table 4 sweep: {n_points} points x 5 folds x {args.sweep_epochs} epoch(s): "
                      f"{child.wall:.1f} s wall ({child.wall / n_points:.1f} s a point, {child.cpu:.1f} CPU s), "
                      f"one process", highlight=False)
    console.print(f"load average: {load0:.1f} before, {load1:.1f} after the folds, {load2:.1f} at the end",
                  highlight=False)
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
