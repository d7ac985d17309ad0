"""Video decoding benchmark: today's default (PyAV, exact) against the old default (decord random access).

For each codec and frame size it encodes a few clips of a real photograph panning (scikit-image's
coffee, with a moving bar), then times, per clip, what extraction does: open the video and read
the union of views x 16 frames `segment_indices` picks (view 0 the segment centres, the others
seeded random draws). Old and new alternate per clip so that load from other processes hits both
alike, and each clip is read --repeat times per decoder, the fastest read counting (a shared
machine's load only ever slows a read down).

  old fps   sampled frames returned per second by decord.VideoReader + get_batch (tgdfer <= 0.x's
            "auto" default: decord, PyAV fallback)
  new fps   the same by `open_frames(path)` (PyAV, decoded sequentially up to the last index)
  ratio     new fps / old fps
  old wrong frames decord returned that are not the frame asked for (by pixels, against the new
            default's frames, which are a sequential decode's by construction)

    python benchmarks/decode.py                 # 2 codecs x 2 sizes, 4 clips of 150 frames each
    python benchmarks/decode.py --quick         # 1 clip of 60 frames per row: smoke run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av  # before decord: importing decord first breaks PyAV's libvpx encoder
import numpy as np
import skimage.data as skdata
from PIL import Image
from rich.console import Console
from rich.table import Table

from tgdfer.frames import PyAVSource, open_frames
from tgdfer.sampling import segment_indices

CODECS = {  # name -> (encoder, suffix, options, max_b_frames, codec tag)
    "H.264 mp4": ("libx264", ".mp4", {"bf": "3"}, None, None),
    "XviD avi": ("mpeg4", ".avi", {}, 2, "XVID"),
}
SIZES = ((320, 240), (720, 528))  # 720x528: the real XviD AVI of issue 18


def write_clip(path: Path, codec: str, width: int, height: int, n: int, seed: int) -> Path:
    encoder, _, options, bf, tag = CODECS[codec]
    photo = np.asarray(Image.fromarray(skdata.coffee()).resize((width + n * 2, height)))
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as c:
        s = c.add_stream(encoder, rate=25, options=dict(options))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.gop_size = 50
        if bf is not None:
            s.codec_context.max_b_frames = bf
            s.codec_context.bit_rate = width * height * 4
        if tag:
            s.codec_tag = tag
        for i in range(n):
            img = photo[:, 2 * i : 2 * i + width].copy()
            y = int(rng.integers(0, height - 16))
            img[y : y + 16, (5 * i) % (width - 16) :][:, :16] = (255, 32, 0)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def indices(n: int, views: int, clip: int) -> np.ndarray:
    """The frames extraction reads of a clip: views x 16, sorted and distinct."""
    idx = [segment_indices(n, 16)] + [segment_indices(n, 16, train=True, rng=clip * 10 + v) for v in range(1, views)]
    return np.unique(np.concatenate(idx))


def read_old(path: Path, idx: np.ndarray) -> np.ndarray:
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    return vr.get_batch(idx.tolist()).asnumpy()


def read_new(path: Path, idx: np.ndarray) -> np.ndarray:
    with open_frames(path) as src:
        return src.read(idx)


def read_new_1thread(path: Path, idx: np.ndarray) -> np.ndarray:
    with PyAVSource(path, threads=1) as src:
        return src.read(idx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=4, help="clips per row")
    ap.add_argument("--frames", type=int, default=150, help="frames per clip")
    ap.add_argument("--views", type=int, default=2, help="views read per clip (view 0 + random draws)")
    ap.add_argument("--repeat", type=int, default=3, help="reads of each clip per decoder; the fastest counts")
    ap.add_argument("--quick", action="store_true", help="1 clip of 60 frames per row")
    args = ap.parse_args()
    if args.quick:
        args.clips, args.frames, args.repeat = 1, 60, 1
    table = Table(title=f"decoding {args.views} x 16 sampled frames per clip, {args.frames}-frame clips")
    for col in ("video", "size", "clips", "frames read", "old fps", "new fps", "ratio", "new 1 thread fps", "ratio 1t",
                "old wrong"):
        table.add_column(col, justify="left" if col == "video" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        for codec, (_, suffix, *_rest) in CODECS.items():
            for w, h in SIZES:
                paths = [write_clip(Path(tmp) / f"{k}{suffix}", codec, w, h, args.frames, k) for k in range(args.clips)]
                for fn in (read_old, read_new, read_new_1thread):  # warm-up: imports, first opens
                    fn(paths[0], indices(args.frames, 1, 0))
                times = dict.fromkeys(("old", "new", "new1"), 0.0)
                read = wrong = 0
                for k, path in enumerate(paths):
                    idx = indices(args.frames, args.views, k)
                    for key, fn in (("old", read_old), ("new", read_new), ("new1", read_new_1thread)):
                        best = float("inf")
                        for _ in range(args.repeat):
                            t0 = time.perf_counter()
                            out = fn(path, idx)
                            best = min(best, time.perf_counter() - t0)
                        times[key] += best
                        if key == "old":
                            old = out
                        elif key == "new":
                            diff = np.abs(old.astype(int) - out.astype(int)).reshape(len(idx), -1).max(1)
                            wrong += int((diff > 2).sum())
                    read += len(idx)
                fps = {key: read / t for key, t in times.items()}
                table.add_row(codec, f"{w}x{h}", str(args.clips), str(read), f"{fps['old']:.0f}", f"{fps['new']:.0f}",
                              f"{fps['new'] / fps['old']:.2f}", f"{fps['new1']:.0f}", f"{fps['new1'] / fps['old']:.2f}",
                              f"{wrong}/{read}")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
