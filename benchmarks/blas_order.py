"""MKL's strict reproducibility mode (MKL_CBWR=AUTO,STRICT, which `import tgdfer` sets): what it fixes, what it costs.

MKL reads MKL_CBWR once, at its first call, so each mode runs in a child process of its own; the
children alternate (--rounds rounds of the three modes) so a shared machine's load hits both alike.
Each child, at --threads threads (ViT-B-32, random weights, float32, CPU):

  differ   float32 products of a shape sweep (rows 1..100, inner 64..768, outer 7..512) whose bytes
           differ between 1 and 2 threads (what tests/test_reproducibility.py guards);
  step     the paper's head step (HeadConfig defaults, learnable prompts through the text tower,
           batch --batch-size, T 16): median ms of --steps steps after 2 warm-up steps;
  encode   the image tower's forward over --images 224x224 images: frames/s (`encode_images`).

Modes: MKL_CBWR unset (MKL's default), AUTO, AUTO,STRICT. Printed: each mode's best round and the
ratio strict / unset (>1 = strict is faster).

    python benchmarks/blas_order.py                    # 3 rounds, 2 threads
    python benchmarks/blas_order.py --rounds 1 --quick # tiny model: a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

MODES = {"default": "", "auto": "AUTO", "strict": "AUTO,STRICT"}  # "": MKL_CBWR unset, MKL's own default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds of (default, strict) children")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the step and the encoder")
    p.add_argument("--batch-size", type=int, default=48, help="clips per head step (paper: 48)")
    p.add_argument("--steps", type=int, default=10, help="timed head steps per child")
    p.add_argument("--images", type=int, default=256, help="images through the image tower per child")
    p.add_argument("--quick", action="store_true", help="tiny model, 2 steps, 32 images")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--unset", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def differing_shapes() -> int:
    import torch

    gen = torch.Generator().manual_seed(0)
    bad = 0
    for m, k, n in itertools.product([1, 2, 3, 7, 16, 21, 48, 100], [64, 256, 512, 768], [7, 64, 128, 512]):
        a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out.append(a @ b)
        bad += not torch.equal(*out)
    return bad


def child(args: argparse.Namespace) -> dict:
    import logging

    import torch
    import torch.nn.functional as F

    import tgdfer  # noqa: F401  (sets MKL_CBWR where unset; MKL reads it at its first product, below)
    from tgdfer.encoders import EncoderConfig, encode_images, encode_texts, load_encoder
    from tgdfer.model import HeadConfig, TGDFERHead
    from tgdfer.prompts import build_prompt_sets
    from tgdfer.text import FrozenTextEncoder

    if not os.environ["MKL_CBWR"] or args.unset:
        del os.environ["MKL_CBWR"]  # MKL's own default: no reproducibility mode
    logging.basicConfig(level=logging.ERROR)
    out = {"mkl_cbwr": os.environ.get("MKL_CBWR"), "differ": differing_shapes()}
    torch.set_num_threads(args.threads)
    enc = load_encoder(EncoderConfig(model="tgdfer-tiny-vit" if args.quick else "ViT-B-32", pretrained="none"))
    text = {name: encode_texts(enc, prompts) for name, prompts in build_prompt_sets(None).items()}
    dim = next(iter(text.values()))[1].shape[-1]
    head = TGDFERHead(HeadConfig(learnable=True), dim=dim, frames=16, classes=7, text=text,
                      text_encoder=FrozenTextEncoder(enc), replicas=1, seeds=[0])
    opt = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.batch_size, 16, dim, generator=gen), torch.randint(0, 7, (args.batch_size,), generator=gen)

    def step() -> None:
        loss = F.cross_entropy(head(x, target=y[None]).logits[0], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    steps = 2 if args.quick else args.steps
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    out["step_ms"] = 1e3 * statistics.median(times)
    size = enc.image_size if hasattr(enc, "image_size") else 224
    images = torch.randn(32 if args.quick else args.images, 3, size, size, generator=gen)
    encode_images(enc, images[:8])  # warm-up
    t0 = time.perf_counter()
    encode_images(enc, images)
    out["encode_fps"] = len(images) / (time.perf_counter() - t0)
    return out


def run_child(args: argparse.Namespace, mode: str) -> dict:
    env = dict(os.environ, MKL_CBWR=MODES[mode] or "AUTO", OMP_WAIT_POLICY="PASSIVE")
    flags = ["--unset"] * (not MODES[mode]) + ["--threads", str(args.threads), "--batch-size", str(args.batch_size), "--steps", str(args.steps),
             "--images", str(args.images)] + (["--quick"] if args.quick else [])
    done = subprocess.run([sys.executable, __file__, "--child", *flags], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {mode} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            results[mode].append(run_child(args, mode))
            print(f"round {r + 1} {mode:7s} {results[mode][-1]}", file=sys.stderr, flush=True)
    best = {m: {"differ": max(x["differ"] for x in rs), "step_ms": min(x["step_ms"] for x in rs),
                "encode_fps": max(x["encode_fps"] for x in rs)} for m, rs in results.items()}
    print(f"MKL_CBWR side by side, {args.rounds} round(s), {args.threads} threads, best round of each "
          f"({'tiny model' if args.quick else 'ViT-B-32'}, float32, CPU)")
    print(f"{'':28s}{'unset':>10s}{'AUTO':>10s}{'AUTO,STRICT':>12s}{'strict/unset':>14s}")
    print(f"{'shapes differing 1 vs 2 thr':28s}" + "".join(f"{best[m]['differ']:>{w}d}" for m, w in zip(MODES, (10, 10, 12)))
          + f"{'(of 128)':>14s}")
    d, s = best["default"]["step_ms"], best["strict"]["step_ms"]
    print(f"{'head step ms (batch ' + str(args.batch_size) + ')':28s}"
          + "".join(f"{best[m]['step_ms']:>{w}.1f}" for m, w in zip(MODES, (10, 10, 12))) + f"{d / s:>14.3f}")
    d, s = best["default"]["encode_fps"], best["strict"]["encode_fps"]
    print(f"{'image tower frames/s':28s}"
          + "".join(f"{best[m]['encode_fps']:>{w}.1f}" for m, w in zip(MODES, (10, 10, 12))) + f"{s / d:>14.3f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
