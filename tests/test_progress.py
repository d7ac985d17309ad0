"""Logs for batch jobs (issue 13 item 3): plain lines when stderr is no terminal, TensorBoard, callbacks."""

import io
import re
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.errors import ConfigError
from tgdfer.head import HeadConfig
from tgdfer.progress import LineLogger, ProgressEvent, Stage, as_callback, every_tenth
from tgdfer.training import TrainConfig, train

from smallhead import SMALL_HEAD_SET, small_head

runner = CliRunner()


def test_event_line_and_eta():
    e = ProgressEvent("train-head", 3, 20, "epoch", "x5 replicas", {"loss": 1.23456, "test_war": 0.4}, 12.0, eta=68.0)
    assert e.line() == "train-head x5 replicas epoch 3/20 loss 1.235 test_war 0.4 elapsed 0:00:12 ETA 0:01:08"
    events = []
    stage = Stage(events.append, "extract", 10, "clips", start=4)  # 4 units done before (resume)
    stage.update(4)
    stage.update(7)
    assert events[0].eta is None  # no unit done in this session yet: no pace
    assert events[1].eta == pytest.approx(events[1].elapsed / 3 * 3)
    assert [every_tenth(d, 25) for d in (1, 2, 3, 5, 25)] == [False, False, True, True, True]


def test_line_logger_writes_only_log_events_and_flushes():
    out = io.StringIO()
    log = LineLogger(stream=out)
    log(ProgressEvent("extract", 2, 8, "clips", log=False))
    log(ProgressEvent("extract", 4, 8, "clips"))
    assert out.getvalue().splitlines() == ["extract clips 4/8 elapsed 0:00:00"]


def test_tqdm_and_rich_bars_are_callbacks():
    from rich.console import Console
    from rich.progress import Progress
    from tqdm import tqdm

    bar = tqdm(file=io.StringIO())
    cb = as_callback(bar)
    cb(ProgressEvent("train-head", 2, 5, "epoch", metrics={"loss": 0.5}))
    assert (bar.n, bar.total) == (2, 5) and "train-head" in bar.desc and "loss=0.5" in str(bar)
    with Progress(console=Console(file=io.StringIO())) as progress:
        cb = as_callback(progress)
        cb(ProgressEvent("proxy image", 3, 10, "step"))
        cb(ProgressEvent("proxy text", 1, 4, "step"))
        tasks = {t.description.split()[0] + " " + t.description.split()[1]: t for t in progress.tasks}
        assert (tasks["proxy image"].completed, tasks["proxy image"].total) == (3, 10)
        assert (tasks["proxy text"].completed, tasks["proxy text"].total) == (1, 4)
    with pytest.raises(TypeError, match="ProgressEvent"):
        as_callback(42)


def _train_args(store, out, enc, *extra):
    return ["train-head", "--set", f"train.store='{store}'", "--set", f"encoder.model='{enc.model}'",
            "--set", f"encoder.pretrained='{enc.pretrained}'", "--set", "train.batch_size=8", "--device", "cpu",
            "--out", str(out), *SMALL_HEAD_SET, *extra]


def test_train_head_without_terminal_logs_one_line_per_epoch(tmp_path, reference_store, encoder_cfg):
    result = runner.invoke(app, _train_args(reference_store, tmp_path / "r", encoder_cfg, "--fold", "1",
                                            "--epochs", "3"))
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("train-head fold 1 seed 0 epoch")]
    assert [re.search(r"epoch (\d+)/3", ln).group(1) for ln in lines] == ["1", "2", "3"]
    history = pd.read_csv(tmp_path / "r" / "metrics.csv")
    for ln, loss in zip(lines, history["loss"]):
        assert f"loss {loss:.4g}" in ln and "test_war" in ln and "elapsed" in ln and "ETA" in ln
    assert not re.search(r"━+\s+\d+/\d+", result.output)  # no progress bar (bar, then done/total) in the log


