"""Proxy CLIP image stage: a step with batched, overlapped augmentation versus one call per frame.

Both ways train the same model from the same start on the same frames (random 112 px images,
the proxy's batches and augmentation seeds) and must end with the same losses and prototypes:

  per frame   `ClipTransform(frame, seed)` once per frame, then the step (the proxy before session 4);
  batched     `tgdfer.proxy._image_stage`: `ClipTransform.per_frame` on the whole batch, in a
              thread while the previous batch trains (what `tgdfer proxy` runs).

    python benchmarks/proxy_step.py                 # 30 steps each, torch's threads
    python benchmarks/proxy_step.py --threads 1
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
import torch

from tgdfer.augment import ClipTransform
from tgdfer.proxy import ProxyConfig, _build_model, _image_stage


def one_call_per_frame(self: ClipTransform, frames: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
    return torch.cat([self(frames[i:i + 1], seed=int(s)) for i, s in enumerate(seeds)])


def run(cfg: ProxyConfig, frames: torch.Tensor, classes: np.ndarray, batched: bool) -> tuple[float, list, torch.Tensor]:
    model = _build_model(cfg)
    t0 = time.perf_counter()
    if batched:
        protos, losses = _image_stage(model, frames, classes, cfg, None)
    else:
        with mock.patch.object(ClipTransform, "per_frame", one_call_per_frame), \
                mock.patch("tgdfer.proxy.ThreadPoolExecutor") as pool:
            pool.return_value.__enter__.return_value.submit.side_effect = _now  # no thread: one batch after the other
            protos, losses = _image_stage(model, frames, classes, cfg, None)
    return (time.perf_counter() - t0) / cfg.steps, losses, protos


class _now:
    """A finished future: the batch is made when submitted, in this thread."""

    def __init__(self, fn, *args):
        self.value = fn(*args)

    def result(self):
        return self.value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ProxyConfig(steps=args.steps, warmup=min(5, args.steps))
    frames = torch.randint(0, 256, (3000, cfg.size, cfg.size, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))  # [N, H, W, 3]
    classes = np.arange(len(frames)) % 7
    old, old_losses, old_protos = run(cfg, frames, classes, batched=False)
    new, new_losses, new_protos = run(cfg, frames, classes, batched=True)
    same = old_losses == new_losses and torch.equal(old_protos, new_protos)
    print(f"torch threads {torch.get_num_threads()}, {cfg.steps} image steps of {cfg.batch} frames each way")
    print(f"per frame: {old * 1000:.0f} ms/step   batched: {new * 1000:.0f} ms/step   speedup {old / new:.2f}x   "
          f"same losses and prototypes: {same}")


if __name__ == "__main__":
    main()
