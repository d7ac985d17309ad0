"""Checksum benchmark: what the store's per-clip checksums cost, at DFEW's clip size.

A DFEW store (pipelines/dfew.toml) holds 16,372 clips of 8 views x 16 frames x 512 dims float16
(128 KiB a clip). This script times, on random data of that shape:

  raw       hashlib's sha256 and blake2b over the same bytes (why the checksum is a sha256);
  hash      `clip_checksums` of --clips clips (what `write_clips` adds per batch, and what
            `verify` / `read_feats_verified` add per clip), per clip and extrapolated to DFEW;
  read      a store of --clips clips read whole, as train-head did before checksums
            (`read_feats`) and as it does now (`read_feats_verified`: the same read, every clip
            hashed and checked for NaN / inf).

    python benchmarks/checksum.py                  # 1000 clips of DFEW's shape
    python benchmarks/checksum.py --clips 200      # a quicker run
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tgdfer.store import FeatureStore, clip_checksums

DFEW_CLIPS, V, T, D = 16_372, 8, 16, 512


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.clips
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((n, V, T, D), dtype=np.float32).astype(np.float16)  # [n, V, T, D]
    index = np.tile(np.arange(T, dtype=np.int32), (n, V, 1))  # [n, V, T]
    rows, ids = np.arange(n), np.array([f"{i:05d}" for i in range(n)], dtype=object)

    mib = feats.nbytes / 2**20
    raw = {name: mib / timed(lambda: hashlib.new(name, feats.data), args.repeats) for name in ("sha256", "blake2b")}
    print(f"raw hash speed over the same {mib:.0f} MiB: sha256 {raw['sha256']:.0f} MiB/s, blake2b "
          f"{raw['blake2b']:.0f} MiB/s (x{raw['sha256'] / raw['blake2b']:.2f})")
    hash_s = timed(lambda: clip_checksums(rows, ids, feats, index), args.repeats)
    print(f"hash: {n} clips of {V}x{T}x{D} float16 ({mib:.0f} MiB) in {hash_s:.3f} s = "
          f"{hash_s / n * 1e6:.0f} us/clip, {mib / hash_s:.0f} MiB/s; DFEW ({DFEW_CLIPS} clips): "
          f"{hash_s / n * DFEW_CLIPS:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.zarr"
        clips = pd.DataFrame({"clip_id": ids})
        with FeatureStore.create(path, clips=clips, views=V, frames=T, dim=D, fingerprint={}) as s:
            s.write_clips(rows, feats, index)
        with FeatureStore.open(path) as s:
            plain = timed(s.read_feats, args.repeats)
            verified = timed(s.read_feats_verified, args.repeats)
    print(f"read: {n} clips from Zarr, read_feats {plain:.3f} s, read_feats_verified {verified:.3f} s "
          f"(x{verified / plain:.2f}); DFEW: {plain / n * DFEW_CLIPS:.1f} s -> {verified / n * DFEW_CLIPS:.1f} s")


if __name__ == "__main__":
    main()
