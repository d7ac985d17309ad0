"""Face stage benchmark: its cost per frame next to the image encoder's forward per frame.

For moved-face clips (scikit-image's astronaut over a real background, 640 x 480 by default) it
times, in one process with the same torch threads:

  detect   `FaceStage.detect` (CenterFace on onnxruntime, frames downscaled to `max_side`) per frame;
  track    building the clip's track from the detections (colour histograms and shot cuts, linking,
           the subject's segments, smoothing) per frame;
  crop     square crops resized to the crop size (224) per frame;
  encoder  `encode_images` of the encoder (ViT-B-32, random weights) per frame, batches of `--batch`.

ratio = face stage (detect + track + crop) per frame / encoder per frame. In `extract` the face
stage runs in the DataLoader workers, beside the encoder: with enough workers it hides behind the
encoder while the ratio x (encoder threads / worker threads) stays under 1. With `every = 4`
(the default) a clip of n frames is detected on about n / 4 + T frames (the T segment centres), plus
about 2 more at each jump or cut, and each of its V views x T frames is cropped.

    python benchmarks/faces.py                       # 640 x 480, ViT-B-32, 1 onnxruntime thread
    python benchmarks/faces.py --height 240 --width 320 --frames 16
    python benchmarks/faces.py --quick               # tiny model, small frames: smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from facevideos import moving_face_clip  # noqa: E402  (scikit-image's astronaut, the test helper)

from tgdfer.encoders import EncoderConfig, encode_images, load_encoder  # noqa: E402
from tgdfer.facetrack import FacesConfig, FaceStage, crop_frames  # noqa: E402


def best_of(repeats: int, fn) -> float:
    """Fastest wall time of `repeats` calls (shared machines: the least disturbed run)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--frames", type=int, default=16, help="frames of the clip (all detected and cropped)")
    ap.add_argument("--batch", type=int, default=32, help="images per encoder call")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (encoder)")
    ap.add_argument("--ort-threads", type=int, default=1, help="onnxruntime threads (detector)")
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.model, args.height, args.width, args.frames, args.repeats = "tgdfer-tiny-vit", 120, 160, 4, 1
    torch.set_num_threads(args.threads)

    frames, _ = moving_face_clip(n=args.frames, height=args.height, width=args.width, face=args.height / 4)
    cfg = FacesConfig(detector="centerface", max_side=args.max_side, args={"threads": args.ort_threads})
    stage = FaceStage(cfg)
    grid = np.arange(len(frames))
    stage.detect(frames[:1])  # build the session, warm up
    detect = best_of(args.repeats, lambda: stage.detect(frames)) / len(frames)
    found = stage.detect(frames)
    from tgdfer.facetrack import (FaceTrack, colour_histograms, fill_and_smooth, link_tracklets, shot_cuts,
                                  subject_segments)

    def track() -> FaceTrack:  # FaceStage.track without the detector calls
        cuts = shot_cuts(colour_histograms(frames), cfg.cut)
        segments = subject_segments(link_tracklets(grid, found, cuts, cfg.min_score), args.width, args.height)
        parts = []
        for seg in segments:
            f = np.array(sorted(seg))
            parts.append((f, fill_and_smooth(f, np.stack([seg[x] for x in f]), cfg.smooth)))
        return FaceTrack(parts, grid, args.width, args.height)

    track_s = best_of(args.repeats, track) / len(frames)
    boxes = track().crop_boxes(grid, cfg.margin)
    crop = best_of(args.repeats, lambda: crop_frames(frames, boxes, cfg.size)) / len(frames)

    enc = load_encoder(EncoderConfig(model=args.model, pretrained="none"))
    pixels = torch.randn(args.batch, 3, enc.image_size, enc.image_size)
    encode_images(enc, pixels)  # warm-up
    encoder = best_of(args.repeats, lambda: encode_images(enc, pixels)) / args.batch

    stage_s = detect + track_s + crop
    table = Table(title=f"face stage vs {args.model} forward, per frame ({args.width} x {args.height}, "
                        f"detector at {min(args.max_side, max(args.width, args.height))} px, torch threads "
                        f"{args.threads}, onnxruntime threads {args.ort_threads})")
    for col in ("detect ms", "track ms", "crop ms", "face stage ms", "encoder ms", "ratio stage / encoder"):
        table.add_column(col, justify="right")
    table.add_row(f"{1e3 * detect:.1f}", f"{1e3 * track_s:.3f}", f"{1e3 * crop:.2f}", f"{1e3 * stage_s:.1f}",
                  f"{1e3 * encoder:.1f}", f"{stage_s / encoder:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
