"""Stage 2: the trainer on a small store whose features carry a planted, frame-local class signal."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from tgdfer.devicedata import split_rows
from tgdfer.encoders import EncoderConfig, load_encoder
from tgdfer.errors import ConfigError, TgdferError
from tgdfer.evaluation import rescore, results_table
from tgdfer.extraction import write_text_features
from tgdfer.head import HeadConfig
from tgdfer.metrics import REFERENCE_PROTOCOL
from tgdfer.run import Replica, load_checkpoint, replica_runs
from tgdfer.store import FeatureStore
from tgdfer.training import TrainConfig, TrainingDiverged, epoch_order, parse_int_list, train, train_replicas
from tgdfer.views import distinct_views

from smallhead import SMALL_HEAD_SET, small_head

N, V, T = 105, 3, 16


def make_planted_store(path, folds, seed=0, fingerprint=None):
    """len(folds) clips, one per entry of `folds` (its test fold), class signal in 5 of 16 frames, tiny text tower."""
    enc = load_encoder(EncoderConfig(model="tgdfer-tiny-vit", pretrained="none"), towers=("text",))
    d = enc.embed_dim
    rng = np.random.default_rng(seed)
    N = len(folds)
    labels = np.arange(N) % 7
    clips = pd.DataFrame({
        "clip_id": [f"{i:05d}" for i in range(1, N + 1)], "path": [f"/nowhere/{i}" for i in range(N)],
        "label": labels, "fold": pd.array(folds, dtype="Int64"),
        "split": pd.array([pd.NA] * N, dtype="string"), "n_frames": pd.array([T] * N, dtype="Int64")})
    means = rng.normal(size=(7, d))
    feats = rng.normal(size=(N, V, T, d))
    for i, label in enumerate(labels):
        start = rng.integers(0, T - 5)
        feats[i, :, start:start + 5] += means[label]
    with FeatureStore.create(path, clips=clips, views=V, frames=T, dim=d,
                             fingerprint={"encoder": enc.fingerprint, **(fingerprint or {})}) as store:
        store.write_clips(np.arange(N), feats.astype(np.float16), np.zeros((N, V, T), np.int32))
        write_text_features(store, enc, None)
    return path


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    """105 clips (15 per class, 3 per class and fold), class signal in 5 of 16 frames, tiny text tower."""
    return make_planted_store(tmp_path_factory.mktemp("planted") / "s.zarr", np.tile(np.arange(1, 6), 21))


def cfg(store, out, **kw):
    base = dict(store=str(store), fold=1, out=str(out), epochs=6, batch_size=16, milestones=(5,))
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("learnable", [False, True])
def test_learns_the_planted_signal(planted_store, tmp_path, learnable):
    res = train(small_head(learnable=learnable), cfg(planted_store, tmp_path / "run"))
    assert res.test.war > 0.6 and res.test.uar > 0.6  # chance is 1/7 (measured: 0.86-1.0, as with the paper's sizes)
    assert res.history["loss"].iloc[-1] < res.history["loss"].iloc[0]
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["selection"] == "final" and final["selected_epoch"] == 6 and final["n_test"] == 21
    assert len(pd.read_csv(tmp_path / "run" / "metrics.csv")) == 6


def test_same_seed_same_run_and_resume_continues_exactly(planted_store, tmp_path):
    head = small_head(learnable=False)
    a = train(head, cfg(planted_store, tmp_path / "a", epochs=4))
    b = train(head, cfg(planted_store, tmp_path / "b", epochs=2))
    b = train(head, cfg(planted_store, tmp_path / "b", epochs=4), resume=True)
    cols = ["loss", "train_acc", "test_war", "test_uar"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols])
    sa, sb = (load_checkpoint(tmp_path / r / "last.safetensors")["head_state"] for r in "ab")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(TgdferError, match="resume=True"):
        train(head, cfg(planted_store, tmp_path / "a", epochs=4))


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(planted_store, tmp_path, monkeypatch):
    import tgdfer.training as tr

    calls = {"n": 0}
    real = tr.F.cross_entropy

    def flaky(logits, y, **kw):
        calls["n"] += 1
        loss = real(logits, y, **kw)
        return loss * float("nan") if calls["n"] > 7 else loss  # 6 steps per epoch: dies in epoch 2, step 1

    monkeypatch.setattr(tr.F, "cross_entropy", flaky)
    with pytest.raises(TrainingDiverged, match="epoch 2, step 1.*the last good checkpoint is kept in"):
        train(small_head(learnable=False), cfg(planted_store, tmp_path / "run"))
    assert load_checkpoint(tmp_path / "run" / "last.safetensors")["epoch"] == 1


def test_a_run_diverging_at_its_first_step_steps_no_lr_schedule(planted_store, tmp_path, monkeypatch):
    """No optimiser step happened, so the schedule must not step either (torch warns when it does:
    "lr_scheduler.step() before optimizer.step()"; the NaN-view run of the test below showed it)."""
    import warnings

    import tgdfer.training as tr

    real = tr.F.cross_entropy
    monkeypatch.setattr(tr.F, "cross_entropy", lambda logits, y, **kw: real(logits, y, **kw) * float("nan"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDiverged, match="epoch 1, step 0.*no epoch finished, so .* holds no checkpoint"):
            train(small_head(learnable=False), cfg(planted_store, tmp_path / "run"))
    assert not [w for w in seen if "lr_scheduler" in str(w.message)], [str(w.message) for w in seen]
    assert not (tmp_path / "run" / "last.safetensors").exists()  # nothing to keep: no epoch ended


def test_validation_split_is_stratified_and_disjoint(planted_store):
    clips = FeatureStore.open(planted_store).clips
    train_rows, val, test = split_rows(clips, np.ones(N, bool), 1, "val", 0.25, seed=0)
    assert not (set(train_rows) & set(val)) and not (set(val) & set(test)) and not (set(train_rows) & set(test))
    assert len(train_rows) + len(val) + len(test) == N
    assert np.bincount(clips["label"].to_numpy()[val], minlength=7).tolist() == [3] * 7  # 25% of 12 per class


def test_selection_protocols_and_evaluate_rescoring(planted_store, tmp_path):
    head = small_head(learnable=False)
    val = train(head, cfg(planted_store, tmp_path / "val", selection="val", val_fraction=0.2, epochs=4))
    assert (tmp_path / "val" / "best.safetensors").exists() and val.protocol.startswith("best epoch on a validation")
    again = rescore(tmp_path / "val", device="cpu")
    assert again.epoch == val.selected_epoch and again.test.war == pytest.approx(val.test.war)
    train(head, cfg(planted_store, tmp_path / "ref", selection="test-best", epochs=3))
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
    assert not (tmp_path / "run" / "last.safetensors").exists()


# -- replicas: folds x seeds trained together ---------------------------------------------------------

# Folds of 10, 20 and 40 clips: training sets of 60, 50 and 30 clips take 4, 4 and 2 steps of 16
# (last batches 12, 2, 14), so batches are ragged and fold 3 sits out two steps of every epoch.
UNEVEN = np.array([1] * 10 + [2] * 20 + [3] * 40)


@pytest.fixture(scope="module")
def uneven_store(tmp_path_factory):
    return make_planted_store(tmp_path_factory.mktemp("uneven") / "u.zarr", UNEVEN, seed=1)


def _uneven_cfg(store, tmp_path, **kw):
    # a large weight decay: a replica without a batch that SGD still moved would be far off
    return cfg(store, tmp_path / "unused", epochs=2, milestones=(1,), weight_decay=0.05, **kw)


def _state(run):
    return load_checkpoint(run / "last.safetensors")["head_state"]


@pytest.mark.parametrize("learnable", [False, True])
def test_replicas_trained_together_equal_each_replica_trained_alone(uneven_store, tmp_path, learnable):
    head = small_head(learnable=learnable)
    base = _uneven_cfg(uneven_store, tmp_path, selection="val", val_fraction=0.2)
    reps = [Replica(fold, seed, str(tmp_path / f"b{fold}")) for fold, seed in ((1, 5), (2, 6), (3, 7))]
    together = train_replicas(head, base, reps)
    for rep, res in zip(reps, together):
        alone = train(head, replace(base, fold=rep.fold, seed=rep.seed, out=str(tmp_path / f"a{rep.fold}")))
        cols = ["loss", "train_acc", "test_war", "test_uar", "val_war"]
        pd.testing.assert_frame_equal(res.history[cols], alone.history[cols], check_exact=True)
        assert res.selected_epoch == alone.selected_epoch and res.test.war == alone.test.war
        a, b = _state(tmp_path / f"a{rep.fold}"), _state(res.run)
        assert a.keys() == b.keys()
        for k in a:  # a normal 1-replica state dict, the same weights to the bit (batches padded to one width)
            assert a[k].shape == b[k].shape
            assert torch.equal(b[k], a[k]), k
        final = json.loads((res.run / "final.json").read_text())
        assert final["fold"] == rep.fold and final["seed"] == rep.seed
        assert final["n_train"] + final["n_val"] == len(UNEVEN) - (UNEVEN == rep.fold).sum()
        recorded = json.loads((res.run / "config.json").read_text())["train"]
        assert (recorded["fold"], recorded["seed"], recorded["out"]) == (rep.fold, rep.seed, rep.out)
    assert not torch.equal(_state(tmp_path / "b1")["fusion.0.weight"], _state(tmp_path / "b2")["fusion.0.weight"])


def test_batched_run_resumes_exactly_and_its_runs_rescore(uneven_store, tmp_path):
    head = small_head(learnable=False)
    base = _uneven_cfg(uneven_store, tmp_path)
    full = train_replicas(head, base, replica_runs(tmp_path / "full", [1, 2, 3], [0]))
    part = replica_runs(tmp_path / "part", [1, 2, 3], [0])
    train_replicas(head, replace(base, epochs=1), part)
    with pytest.raises(TgdferError, match="resume=True"):
        train_replicas(head, base, part)
    resumed = train_replicas(head, base, part, resume=True)
    for a, b in zip(full, resumed):
        pd.testing.assert_frame_equal(a.history.drop(columns=["seconds", "clips_per_s"]),
                                      b.history.drop(columns=["seconds", "clips_per_s"]))
        sa, sb = _state(a.run), _state(b.run)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        again = rescore(a.run, device="cpu")  # `tgdfer evaluate` reads a replica's folder unchanged
        assert again.fold == int(a.run.name[-1]) and again.test.war == pytest.approx(a.test.war)


def test_replicas_resumed_at_different_epochs_train_in_groups(uneven_store, tmp_path):
    head = small_head(learnable=False)
    base = _uneven_cfg(uneven_store, tmp_path)
    reps = replica_runs(tmp_path / "r", [1, 3], [0])
    train(head, replace(base, fold=1, out=reps[0].out, epochs=1))  # fold 1 stopped after epoch 1, fold 3 never ran
    seen = []
    results = train_replicas(head, base, reps, resume=True, on_epoch=lambda e, recs: seen.append((e, len(recs))))
    assert seen == [(2, 1), (1, 1), (2, 1)]
    alone = train(head, replace(base, fold=3, out=str(tmp_path / "alone3")))
    assert results[1].history["loss"].tolist() == pytest.approx(alone.history["loss"].tolist(), rel=1e-5)


def test_a_diverging_replica_stops_alone(uneven_store, tmp_path, monkeypatch):
    import tgdfer.training as tr

    real = tr.replica_losses
    epochs = iter([1] * 4 + [2] * 4)  # 4 steps an epoch (the longest replica)

    def poisoned(logits, y, mask):
        losses = real(logits, y, mask)
        return losses * torch.tensor([1.0, float("nan"), 1.0]) if next(epochs) == 2 else losses

    monkeypatch.setattr(tr, "replica_losses", poisoned)
    reps = replica_runs(tmp_path, [1, 2, 3], [0])
    with pytest.raises(TrainingDiverged, match="fold 2 seed 0: loss is nan at epoch 2, step 0") as e:
        train_replicas(small_head(learnable=False), _uneven_cfg(uneven_store, tmp_path), reps)
    assert "fold 1" not in str(e.value) and "fold 3" not in str(e.value)
    assert (tmp_path / "fold1" / "final.json").exists() and (tmp_path / "fold3" / "final.json").exists()
    assert not (tmp_path / "fold2" / "final.json").exists()
    assert load_checkpoint(tmp_path / "fold2" / "last.safetensors")["epoch"] == 1
    assert len(pd.read_csv(tmp_path / "fold3" / "metrics.csv")) == 2


@pytest.mark.parametrize("field,value", [("seed", -1), ("seed", 2**64), ("seed", True), ("lr", float("inf")),
                                         ("lr", float("nan")), ("gamma", 0.0)])
def test_seeds_and_rates_out_of_range_are_config_errors(field, value):
    with pytest.raises(ConfigError) as e:  # numpy and torch refused them mid-run with a bare ValueError
        TrainConfig(**{field: value})
    assert e.value.field == field


def test_a_seed_out_of_range_on_the_command_line_is_one_error_line(tmp_path):
    from typer.testing import CliRunner

    from tgdfer.cli import app

    result = CliRunner().invoke(app, ["train-head", "--seed", "-1", "--set", f"train.out='{tmp_path / 'run'}'"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "seed" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_fold_and_seed_lists():
    assert parse_int_list("1-5", "folds") == [1, 2, 3, 4, 5]
    assert parse_int_list("1,3, 5", "folds") == [1, 3, 5] and parse_int_list("1-2,4", "folds") == [1, 2, 4]
    for bad in ("1-", "a", "3-1", "1,1"):
        with pytest.raises(ConfigError):
            parse_int_list(bad, "folds")
    assert [r.out for r in replica_runs("runs/x", [1, 2], [0])] == ["runs/x/fold1", "runs/x/fold2"]
    assert [r.out for r in replica_runs("runs/x", [1], [0, 1])] == ["runs/x/fold1_seed0", "runs/x/fold1_seed1"]
    assert [r.out for r in replica_runs("runs/x", [], [0])] == ["runs/x"]
    assert [(r.fold, r.seed) for r in replica_runs("r", [None], [3, 4])] == [(None, 3), (None, 4)]


@pytest.fixture(scope="module")
def two_epochs(planted_store, tmp_path_factory):
    """The uninterrupted 2-epoch run every resumed run must equal."""
    return train(small_head(learnable=False), cfg(planted_store, tmp_path_factory.mktemp("full") / "run", epochs=2))


@pytest.mark.parametrize("section, change", [
    ("train", {"lr": 5e-3}), ("train", {"seed": 1}), ("head", {"visual_prompt": "none"}), ("head", {"window": 2}),
], ids=["lr", "seed", "visual_prompt", "window"])
def test_resume_refuses_changed_settings_then_resumes_with_its_own(planted_store, tmp_path, two_epochs, section,
                                                                   change):
    head, out = small_head(learnable=False), tmp_path / "run"
    train(head, cfg(planted_store, out, epochs=1))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    changed_head = replace(head, **change) if section == "head" else head
    changed_cfg = cfg(planted_store, out, epochs=2, **(change if section == "train" else {}))
    (key, value), = change.items()
    with pytest.raises(TgdferError, match=rf"{section}\.{key}: .* then, {value!r} now"):
        train(changed_head, changed_cfg, resume=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # config.json and checkpoints untouched
    resumed = train(head, cfg(planted_store, out, epochs=2, device="cpu"), resume=True)  # device may differ
    cols = ["loss", "train_acc", "test_war", "test_uar"]
    pd.testing.assert_frame_equal(two_epochs.history[cols], resumed.history[cols])


def test_resume_refuses_fewer_epochs_and_another_store_and_cli_exits_2(planted_store, tmp_path):
    from typer.testing import CliRunner

    from tgdfer.cli import app

    head, out = small_head(learnable=False), tmp_path / "run"
    train(head, cfg(planted_store, out, epochs=2))
    with pytest.raises(TgdferError, match="train.epochs: '2 already trained' then, 1 now"):
        train(head, cfg(planted_store, out, epochs=1), resume=True)
    other = make_planted_store(tmp_path / "other.zarr", np.tile(np.arange(1, 6), 21), seed=1,
                               fingerprint={"sampling": {"seed": 1}})
    with pytest.raises(TgdferError, match="store fingerprint"):
        train(head, cfg(other, out, epochs=3), resume=True)
    config = (out / "config.json").read_bytes()
    result = CliRunner().invoke(app, ["train-head", "--set", f'train.store="{planted_store}"', "--set",
                                      "head.learnable=false", *SMALL_HEAD_SET, "--set", "train.lr=0.5", "--set",
                                      "train.batch_size=16", "--set", "train.milestones=[5]", "--out", str(out),
                                      "--fold", "1", "--epochs", "3", "--device", "cpu", "--resume"])
    assert result.exit_code == 2 and "train.lr" in result.output and "Traceback" not in result.output, result.output
    assert (out / "config.json").read_bytes() == config


def test_epoch_order_draws_a_view_per_clip_or_per_frame():
    rows = np.arange(50)
    order, view = epoch_order(rows, 4, seed=3, epoch=2)
    assert sorted(order) == list(rows) and view.shape == (50,) and set(view) <= {1, 2, 3}
    order2, per_frame = epoch_order(rows, 4, seed=3, epoch=2, frames=16)
    assert np.array_equal(order, order2) and per_frame.shape == (50, 16) and set(per_frame.ravel()) == {1, 2, 3}
    assert (per_frame != per_frame[:, :1]).any(axis=1).mean() > 0.9  # frames of a clip come from different views


def _views_by_epoch(rows: np.ndarray, views: int, epochs: int, draw: str) -> np.ndarray:
    """The view each row trains on in epochs 1..epochs: [epochs, rows]."""
    out = []
    for e in range(1, epochs + 1):
        order, view = epoch_order(rows, views, seed=5, epoch=e, draw=draw)
        by_row = dict(zip(order.tolist(), view.tolist()))
        out.append([by_row[r] for r in rows.tolist()])
    return np.array(out)


def test_cycle_gives_each_clip_every_view_once_per_turn_in_its_own_order():
    rows, n_aug = np.arange(40), 6
    seen = _views_by_epoch(rows, n_aug + 1, 2 * n_aug, "cycle")  # [epochs, rows]
    for turn in (seen[:n_aug], seen[n_aug:]):  # every view exactly once per clip in each turn of V-1 epochs
        assert (np.sort(turn, axis=0) == np.arange(1, n_aug + 1)[:, None]).all()
    assert len({tuple(seen[:n_aug, r]) for r in range(len(rows))}) > 30  # clips walk different orders
    assert (seen[:n_aug] != seen[n_aug:]).any()  # and a new order each turn
    # a clip's views do not depend on which other clips are trained (the replicas of a sweep differ)
    order, few = epoch_order(np.array([3, 17]), n_aug + 1, seed=5, epoch=4, draw="cycle")
    assert dict(zip(order.tolist(), few.tolist())) == {3: seen[3, 3], 17: seen[3, 17]}
    # the default draw is what it was: an independent draw per clip and epoch (views repeat)
    random = _views_by_epoch(rows, n_aug + 1, n_aug, "random")
    assert (np.sort(random, axis=0) != np.arange(1, n_aug + 1)[:, None]).any()
    with pytest.raises(ConfigError, match="view_draw"):
        TrainConfig(view_draw="cycle", view_mixing="frame")


def test_distinct_views_matches_a_simulation_of_each_draw():
    rows, V, E = np.arange(300), 9, 12
    for draw in ("random", "cycle"):
        views = _views_by_epoch(rows, V, E, draw)
        measured = np.mean([len(set(views[:, r])) for r in range(len(rows))])
        assert abs(measured - distinct_views(V, E, draw)) < 0.15, (draw, measured)
    assert distinct_views(V, E, "cycle") == 8 and distinct_views(51, 50, "cycle") == 50
    assert 31.5 < distinct_views(51, 50) < 32.0 and distinct_views(1, 50) == 0


def test_train_views_limits_the_cached_views_and_frame_mixing_reads_per_frame(planted_store, tmp_path, monkeypatch):
    """View 2 of a copy of the planted store is NaN: views=1 never reads it, the default (all views) does.
    (Loading would refuse NaN features as damage, tests/test_integrity.py; here the plain read stands in.)"""
    monkeypatch.setattr(FeatureStore, "read_feats_verified", lambda self: self.read_feats())
    poisoned = tmp_path / "p.zarr"
    shutil.copytree(planted_store, poisoned)
    with FeatureStore.open(poisoned, mode="r+") as s:
        feats = s.read_feats()
        feats[:, 2] = np.nan
        s.write_clips(np.arange(s.n_clips), feats, s.read_frame_index())
    head = small_head(learnable=False)
    one = train(head, cfg(poisoned, tmp_path / "one", epochs=2, views=1))
    assert np.isfinite(one.history["loss"]).all()
    with pytest.raises(TrainingDiverged):
        train(head, cfg(poisoned, tmp_path / "all", epochs=2))
    with pytest.raises(TrainingDiverged):
        train(head, cfg(poisoned, tmp_path / "frame", epochs=2, view_mixing="frame"))
    framed = train(head, cfg(poisoned, tmp_path / "framed1", epochs=2, views=1, view_mixing="frame"))
    pd.testing.assert_frame_equal(one.history[["loss", "test_war"]], framed.history[["loss", "test_war"]])
    with pytest.raises(ConfigError, match="views: 3 augmented views asked for, but .* holds 2"):
        train(head, cfg(poisoned, tmp_path / "x", views=3))


def test_drop_last_skips_each_epochs_partial_batch(planted_store, tmp_path, monkeypatch):
    """84 training clips, batch 16: 6 steps with the last 4 clips, 5 full steps with drop_last."""
    import tgdfer.training as tr

    seen = []
    real = tr.replica_losses

    def spy(logits, y, mask):
        seen.append(int(mask.sum()))
        return real(logits, y, mask)

    monkeypatch.setattr(tr, "replica_losses", spy)
    head = small_head(learnable=False)
    train(head, cfg(planted_store, tmp_path / "keep", epochs=1))
    assert seen == [16] * 5 + [4]
    seen.clear()
    train(head, cfg(planted_store, tmp_path / "drop", epochs=1, drop_last=True))
    assert seen == [16] * 5


def test_coarse_prompt_with_learnable_context_is_trained_in_the_prompt_group(planted_store, tmp_path):
    """The paper's literal X^CP: class names with their own learnable context, lr of the prompt group."""
    from tgdfer.training import make_optimizer

    head_cfg = small_head(learnable=False, coarse_learnable=True, coarse_text="class_names")
    res = train(head_cfg, cfg(planted_store, tmp_path / "run", epochs=2))
    state = load_checkpoint(tmp_path / "run" / "last.safetensors")["head_state"]
    assert state["coarse_prompt.ctx"].shape[:3] == (1, 7, 8) and np.isfinite(res.history["loss"]).all()
    with FeatureStore.open(planted_store) as store:
        from tgdfer.model import build_head

        head = build_head(head_cfg, store, torch.device("cpu"), 0)
    opt, _ = make_optimizer(head, cfg(planted_store, tmp_path / "x"))
    prompt_group = next(g for g in opt.param_groups if any(p is head.coarse_prompt.ctx for p in g["params"]))
    assert prompt_group["lr"] == pytest.approx(1e-3)


