"""Helpers shared by the tests of hostile and damaged inputs (test_sharing.py, test_attacks.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def flat(text) -> str:
    """`text` without any white space: CLI messages compared whatever rich wrapped."""
    return "".join(str(text).split())


class Payload:
    """Unpickling this runs `touch marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def marker(tmp_path) -> Path:
    """A path a crafted file would create if it ran code; the test fails if it exists afterwards."""
    m = tmp_path / "MARKER"
    yield m
    assert not m.exists(), "a crafted file ran code"


def one_epoch_run(out: Path, store: Path, encoder_cfg) -> Path:
    """A run folder trained for one epoch on fold 1 of `store`: the shared run the crafted files attack."""
    from tgdfer.training import TrainConfig, train

    from smallhead import small_head

    train(small_head(), TrainConfig(store=str(store), fold=1, out=str(out), epochs=1, batch_size=8, device="cpu"),
          encoder=encoder_cfg)
    return out
