"""Load benchmark: how much a competing CPU load slows a head step and an encoder forward, per thread count.

Shared nodes run other jobs. torch starts one thread per core; when other processes hold the
cores, each of those threads waits at every operator's barrier for the slowest one, so a step of
thousands of small operators can slow down far more than the CPU share lost. This benchmark
times, in one process, with and without N busy processes (pure-Python spin loops, one core each,
started for a bounded time and always killed at the end):

  head step   `train_head.head_step` (benchmarks/train_head.py): the paper's head (HeadConfig
              defaults, learnable class prompts through the text tower) at ViT-B-32 width 512,
              T=16, batch 48, random features, as train-head does on DFEW;
  encoder     `encode_images` of --images random frames through the image tower (random
              weights), as extract does for a few frames,

at each thread count: every logical core (torch's default), the count `tgdfer.threads` chooses
for this process (affinity mask, cgroup quota, OMP_NUM_THREADS), and 1. The phases alternate
(quiet, loaded, quiet, loaded, ...) and the thread counts are interleaved within each phase, so a
background load that drifts hits all alike. `slowdown` = loaded median / quiet median;
the last lines put the thread counts side by side (slowdown at all cores / slowdown at the chosen
count, and loaded time at all cores / loaded time at the chosen count).

    python benchmarks/load.py                 # ViT-B-32 widths, one busy process per core
    python benchmarks/load.py --busy 4        # a heavier competing load
    python benchmarks/load.py --quick         # tiny model, batch 8: a smoke run
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_head import Timing, head_step, interleaved, note, random_data  # noqa: E402  (benchmarks/train_head.py)

from tgdfer.encoders import EncoderConfig, encode_images, encode_texts, load_encoder  # noqa: E402
from tgdfer.head import HeadConfig, TGDFERHead  # noqa: E402
from tgdfer.labels import NUM_CLASSES  # noqa: E402
from tgdfer.prompts import build_prompt_sets  # noqa: E402
from tgdfer.text import FrozenTextEncoder  # noqa: E402
from tgdfer.threads import auto_threads  # noqa: E402
from tgdfer.training import TrainConfig, make_optimizer  # noqa: E402

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32", help="open_clip model (random weights): widths of the head and encoder")
    p.add_argument("--batch-size", type=int, default=48, help="clips per head step (paper: 48)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (T)")
    p.add_argument("--images", type=int, default=16, help="frames per encoder forward")
    p.add_argument("--busy", type=int, default=os.cpu_count() or 1, help="competing busy processes (default: one per core)")
    p.add_argument("--busy-seconds", type=float, default=120.0, help="each busy process ends by itself after this "
                   "long (it is killed when its phase ends anyway)")
    p.add_argument("--rounds", type=int, default=3, help="quiet/loaded phase pairs")
    p.add_argument("--repeats", type=int, default=2, help="timed calls per thread count and workload in each phase")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="thread counts to compare (default: all logical cores, the chosen count, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny model, batch 8, 1 round: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.batch_size, args.frames, args.images, args.rounds, args.repeats = "tgdfer-tiny-vit", 8, 8, 4, 1, 1
    return args


@contextmanager
def busy_load(n: int, seconds: float) -> Iterator[list[subprocess.Popen]]:
    """n spinning Python processes (one core each) for at most `seconds`; killed on exit, whatever happens."""
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)]))
        time.sleep(0.5)  # let the scheduler see them
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def thread_counts(args: argparse.Namespace) -> tuple[list[int], int, int]:
    """(counts to time, all logical cores, the chosen count)."""
    logical = os.cpu_count() or 1
    chosen = auto_threads().threads
    counts = args.threads or [logical, chosen, 1]
    return list(dict.fromkeys(counts)), logical, chosen


def workloads(args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """The head step and the encoder forward, each as a no-argument call."""
    enc = load_encoder(EncoderConfig(model=args.model, pretrained="none"))
    text = {name: encode_texts(enc, prompts) for name, prompts in build_prompt_sets().items()}  # tokens, emb
    head = TGDFERHead(HeadConfig(), dim=enc.embed_dim, frames=args.frames, classes=NUM_CLASSES, text=text,
                      text_encoder=FrozenTextEncoder(enc), seeds=[args.seed])
    opt = make_optimizer(head, TrainConfig(batch_size=args.batch_size))[0]
    data = random_data(args.batch_size, 1, args.frames, enc.embed_dim, args.seed, torch.device("cpu"))
    x, y = data.feats[:, 0].float(), data.labels  # [B, T, D], [B]
    pixels = torch.randn(args.images, 3, enc.image_size, enc.image_size,
                         generator=torch.Generator().manual_seed(args.seed))  # [N, 3, S, S]
    return {"head step": lambda: head_step(head, opt, x, y), "encoder forward": lambda: encode_images(enc, pixels)}


def on_threads(n: int, fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        torch.set_num_threads(n)
        return fn()
    return run


def measure(args: argparse.Namespace, work: dict[str, Callable[[], object]], counts: list[int]) -> dict:
    """{(workload, threads, "quiet" | "loaded"): Timing}, phases alternating, thread counts interleaved."""
    calls = {(name, n): on_threads(n, fn) for name, fn in work.items() for n in counts}
    out = {(name, n, phase): Timing() for name, n in calls for phase in ("quiet", "loaded")}
    for r in range(args.rounds):
        for phase in ("quiet", "loaded"):
            load = busy_load(args.busy, args.busy_seconds) if phase == "loaded" else _nothing()
            with load:
                times = interleaved({f"{name}|{n}": fn for (name, n), fn in calls.items()}, args.repeats,
                                    torch.device("cpu"), warmup=1 if r == 0 else 0)
            for key, t in times.items():
                name, n = key.split("|")
                out[name, int(n), phase].wall.extend(t.wall)
                out[name, int(n), phase].cpu.extend(t.cpu)
            note(f"round {r + 1}/{args.rounds} {phase} done, load average {os.getloadavg()[0]:.1f}")
    return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def report(console: Console, args: argparse.Namespace, res: dict, counts: list[int], logical: int, chosen: int) -> None:
    table = Table(title=f"slowdown under {args.busy} busy processes ({args.model} widths, head batch {args.batch_size}, "
                        f"T={args.frames}; encoder {args.images} frames)")
    for col in ("workload", "threads", "quiet s", "loaded s", "slowdown", "loaded cpu s"):
        table.add_column(col, justify="left" if col == "workload" else "right")
    names = list(dict.fromkeys(name for name, _, _ in res))
    for name in names:
        for n in counts:
            q, l = res[name, n, "quiet"], res[name, n, "loaded"]
            tag = " (all cores)" if n == logical else (" (chosen)" if n == chosen else "")
            table.add_row(name, f"{n}{tag}", f"{q.median:.3f}", f"{l.median:.3f}", f"{l.median / q.median:.2f}x",
                          f"{l.cpu_median:.3f}")
    console.print(table)
    for name in names:
        for n in dict.fromkeys(c for c in counts if c != logical):
            a_q, a_l = res[name, logical, "quiet"], res[name, logical, "loaded"]
            c_q, c_l = res[name, n, "quiet"], res[name, n, "loaded"]
            console.print(f"{name}: {logical} threads (all cores) vs {n}{' (chosen)' if n == chosen else ''}: "
                          f"slowdown {a_l.median / a_q.median:.2f}x vs {c_l.median / c_q.median:.2f}x; loaded time ratio "
                          f"{a_l.median / c_l.median:.2f} (> 1: fewer threads are faster under load); quiet time ratio "
                          f"{a_q.median / c_q.median:.2f}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` runs busy_load's cleanup too
    import logging

    logging.basicConfig(level=logging.ERROR)  # random-weight warnings
    console = Console(width=max(Console().width, 120))
    counts, logical, chosen = thread_counts(args)
    console.print(f"{logical} logical cores, affinity {len(os.sched_getaffinity(0))}, chosen {chosen} "
                  f"({auto_threads().reason}); load average at the start {os.getloadavg()[0]:.1f} "
                  f"(1, 5, 15 min: {', '.join(f'{v:.1f}' for v in os.getloadavg())})", highlight=False)
    work = workloads(args)
    t0 = time.perf_counter()
    res = measure(args, work, counts)
    report(console, args, res, counts, logical, chosen)
    console.print(f"{time.perf_counter() - t0:.0f} s; load average at the end {os.getloadavg()[0]:.1f} "
                  f"(including this benchmark's own busy processes while they ran)", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
