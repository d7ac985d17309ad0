"""The `tgdfer` CLI through typer's CliRunner: commands listed, synth end to end, user errors."""

import json

import pytest
from typer.testing import CliRunner

from tgdfer.cli import app

from smallhead import SMALL_HEAD_SET

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "extract", "info", "demo"):
        assert command in result.output


def test_synth_writes_the_dataset_and_prints_its_summary(tmp_path):
    out = tmp_path / "s"
    result = runner.invoke(app, ["synth", str(out), "--clips", "14", "--size", "32", "--workers", "1",
                                 "--set", "synth.min_frames=6", "--set", "synth.max_frames=12"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["clips"] == 14 and meta["config"]["size"] == 32
    assert len(list((out / "videos").glob("*.mp4"))) == 14
    assert "total" in result.output and "Happiness" in result.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["--clips", "0"], "synth.clips"),
        (["--set", "synth.sise=3"], "synth.sise"),
        (["--set", "nosuch.x=1"], "nosuch"),
        (["--format", "gif"], "synth.format"),
        (["--config", "missing.toml"], "missing.toml"),
    ],
)
def test_bad_options_name_the_field_without_traceback(tmp_path, args, words):
    result = runner.invoke(app, ["synth", str(tmp_path / "s"), *args])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output


def test_synth_refuses_a_non_empty_folder_and_keeps_its_content(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    result = runner.invoke(app, ["synth", str(tmp_path), "--clips", "7"])
    assert result.exit_code == 2
    assert "overwrite" in result.output
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_info_on_something_that_is_not_a_store(tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 2
    assert str(tmp_path) in result.output and "Traceback" not in result.output


def test_info_prints_the_summary_and_the_fingerprint_only_when_asked(reference_store):
    """issue 21 item 7: no 50 lines of fingerprint JSON before the summary; --verbose prints them after it."""
    plain = runner.invoke(app, ["info", str(reference_store)], terminal_width=200)
    assert plain.exit_code == 0, plain.output
    assert "clips per class" in plain.output and '"encoder"' not in plain.output
    assert "fingerprint: --verbose (or --json) prints it" in plain.output
    assert len(plain.output.splitlines()) < 40
    verbose = runner.invoke(app, ["info", str(reference_store), "--verbose"], terminal_width=200)
    assert verbose.exit_code == 0, verbose.output
    assert '"encoder"' in verbose.output
    assert verbose.output.index("clips per class") < verbose.output.index('"encoder"')  # summary first
    assert "clips per class" in plain.stdout and "clips per class" not in plain.stderr  # `info S > s.txt` keeps it
    missing = runner.invoke(app, ["info", str(reference_store.parent / "nope.zarr")])
    assert missing.exit_code == 2 and "error:" in missing.stderr and not missing.stdout  # errors stay on stderr


def _train_head(store, enc, out, *extra):
    return runner.invoke(app, ["train-head", "--set", f"train.store='{store}'", "--set", f"encoder.model='{enc.model}'",
                               "--set", f"encoder.pretrained='{enc.pretrained}'", "--set", "train.batch_size=8",
                               "--fold", "1", "--epochs", "2", "--device", "cpu", "--out", str(out), *SMALL_HEAD_SET,
                               *extra],
                         terminal_width=200)


def test_ctrl_c_in_train_head_says_where_the_epochs_are_and_resume_continues(reference_store, encoder_cfg, tmp_path,
                                                                             monkeypatch):
    from tgdfer import progress

    written = progress.LineLogger.__call__

    def ctrl_c_after_epoch_1(self, event):
        written(self, event)
        if event.stage == "train-head" and event.unit == "epoch" and event.done >= 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.LineLogger, "__call__", ctrl_c_after_epoch_1)
    for out, extra in ((tmp_path / "one", ()), (tmp_path / "many", ("--seeds", "0,1"))):
        stopped = _train_head(reference_store, encoder_cfg, out, *extra)
        assert stopped.exit_code == 130 and "Traceback" not in stopped.output, stopped.output
        assert (f"train-head: interrupted; every run keeps its last finished epoch in {out}: run the same command "
                "with --resume to continue") in " ".join(stopped.output.split())
    monkeypatch.setattr(progress.LineLogger, "__call__", written)
    resumed = _train_head(reference_store, encoder_cfg, tmp_path / "one", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "epoch 1/2" not in resumed.output and "epoch 2/2" in resumed.output  # epoch 1 was kept


def test_train_head_prints_each_epoch_once_and_no_empty_val_column(reference_store, encoder_cfg, tmp_path,
                                                                   monkeypatch):
    """issue 21 item 7: redirected, the per-epoch lines and not the same table after them; on a terminal the
    table, without an all-nan "val WAR" column when no validation split exists."""
    from tgdfer import cli

    redirected = _train_head(reference_store, encoder_cfg, tmp_path / "a")
    assert redirected.exit_code == 0, redirected.output
    assert "train-head: " not in redirected.output and "train acc" not in redirected.output  # the table's title, column
    assert sum("epoch 2/2" in ln for ln in redirected.output.splitlines()) == 1
    monkeypatch.setattr(cli.console, "_force_terminal", True)
    terminal = _train_head(reference_store, encoder_cfg, tmp_path / "b")
    assert terminal.exit_code == 0, terminal.output
    assert "train acc" in terminal.output and "val WAR" not in terminal.output and "nan" not in terminal.output
    validated = _train_head(reference_store, encoder_cfg, tmp_path / "c", "--set", "train.selection='val'",
                            "--set", "train.val_fraction=0.5")
    assert validated.exit_code == 0, validated.output
    assert "val WAR" in validated.output