def test_batched_replicas_log_their_mean(tmp_path, reference_store, encoder_cfg):
    result = runner.invoke(app, _train_args(reference_store, tmp_path / "many", encoder_cfg, "--folds", "1,2",
                                            "--epochs", "2"))
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("train-head x2 replicas epoch")]
    assert len(lines) == 2
    losses = [pd.read_csv(tmp_path / "many" / f"fold{k}" / "metrics.csv")["loss"].iloc[-1] for k in (1, 2)]
    assert f"loss {round(sum(losses) / 2, 4):.4g}" in lines[-1]


def test_extract_without_terminal_logs_one_line_per_block(tmp_path, synth_dir, encoder_cfg):
    store = tmp_path / "s.zarr"
    result = runner.invoke(app, [
        "extract", "--set", "data.kind='dfew'",
        "--set", f"data.args={{ split_dir = '{synth_dir / 'EmoLabel_DataSplit'}', frames_dir = '{synth_dir / 'frames'}' }}",
        "--set", f"encoder.model='{encoder_cfg.model}'", "--set", f"encoder.pretrained='{encoder_cfg.pretrained}'",
        "--store", str(store), "--views", "1", "--workers", "0", "--set", "extract.frames=4",
        "--set", "extract.batch_clips=2", "--set", "extract.block_size=8", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("extract clips")]
    assert [re.search(r"clips (\d+)/20", ln).group(1) for ln in lines] == ["8", "16", "20"]
    assert all("frames/s" in ln and "ETA" in ln for ln in lines)


def test_tensorboard_writes_the_epoch_scalars(tmp_path, reference_store, encoder_cfg):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    train(small_head(learnable=False), TrainConfig(store=str(reference_store), fold=1, out=str(out), epochs=2,
                                                   batch_size=8, device="cpu", tensorboard=True), encoder=encoder_cfg)
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    history = pd.read_csv(out / "metrics.csv")
    assert {"loss", "train_acc", "test_war", "test_uar", "lr", "clips_per_s"} <= set(acc.Tags()["scalars"])
    assert "val_war" not in acc.Tags()["scalars"]  # no validation split: NaN, left out
    assert [e.step for e in acc.Scalars("loss")] == [1, 2]
    assert [e.value for e in acc.Scalars("test_war")] == pytest.approx(history["test_war"].tolist(), abs=1e-6)


def test_tensorboard_missing_names_the_extra(tmp_path, reference_store, encoder_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    with pytest.raises(ConfigError, match=r"tgdfer\[tensorboard\]"):
        train(HeadConfig(learnable=False), TrainConfig(store=str(reference_store), fold=1, out=str(tmp_path / "x"),
                                                       epochs=1, device="cpu", tensorboard=True), encoder=encoder_cfg)
    assert not (tmp_path / "x").exists()  # refused before any work
    result = runner.invoke(app, _train_args(reference_store, tmp_path / "y", encoder_cfg, "--fold", "1",
                                            "--set", "train.tensorboard=true"))
    assert result.exit_code == 2 and "pip install 'tgdfer[tensorboard]'" in result.output


def test_python_progress_callback_gets_every_epoch(tmp_path, reference_store, encoder_cfg):
    events = []
    train(small_head(learnable=False), TrainConfig(store=str(reference_store), fold=1, out=str(tmp_path / "p"),
                                                   epochs=3, batch_size=8, device="cpu"),
          encoder=encoder_cfg, progress=events.append)
    assert [(e.stage, e.done, e.total, e.unit) for e in events] == [("train-head", k, 3, "epoch") for k in (1, 2, 3)]
    assert events[-1].eta == 0 and set(events[-1].metrics) == {"loss", "train_acc", "test_war", "test_uar"}


def test_on_a_terminal_a_bar_replaces_the_lines(tmp_path, reference_store, encoder_cfg, monkeypatch):
    from rich.console import Console

    import tgdfer.cli as cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=screen, force_terminal=True, width=150))
    result = runner.invoke(app, _train_args(reference_store, tmp_path / "t", encoder_cfg, "--fold", "1",
                                            "--epochs", "2"))
    assert result.exit_code == 0, result.output
    text = screen.getvalue()
    assert "train-head fold 1 seed 0" in text and "2/2" in text  # the bar: stage, detail, metrics, done/total
    assert not re.search(r"^train-head fold 1 seed 0 epoch \d/2", text, re.M)  # no plain lines