def test_training_leaves_the_callers_global_generator_where_it_was(planted_store, tmp_path):
    torch.manual_seed(123)
    torch.rand(2)
    expected = torch.rand(3)  # what the caller's stream gives next without training in between
    torch.manual_seed(123)
    torch.rand(2)
    train(small_head(learnable=False), cfg(planted_store, tmp_path / "run", epochs=1))
    assert torch.equal(torch.rand(3), expected)  # it gave torch.manual_seed(0)'s stream before


def test_a_fold_missing_from_the_store_says_what_the_store_has_instead():
    """--fold/--folds on a store of FERV39k's train/test split names the split and how to train on it."""
    from types import SimpleNamespace

    from tgdfer.devicedata import check_fold

    def store(fold, split):  # clips: [N] rows of the store's clip table
        return SimpleNamespace(path="s.zarr", clips=pd.DataFrame({"fold": fold, "split": split}))

    with pytest.raises(ConfigError) as e:
        check_fold(store([None, None], ["train", "test"]), 1)
    assert e.value.field == "fold" and "fold 1 is not in s.zarr (no folds: its clips have a train/test split; " \
        "train without --fold/--folds" in str(e.value)
    with pytest.raises(ConfigError, match=r"fold 2 is not in s.zarr \(folds: \[1\]\)$"):
        check_fold(store([1.0, 1.0], [None, None]), 2)  # --folds 1-5 on a store of one fold
    with pytest.raises(ConfigError, match="no row has a fold or a split"):
        check_fold(store([None, None], [None, None]), 1)
    check_fold(store([None, None], ["train", "test"]), None)
