"""The proxy-CLIP learnability check's settings: `pipelines/synthetic.toml` (the demo) made small.

Shared by tests/conftest.py (the session fixtures) and benchmarks/learnability.py, which measures
how reliably these settings learn over several proxy seeds (numbers in docs/testing.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tgdfer.store import FeatureStore

DEMO = str(Path(__file__).resolve().parents[1] / "pipelines" / "synthetic.toml")  # the demo pipeline

# --set overrides of DEMO. The demo's proxy trains 600 image steps; at 250 steps of 256 frames the
# features did not generalise to new people (zero-shot 0.08-0.10, head UAR 0.18-0.19, rendered at
# 64 or 112 px; benchmarks/learnability.py, docs/testing.md), so only the step count is cut, to 400.
# The held-out set is written as JPEG folders only (the same frames, no mp4 encoding).
OVERRIDES = ["proxy.steps=400", "synth.format=\"frames\"", "train.device=\"cpu\""]


def zero_shot(store: str | Path) -> dict[str, float]:
    """Zero-shot accuracy per stored prompt set over all clips of `store`: the mean view-0 frame feature
    of each clip against the set's 7 text features (what CLIP's zero-shot DFER baseline does)."""
    with FeatureStore.open(store) as s:
        feats = F.normalize(torch.from_numpy(s.read_feats()[:, 0].astype(np.float32)).mean(1), dim=-1)  # [N, D]
        labels = s.clips["label"].to_numpy()
        out = {}
        for name in s.text_sets:
            text = F.normalize(torch.from_numpy(np.asarray(s.text(name)[2], dtype=np.float32)), dim=-1)  # [C, D]
            out[name] = float(((feats @ text.T).argmax(-1).numpy() == labels).mean())
    return out
