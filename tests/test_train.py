"""Stage 2: the trainer on a small store whose features carry a planted, frame-local class signal."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tgdfer.encoders import EncoderConfig, load_encoder
from tgdfer.errors import ConfigError, TgdferError
from tgdfer.evaluate import rescore, results_table
from tgdfer.extract import write_text_features
from tgdfer.head import HeadConfig
from tgdfer.metrics import REFERENCE_PROTOCOL
from tgdfer.store import FeatureStore
from tgdfer.train import TrainConfig, TrainingDiverged, split_rows, train

N, V, T = 105, 3, 16


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    """105 clips (15 per class, 3 per class and fold), class signal in 5 of 16 frames, tiny text tower."""
    enc = load_encoder(EncoderConfig(model="tgdfer-tiny-vit", pretrained="none"), towers=("text",))
    d = enc.embed_dim
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(7), 15)
    clips = pd.DataFrame({
        "clip_id": [f"{i:05d}" for i in range(1, N + 1)], "path": [f"/nowhere/{i}" for i in range(N)],
        "label": labels, "fold": pd.array(np.tile(np.arange(1, 6), 21), dtype="Int64"),
        "split": pd.array([pd.NA] * N, dtype="string"), "n_frames": pd.array([T] * N, dtype="Int64")})
    means = rng.normal(size=(7, d))
    feats = rng.normal(size=(N, V, T, d))
    for i, label in enumerate(labels):
        start = rng.integers(0, T - 5)
        feats[i, :, start:start + 5] += means[label]
    path = tmp_path_factory.mktemp("planted") / "s.zarr"
    with FeatureStore.create(path, clips=clips, views=V, frames=T, dim=d,
                             fingerprint={"encoder": enc.fingerprint}) as store:
        store.write_clips(np.arange(N), feats.astype(np.float16), np.zeros((N, V, T), np.int32))
        write_text_features(store, enc, None)
    return path


def cfg(store, out, **kw):
    base = dict(store=str(store), fold=1, out=str(out), epochs=6, batch_size=16, milestones=(5,))
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("learnable", [False, True])
def test_learns_the_planted_signal(planted_store, tmp_path, learnable):
    res = train(HeadConfig(learnable=learnable), cfg(planted_store, tmp_path / "run"))
    assert res.test.war > 0.6 and res.test.uar > 0.6  # chance is 1/7
    assert res.history["loss"].iloc[-1] < res.history["loss"].iloc[0]
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["selection"] == "final" and final["selected_epoch"] == 6 and final["n_test"] == 21
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) == 6


def test_same_seed_same_run_and_resume_continues_exactly(planted_store, tmp_path):
    head = HeadConfig(learnable=False)
    a = train(head, cfg(planted_store, tmp_path / "a", epochs=4))
    b = train(head, cfg(planted_store, tmp_path / "b", epochs=2))
    b = train(head, cfg(planted_store, tmp_path / "b", epochs=4), resume=True)
    cols = ["loss", "train_acc", "test_war", "test_uar"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols])
    sa, sb = (torch.load(tmp_path / r / "last.pt", weights_only=False)["head_state"] for r in "ab")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(TgdferError, match="--resume"):
        train(head, cfg(planted_store, tmp_path / "a", epochs=4))


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(planted_store, tmp_path, monkeypatch):
    import tgdfer.train as tr

    calls = {"n": 0}
    real = tr.F.cross_entropy

    def flaky(logits, y):
        calls["n"] += 1
        loss = real(logits, y)
        return loss * float("nan") if calls["n"] > 7 else loss  # 6 steps per epoch: dies in epoch 2, step 1

    monkeypatch.setattr(tr.F, "cross_entropy", flaky)
    with pytest.raises(TrainingDiverged, match="epoch 2, step 1"):
        train(HeadConfig(learnable=False), cfg(planted_store, tmp_path / "run"))
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["epoch"] == 1


def test_validation_split_is_stratified_and_disjoint(planted_store):
    clips = FeatureStore.open(planted_store).clips
    train_rows, val, test = split_rows(clips, np.ones(N, bool), 1, "val", 0.25, seed=0)
    assert not (set(train_rows) & set(val)) and not (set(val) & set(test)) and not (set(train_rows) & set(test))
    assert len(train_rows) + len(val) + len(test) == N
    assert np.bincount(clips["label"].to_numpy()[val], minlength=7).tolist() == [3] * 7  # 25% of 12 per class


def test_selection_protocols_and_evaluate_rescoring(planted_store, tmp_path):
    head = HeadConfig(learnable=False)
    val = train(head, cfg(planted_store, tmp_path / "val", selection="val", val_fraction=0.2, epochs=4))
    assert (tmp_path / "val" / "best.pt").exists() and val.protocol.startswith("best epoch on a validation")
    again = rescore(tmp_path / "val", device="cpu")
    assert again.epoch == val.selected_epoch and again.test.war == pytest.approx(val.test.war)
    ref = train(head, cfg(planted_store, tmp_path / "ref", selection="test-best", epochs=3))
    assert json.loads((tmp_path / "ref" / "final.json").read_text())["protocol"] == REFERENCE_PROTOCOL
    table, protocol = results_table([rescore(tmp_path / "ref", device="cpu")])
    assert protocol == REFERENCE_PROTOCOL and (table["protocol"] == REFERENCE_PROTOCOL).all()
    with pytest.raises(TgdferError, match="different model-selection protocols"):
        results_table([again, rescore(tmp_path / "ref", device="cpu")])


@pytest.mark.parametrize("head_kw, train_kw, field", [
    ({}, {"fold": 9}, "fold"),
    ({"coarse_text": "no_such_set"}, {}, "head.coarse_text"),
    ({"window": 32, "stride": 1}, {}, "head.window"),
])
def test_impossible_settings_fail_before_training(planted_store, tmp_path, head_kw, train_kw, field):
    with pytest.raises(ConfigError) as e:
        train(HeadConfig(learnable=False, **head_kw), cfg(planted_store, tmp_path / "run", **train_kw))
    assert e.value.field == field
    assert not (tmp_path / "run" / "last.pt").exists()
