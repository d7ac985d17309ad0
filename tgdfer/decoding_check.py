"""Random access checked against a sequential decode: does a backend return the frames asked for?

A video frame index in tgdfer is the i-th frame of a full sequential decode, in presentation
order. `verify_random_access` reads a seeded sample of indices with a backend (what `extract`
uses) and finds, by pixels, which frame of a sequential PyAV decode each returned frame is:

    r = verify_random_access("clip.avi", backend="decord", samples=4)
    r.ok, r.reason        # False, "backend decord returned frame 7 for 8, frame 24 for 25"

`tgdfer check --verify-decode N` runs it on N clips (a seeded sample of the annotated videos).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FrameReadError
from .frames import _av_errors, _first_line, _video_stream, decoded_frames, open_frames
from .orientation import stream_sar, video_frame_rgb

# Largest per-pixel difference (0..255) between a decord frame and the sequential PyAV decode's
# frame of the same index that still counts as that frame. Measured: 0 on every case decord is
# offered for (H.264, VP9, MJPEG, VFR; tests/test_decoding.py), as both run FFmpeg's decoder and
# swscale; 2 leaves room for another YUV-to-RGB rounding, far below two frames' difference in
# real video. PyAV against PyAV must be equal (tolerance 0).
TOLERANCE = 2


@dataclass(frozen=True)
class AccessCheck:
    """What reading a sample of frames by index returned, against a sequential decode."""

    path: str
    backend: str  # the backend that served the reads ("pyav", "decord")
    indices: tuple[int, ...]  # frames asked for
    returned: tuple[int, ...]  # the sequential decode's frame each read matches best (-1: none decoded)
    max_diff: tuple[int, ...]  # largest per-pixel difference to the frame asked for (-1: not decoded)
    frames: int  # the backend's frame count
    decoded: int  # frames the sequential decode gave

    @property
    def tolerance(self) -> int:
        return 0 if self.backend == "pyav" else TOLERANCE

    @property
    def ok(self) -> bool:
        return self.frames == self.decoded and all(0 <= d <= self.tolerance for d in self.max_diff)

    @property
    def reason(self) -> str:
        """One line saying what is wrong ("" when ok)."""
        parts = []
        if self.frames != self.decoded:
            parts.append(f"backend {self.backend} counts {self.frames} frames, a sequential decode gives {self.decoded}")
        wrong = [(i, r) for i, r, d in zip(self.indices, self.returned, self.max_diff)
                 if not 0 <= d <= self.tolerance]
        if wrong:
            parts.append(f"backend {self.backend} returned " + ", ".join(
                f"frame {r} for {i}" if r >= 0 else f"no decodable frame for {i}" for i, r in wrong))
        return "; ".join(parts)


def sample_indices(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """`samples` distinct frame indices of an n-frame clip, sorted, from a seeded draw."""
    k = min(int(samples), n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def verify_random_access(path: str | Path, backend: str = "auto", samples: int = 4, seed: int = 0) -> AccessCheck:
    """Read `samples` seeded random frames of a video with `backend` and match them by pixels to a
    sequential PyAV decode. Raises FrameReadError when the video cannot be opened or read."""
    import av

    path = Path(path)
    with open_frames(path, backend=backend) as src:
        idx = sample_indices(len(src), samples, seed)
        got = src.read(idx).astype(np.int16)  # [K, H, W, 3]
        n, used = len(src), src.backend
    k = len(idx)
    best = np.full(k, -1)
    best_err = np.full(k, np.inf)
    diff_at = np.full(k, -1)  # max |returned - frame asked for|
    decoded = 0
    try:
        with av.open(str(path)) as container:
            seen: dict = {}
            stream = _video_stream(container, path)
            sar = stream_sar(stream)
            size = None  # the first frame's (width, height), as PyAVSource shows every frame
            for i, frame in enumerate(decoded_frames(container, stream, path)):  # the decoder reads use
                decoded = i + 1
                size = size or (frame.width, frame.height)
                img = video_frame_rgb(frame, path, seen, sar, size).astype(np.int16)  # [H, W, 3] as shown
                if img.shape != got.shape[1:]:
                    continue
                d = np.abs(got - img[None])  # [K, H, W, 3]
                err = d.reshape(k, -1).mean(1)
                closer = err < best_err
                best[closer], best_err[closer] = i, err[closer]
                hit = idx == i
                if hit.any():
                    diff_at[hit] = d[hit].max()
    except FrameReadError:
        raise
    except _av_errors() as e:
        raise FrameReadError(path, f"a sequential decode stops at frame {decoded}: {_first_line(e)}") from e
    return AccessCheck(str(path), used, tuple(idx.tolist()), tuple(best.tolist()), tuple(diff_at.tolist()), n, decoded)


def verify_sample(paths: list[str], n: int, backend: str = "auto", samples: int = 4, seed: int = 0) -> dict[int, str]:
    """Check random access on a seeded sample of `n` of the video files among `paths`.

    Returns {position in paths: reason} for each sampled video whose reads disagree with a
    sequential decode, or that `backend` cannot read.
    """
    from .errors import TgdferError

    videos = [i for i, p in enumerate(paths) if Path(p).is_file()]
    pick = np.random.default_rng(seed).choice(len(videos), size=min(n, len(videos)), replace=False)
    bad = {}
    for i in sorted(videos[j] for j in pick):
        try:
            r = verify_random_access(paths[i], backend=backend, samples=samples, seed=seed)
        except TgdferError as e:  # FrameReadError "path: why", ConfigError "backend: path: why"
            why = str(e).removeprefix("backend: ").removeprefix(f"{paths[i]}: ")
            bad[i] = f"random access ({backend}): {why}"
            continue
        if not r.ok:
            bad[i] = r.reason
    return bad
