"""Shared session fixtures: one small SynthDFER dataset, fixed tiny-encoder weights, one reference store.

Everything here is made once per test session (a few seconds) and must be treated as read-only
by the tests: copy it into `tmp_path` before changing anything.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tgdfer.augment import AugmentConfig
from tgdfer.encoders import EncoderConfig, load_encoder
from tgdfer.extract import ExtractConfig, extract
from tgdfer.readers import read_dfew
from tgdfer.store import FeatureStore
from tgdfer.synth import SynthConfig, generate

TINY = "tgdfer-tiny-vit"  # 32 px input, D = 32: fast enough for extraction on 2 CPU cores
SYNTH = SynthConfig(clips=20, seed=7, format="both", size=32, min_frames=6, max_frames=20, folds=2, workers=1)
# Small blocks so that two shards and partial blocks both happen on 20 clips; batches of 4 clips.
EXTRACT = ExtractConfig(views=2, frames=8, seed=3, workers=0, batch_clips=4, block_size=4)


def save_tiny_weights(path: Path, seed: int) -> Path:
    """Random tiny open_clip weights saved as a state dict: the same weights in every process that loads the file."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = load_encoder(EncoderConfig(model=TINY, pretrained="none"))
    torch.save(enc.model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """SynthDFER with mp4 videos and JPEG folders (20 clips, 32 px, 6..20 frames, 2 folds)."""
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(out, SYNTH)
    return out


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pt", seed=0)


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory) -> Path:
    """A second set of random tiny weights (another sha256), for fingerprint tests."""
    return save_tiny_weights(tmp_path_factory.mktemp("weights2") / "tiny_other.pt", seed=1)


@pytest.fixture(scope="session")
def encoder_cfg(tiny_weights) -> EncoderConfig:
    """The tiny encoder with fixed weights (pretrained = the saved file, so the fingerprint holds its sha256)."""
    return EncoderConfig(model=TINY, pretrained=str(tiny_weights))


@pytest.fixture(scope="session")
def clip_table(synth_dir):
    """The DFEW reader's clip table over the JPEG frame folders."""
    return read_dfew(synth_dir / "EmoLabel_DataSplit", frames_dir=synth_dir / "frames").table


@pytest.fixture(scope="session")
def extract_config():
    """Factory: the tests' ExtractConfig writing to `store`, other fields overridable."""

    def make(store, **changes) -> ExtractConfig:
        return replace(EXTRACT, store=str(store), **changes)

    return make


@pytest.fixture(scope="session")
def reference_store(tmp_path_factory, clip_table, encoder_cfg, extract_config) -> Path:
    """An uninterrupted single-process Zarr extraction of `clip_table`: what every other run must equal."""
    path = tmp_path_factory.mktemp("reference") / "ref.zarr"
    result = extract(extract_config(path), AugmentConfig(), encoder_cfg, clip_table, data_kind="dfew")
    assert result.ok and result.extracted == len(clip_table)
    return path


@pytest.fixture(scope="session")
def ref(reference_store) -> dict:
    """The reference store's arrays: feats [N, V, T, D] float16, frame_index [N, V, T] int32, done, text."""
    with FeatureStore.open(reference_store) as s:
        return {
            "feats": s.read_feats(), "frame_index": s.read_frame_index(), "done": s.done,
            "fingerprint": s.fingerprint, "clips": s.clips,
            "text": {name: s.text(name) for name in s.text_sets},
        }

