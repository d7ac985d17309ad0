"""The proxy-CLIP learnability check's settings (`pipelines/synthetic.toml`, the demo's) and its zero-shot score.

Shared by tests/conftest.py (the session fixtures) and benchmarks/learnability.py, which measures
how reliably these settings learn over several proxy seeds (numbers in docs/testing.md). Imports
torch where used: the xdist controller imports this file with conftest.py and runs no test.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]

DEMO = str(ROOT / "pipelines" / "synthetic.toml")  # the demo pipeline

# --set overrides of DEMO. The proxy keeps the demo's settings: smaller ones did not learn reliably
# (benchmarks/learnability.py, docs/testing.md): at 150 or 250 image steps the features did not
# generalise to new people (zero-shot 0.08-0.10, head UAR 0.16-0.19); at 400 steps proxy seed 1
# reached zero-shot 0.19 but the head only UAR 0.12. The held-out set is written as JPEG folders
# only: the same frames and splits as the demo's "both", without encoding 400 mp4 files.
PROXY_MODULE = "test_proxy"  # the tests that read the proxy fixtures: one xdist worker builds them once
OVERRIDES = ["synth.format=\"frames\"", "train.device=\"cpu\""]


def zero_shot(store: str | Path) -> dict[str, float]:
    """Zero-shot accuracy per stored prompt set over all clips of `store`: the mean view-0 frame feature
    of each clip against the set's 7 text features (what CLIP's zero-shot DFER baseline does)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from tgdfer.store import FeatureStore

    with FeatureStore.open(store) as s:
        feats = F.normalize(torch.from_numpy(s.read_feats()[:, 0].astype(np.float32)).mean(1), dim=-1)  # [N, D]
        labels = s.clips["label"].to_numpy()
        out = {}
        for name in s.text_sets:
            text = F.normalize(torch.from_numpy(np.asarray(s.text(name)[2], dtype=np.float32)), dim=-1)  # [C, D]
            out[name] = float(((feats @ text.T).argmax(-1).numpy() == labels).mean())
    return out


def heldout_digest(pipe, weights: Path) -> str:
    """sha256 over what decides the held-out store's bytes: the proxy weights, the synth/extract/augment/
    encoder settings, every file under tgdfer/ (code, model configs, profiles), this file and
    tests/conftest.py (which holds the build), and torch's and open_clip's versions. Deliberately wide:
    any change of the package builds the store again."""
    import open_clip
    import torch

    h = hashlib.sha256()
    h.update(hashlib.sha256(Path(weights).read_bytes()).digest())
    settings = {k: asdict(getattr(pipe, k)) for k in ("synth", "extract", "augment", "encoder")}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in sorted([*(ROOT / "tgdfer").rglob("*"), Path(__file__), ROOT / "tests" / "conftest.py"]):
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    h.update(f"{torch.__version__} {open_clip.__version__}".encode())
    return h.hexdigest()


def cached_heldout_store(cache: Path, pipe, weights: Path, build: Callable[[Path, object, Path], Path]) -> Path:
    """The held-out store under cache/heldout-<digest>/, built by `build(root, pipe, weights)` when absent.

    Built in place (the store records its clips' paths) under a lock, and marked complete only after
    the build, so that an interrupted build is never reused; a store found there must pass
    `FeatureStore.verify` (every chunk's checksum) and hold every clip, or the test fails naming it.
    """
    final = cache / f"heldout-{heldout_digest(pipe, weights)[:16]}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "heldout.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session building the same store: wait for it
        if not (final / "complete").is_file():
            for old in cache.glob("heldout-*"):  # earlier code's store, or an interrupted build
                shutil.rmtree(old)
            build(final, pipe, weights)
            (final / "complete").write_text("built by tests/conftest.py's proxy_store\n")
    from tgdfer.store import FeatureStore

    store = final / "proxy.zarr"
    with FeatureStore.open(store) as s:
        damage = s.verify()
        assert not damage, f"{store}: the cached held-out store is damaged ({damage[:3]}); delete {final}"
        assert bool(s.done.all()), f"{store}: not every clip is extracted; delete {final}"
    return store
