"""The `tgdfer` CLI through typer's CliRunner: commands listed, synth end to end, user errors."""

import json

import pytest
from typer.testing import CliRunner

from tgdfer.cli import app

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
