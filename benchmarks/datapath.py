"""Data-path benchmark: extraction's DataLoader alone, the encoder replaced by a no-op.

For each frame source of a freshly generated SynthDFER set (mp4 videos, JPEG frame folders) and
each worker count it times two data paths over the same clips, in one run, alternating per row:

  old  workers convert to float32 and normalise (`ClipViews.to_float` in the worker), hand over
       float32 [V, T, 3, S, S] per clip (600 KB a 224 px frame), the main process stacks them;
  new  `tgdfer.extraction`'s own: workers hand over uint8 crops stacked into one shared-memory
       batch (`collate_views`), the main process converts the batch (`ClipViews.to_float`, on
       the encoder's device in a real run; here the CPU, so its cost is counted).

frames/s = images (clips x views x frames) / seconds from creating the DataLoader to the last
batch converted; `new/old` is their ratio. `--profile` also splits one worker's work per stage
(decode, uint8 transform, float conversion, pickling a batch as the DataLoader queue does).

    python benchmarks/datapath.py                       # 16 clips, 112 px, workers 0 1 2
    python benchmarks/datapath.py --size 224 --profile
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing  # noqa: F401  registers the shared-memory tensor reducers
from multiprocessing.reduction import ForkingPickler  # torch registers its tensor reducers on it
from torch.utils.data import DataLoader

from tgdfer.augment import AugmentConfig, ClipTransform
from tgdfer.extraction import ClipViews, ExtractConfig, _loader, _worker_init
from tgdfer.frames import open_frames
from tgdfer.sampling import view_indices, view_seed
from tgdfer.readers import load_clips
from tgdfer.synth import SynthConfig, generate

SIZE = 224  # encoder input side (ViT-B/32)
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class OldClipViews(ClipViews):
    """The data path before issue 19: float32 pixels made in the worker."""

    def __getitem__(self, k: int) -> dict:
        item = super().__getitem__(k)
        if item["pixels"] is not None:
            item["pixels"] = self.to_float(item["pixels"])  # [V, T, 3, S, S] float32
        return item


def _keep_as_list(items: list[dict]) -> list[dict]:
    return items


def run_path(path: str, table, cfg: ExtractConfig) -> tuple[int, float]:
    """(images, seconds) of one pass of the data path over `table`, encoder = no-op."""
    rows = np.arange(len(table))
    t0 = time.perf_counter()
    images = 0
    if path == "old":
        dataset = OldClipViews(table, rows, cfg, AugmentConfig(), SIZE, MEAN, STD)
        loader = DataLoader(dataset, batch_size=cfg.batch_clips, shuffle=False, num_workers=cfg.workers,
                            collate_fn=_keep_as_list, worker_init_fn=_worker_init if cfg.workers else None,
                            prefetch_factor=4 if cfg.workers else None)
        for batch in loader:
            pixels = torch.stack([b["pixels"] for b in batch])  # [B, V, T, 3, S, S] float32
            images += pixels.shape[:3].numel()
    else:
        dataset = ClipViews(table, rows, cfg, AugmentConfig(), SIZE, MEAN, STD)
        for batch in _loader(dataset, cfg, torch.device("cpu")):
            pixels = dataset.to_float(batch["pixels"])  # [B, V, T, 3, S, S] float32
            images += pixels.shape[:3].numel()
    return images, time.perf_counter() - t0


def profile(table, cfg: ExtractConfig) -> dict[str, float]:
    """Milliseconds per frame of each stage of one worker's work, in this process."""
    kw = dict(size=SIZE, config=AugmentConfig(), normalize="clip", mean=MEAN, std=STD)
    tfs = ClipTransform(train=False, **kw), ClipTransform(train=True, **kw)
    spent = dict(decode=0.0, transform_uint8=0.0, to_float=0.0, pickle_float32=0.0, pickle_uint8=0.0)
    frames = 0
    for row in range(len(table)):
        clip_id = str(table["clip_id"].iat[row])
        t0 = time.perf_counter()
        with open_frames(table["path"].iat[row]) as src:
            index = np.stack([view_indices(len(src), clip_id, v, cfg.seed, cfg.frames) for v in range(cfg.views)])
            distinct = np.unique(index)
            decoded = dict(zip(distinct.tolist(), src.read(distinct)))
        t1 = time.perf_counter()
        u8 = torch.stack([tfs[v > 0].pixels(np.stack([decoded[int(f)] for f in index[v]]),
                                            seed=view_seed(cfg.seed, clip_id, v)) for v in range(cfg.views)])
        t2 = time.perf_counter()
        f32 = tfs[0].to_float(u8)
        t3 = time.perf_counter()
        for name, x in (("pickle_float32", f32), ("pickle_uint8", u8)):
            s0 = time.perf_counter()
            x = x.clone()  # a fresh storage each time, as a worker's batch is
            ForkingPickler(io.BytesIO(), 2).dump(x)  # moves the storage to shared memory, as the queue does
            spent[name] += time.perf_counter() - s0
        spent["decode"] += t1 - t0
        spent["transform_uint8"] += t2 - t1
        spent["to_float"] += t3 - t2
        frames += index.size
    return {k: 1000 * v / frames for k, v in spent.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=16, help="SynthDFER clips per source")
    p.add_argument("--size", type=int, default=112, help="SynthDFER frame side in pixels")
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch-clips", type=int, default=4)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sources", nargs="+", default=["video", "frames"], choices=["video", "frames"])
    p.add_argument("--repeats", type=int, default=2, help="rounds; the fastest of each path counts")
    p.add_argument("--profile", action="store_true", help="also split a worker's time per stage")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as a worker (extraction._worker_init); the main process's share is small
    with tempfile.TemporaryDirectory(prefix="tgdfer-datapath-") as tmp:
        data = Path(tmp) / "synth"
        generate(data, SynthConfig(clips=args.clips, format="both", size=args.size, folds=min(5, args.clips)))
        print(f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}; {args.clips} clips x {args.views} views x "
              f"{args.frames} frames, SynthDFER {args.size} px -> {SIZE} px, batch {args.batch_clips} clips, "
              f"no-op encoder", flush=True)
        print(f"{'source':8}{'workers':>8}{'old f/s':>10}{'new f/s':>10}{'new/old':>9}", flush=True)
        for source in args.sources:
            folder = data / ("videos" if source == "video" else "frames")
            table = load_clips("dfew", split_dir=data / "EmoLabel_DataSplit",
                               **{"videos_dir" if source == "video" else "frames_dir": folder}).table
            for workers in args.workers:
                cfg = ExtractConfig(views=args.views, frames=args.frames, batch_clips=args.batch_clips,
                                    workers=workers)
                best = {"old": 0.0, "new": 0.0}
                for _ in range(args.repeats):
                    for path in ("old", "new"):
                        images, seconds = run_path(path, table, cfg)
                        best[path] = max(best[path], images / seconds)
                print(f"{source:8}{workers:>8}{best['old']:>10.0f}{best['new']:>10.0f}"
                      f"{best['new'] / best['old']:>9.2f}", flush=True)
            if args.profile:
                ms = profile(table, ExtractConfig(views=args.views, frames=args.frames))
                print(f"  {source} per frame (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in ms.items()), flush=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":  # SynthDFER generation uses a spawn pool: keep the guard
    raise SystemExit(main())
