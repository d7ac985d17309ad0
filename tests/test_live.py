"""End-to-end mode (`train-head --end-to-end`): live features from frames through a trainable encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tgdfer.encoders import load_encoder
from tgdfer.errors import ConfigError
from tgdfer.evaluation import load_run
from tgdfer.head import HeadConfig
from tgdfer.live import LiveFeatures
from tgdfer.predict import load_predictor, predict_clip
from tgdfer.store import FeatureStore
from tgdfer.run import Replica, load_checkpoint
from tgdfer.training import TrainConfig, train, train_replicas

from smallhead import SMALL_HEAD_SET, small_head

HEAD = small_head(window=4, stride=2, learnable=False)


def _cfg(store, out, **kw) -> TrainConfig:
    base = dict(store=str(store), fold=1, out=str(out), epochs=2, batch_size=4, milestones=(), device="cpu", seed=3,
                decode_workers=1)
    return TrainConfig(**{**base, **kw})


def test_live_features_equal_the_stored_views(reference_store, encoder_cfg, ref):
    """Every (clip, view) the trainer can ask for decodes to the features extract stored (fp16 rounding aside)."""
    with FeatureStore.open(reference_store) as store:
        enc = load_encoder(encoder_cfg)
        live = LiveFeatures(enc, store, workers=1)
        rows = np.array([[0, 3, 5, 11], [2, 2, 19, 7]])
        views = np.array([[1, 1, 0, 1], [0, 1, 1, 0]])
        with torch.no_grad():
            x = live(rows, views)  # [2, 4, T, D]
        live.close()
    want = torch.from_numpy(ref["feats"][rows, views]).float()
    assert x.shape == want.shape
    torch.testing.assert_close(x, want, rtol=2e-3, atol=2e-3 * float(want.abs().max()))


@pytest.mark.parametrize("learnable", [False, True], ids=["fixed", "learnable"])
def test_end_to_end_at_encoder_lr_0_matches_cached_training(reference_store, encoder_cfg, tmp_path, learnable):
    """Same clips, views, order and head: with the encoder frozen by lr 0 the runs agree step for step."""
    head = HeadConfig(**{**vars(HEAD), "learnable": learnable})
    cached = train(head, _cfg(reference_store, tmp_path / "cached"), encoder=encoder_cfg)
    live = train(head, _cfg(reference_store, tmp_path / "live", end_to_end=True, encoder_lr=0.0), encoder=encoder_cfg)
    np.testing.assert_allclose(live.history["loss"], cached.history["loss"], rtol=2e-3)
    assert live.history["test_war"].tolist() == cached.history["test_war"].tolist()
    a = load_checkpoint(tmp_path / "cached" / "last.safetensors")
    b = load_checkpoint(tmp_path / "live" / "last.safetensors")
    assert (a["mode"], b["mode"]) == ("cached", "end-to-end")
    for k, v in a["head_state"].items():
        torch.testing.assert_close(b["head_state"][k], v, rtol=1e-2, atol=1e-4, msg=k)
    start = load_encoder(encoder_cfg).model.visual.state_dict()
    for k, v in b["encoder_state"].items():  # lr 0: SGD's momentum and weight decay moved nothing
        assert torch.equal(v, start[k]), k


def test_end_to_end_fine_tunes_the_encoder_and_its_run_rescores(reference_store, encoder_cfg, tmp_path, synth_dir):
    out = tmp_path / "e2e"
    res = train(HEAD, _cfg(reference_store, out, end_to_end=True, encoder_lr=0.05, selection="test-best"),
                encoder=encoder_cfg)
    ckpt = load_checkpoint(out / "best.safetensors")
    start = load_encoder(encoder_cfg).model.visual.state_dict()
    moved = [k for k, v in ckpt["encoder_state"].items() if not torch.equal(v, start[k])]
    assert len(moved) > len(start) // 2  # the image tower learned
    assert ckpt["mode"] == "end-to-end" and (out / "final.json").is_file()
    # evaluate re-encodes view 0 through the fine-tuned tower and reproduces final.json's numbers
    run = load_run(out, device="cpu")
    final = json.loads((out / "final.json").read_text())["test"]
    from tgdfer.evaluation import forward
    logits, _ = forward(run.head, run.feats[run.test])
    assert np.isclose((logits.argmax(1) == run.labels[run.test]).mean(), final["war"])
    assert np.isclose(final["war"], res.test.war)
    # predict uses the fine-tuned tower too: its logits for a test clip equal evaluate's
    with FeatureStore.open(reference_store) as store:
        row = int(run.test[0])
        path = store.clips["path"].iloc[row]
    pred = predict_clip(load_predictor(out, device="cpu", weights=encoder_cfg.pretrained), path)
    np.testing.assert_allclose(pred.logits, logits[0], rtol=1e-3, atol=1e-3)


def test_end_to_end_trains_one_replica(reference_store, encoder_cfg, tmp_path):
    cfg = _cfg(reference_store, tmp_path / "x", end_to_end=True)
    with pytest.raises(ConfigError, match="end_to_end"):
        train_replicas(HEAD, cfg, [Replica(1, 0, str(tmp_path / "a")), Replica(2, 0, str(tmp_path / "b"))],
                       encoder=encoder_cfg)
    with pytest.raises(ConfigError, match="encoder_lr"):
        TrainConfig(encoder_lr=-1.0)


def test_train_head_end_to_end_from_the_cli(reference_store, encoder_cfg, tmp_path):
    from typer.testing import CliRunner

    from tgdfer.cli import app

    out = tmp_path / "cli"
    args = ["train-head", "--store", str(reference_store), "--fold", "1", "--epochs", "1", "--out", str(out),
            "--device", "cpu", "--end-to-end", "--set", f"encoder.model={encoder_cfg.model!r}".replace("'", '"'),
            "--set", f'encoder.pretrained="{encoder_cfg.pretrained}"', "--set", "head.learnable=false",
            *SMALL_HEAD_SET,
            "--set", "train.batch_size=4", "--set", "train.decode_workers=1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert load_checkpoint(out / "last.safetensors")["mode"] == "end-to-end"
    assert json.loads((out / "config.json").read_text())["train"]["end_to_end"] is True
    # several replicas and --end-to-end: refused with the field named, exit 2
    res = CliRunner().invoke(app, args[:3] + ["--folds", "1-2", "--epochs", "1", "--out", str(tmp_path / "m"),
                                              "--end-to-end", "--set", f'encoder.pretrained="{encoder_cfg.pretrained}"'])
    assert res.exit_code == 2 and "end_to_end" in res.output


def test_fp16_end_to_end_is_refused_naming_the_field(reference_store, encoder_cfg, tmp_path, monkeypatch):
    """On CUDA fp16 autocast stays fp16, whose gradients need loss scaling: refused before training."""
    import dataclasses

    import tgdfer.training as tr

    real = tr.load_image_encoder
    monkeypatch.setattr(tr, "load_image_encoder",
                        lambda *a, **k: dataclasses.replace(real(*a, **k), precision="fp16"))
    with pytest.raises(ConfigError, match="encoder.precision"):
        train(HEAD, _cfg(reference_store, tmp_path / "fp16", end_to_end=True), encoder=encoder_cfg)
    assert not (tmp_path / "fp16" / "last.safetensors").exists()


def test_end_to_end_with_other_weights_is_refused(reference_store, encoder_cfg, other_weights, tmp_path):
    """The [encoder] file must be the one the store was extracted with (sha256), for both towers."""
    from dataclasses import replace

    from tgdfer.errors import TgdferError

    wrong = replace(encoder_cfg, pretrained=str(other_weights))
    for head in (HEAD, HeadConfig(**{**vars(HEAD), "learnable": True})):
        with pytest.raises(TgdferError, match="sha256"):
            train(head, _cfg(reference_store, tmp_path / f"w{head.learnable}", end_to_end=True), encoder=wrong)


def test_end_to_end_never_reads_the_stored_features(reference_store, encoder_cfg, tmp_path, monkeypatch):
    """Training encodes frames and evaluation re-encodes view 0, so the store's feats array stays unread."""
    def refuse(self, *a, **k):
        raise AssertionError("end-to-end read the stored features")

    monkeypatch.setattr(FeatureStore, "read_feats", refuse)
    out = tmp_path / "noread"
    res = train(HEAD, _cfg(reference_store, out, end_to_end=True, epochs=1), encoder=encoder_cfg)
    assert np.isfinite(res.history["loss"]).all()
    run = load_run(out, device="cpu")  # evaluate's path too
    assert run.feats.shape[0] == len(run.labels) and run.feats[run.test].abs().sum() > 0


def test_end_to_end_resume_continues_exactly(reference_store, encoder_cfg, tmp_path):
    """last.safetensors carries the fine-tuned tower and its optimiser state: 1 + 1 epochs equal 2 epochs."""
    straight = train(HEAD, _cfg(reference_store, tmp_path / "a", end_to_end=True, encoder_lr=0.05), encoder=encoder_cfg)
    train(HEAD, _cfg(reference_store, tmp_path / "b", end_to_end=True, encoder_lr=0.05, epochs=1), encoder=encoder_cfg)
    resumed = train(HEAD, _cfg(reference_store, tmp_path / "b", end_to_end=True, encoder_lr=0.05), resume=True,
                    encoder=encoder_cfg)
    np.testing.assert_allclose(resumed.history["loss"], straight.history["loss"], rtol=1e-5)
    a, b = load_checkpoint(tmp_path / "a" / "last.safetensors"), load_checkpoint(tmp_path / "b" / "last.safetensors")
    for k, v in a["encoder_state"].items():
        torch.testing.assert_close(b["encoder_state"][k], v, msg=k)
