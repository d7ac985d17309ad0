"""Crafted files that used to end in a traceback: each is one line naming the file, and exit code 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save
from test_limits import zip_bomb
from test_readers import video, write
from test_train import make_planted_store
from typer.testing import CliRunner

from tgdfer.checkpoint import FORMAT, save_state
from tgdfer.cli import app
from tgdfer.tmpfiles import remove_stale

runner = CliRunner()


def one_line(args, *words):
    """Run the CLI; the error must be one `error:` line (the console may wrap it), exit code 2."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    flat = "".join(result.output.split())  # the console wraps long lines anywhere
    for w in words:
        assert "".join(w.split()) in flat, (w, result.output)
    return flat


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_planted_store(tmp_path_factory.mktemp("planted") / "s.zarr", np.tile(np.arange(1, 3), 7))


@pytest.fixture
def copy(store, tmp_path):
    """A fresh copy of the planted store to damage."""
    import shutil

    dest = tmp_path / "s.zarr"
    shutil.copytree(store, dest)
    return dest


def edit_attrs(path: Path, change) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    change(meta["attributes"])
    (path / "zarr.json").write_text(json.dumps(meta))


def test_binary_toml_pipeline(tmp_path):
    config = tmp_path / "c.toml"
    config.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    one_line(["check", config], "c.toml", "not UTF-8 text")
    one_line(["train-head", "-c", config], "not UTF-8 text")


def _tiny_extract_config(tmp_path, weights: Path) -> Path:
    data = tmp_path / "data"
    video(data / "a.mp4", 4)
    lst = write(data / "test.txt", "a.mp4 4 0\n")
    return write(tmp_path / "x.toml", f"""
[data]
kind = "list"
args = {{ files = {json.dumps(str(lst))}, frame_cache = "none" }}
[encoder]
model = "tgdfer-tiny-vit"
pretrained = {json.dumps(str(weights))}
[extract]
store = {json.dumps(str(tmp_path / "out.zarr"))}
device = "cpu"
workers = 0
""")


@pytest.mark.parametrize("content", [b"", b"\x20\x00\x00\x00\x00\x00\x00\x00{\"x\": {\"dtype\": 5}}     "])
def test_empty_or_malformed_safetensors_as_pretrained(tmp_path, content):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(content)
    one_line(["extract", "-c", _tiny_extract_config(tmp_path, weights)], "w.safetensors")


def test_zip_bomb_as_pretrained(tmp_path):
    bomb = zip_bomb(tmp_path / "bomb.pt")
    one_line(["extract", "-c", _tiny_extract_config(tmp_path, bomb)], "bomb.pt", "archive_ratio")


def _checkpoint(path: Path, skeleton_text: str) -> Path:
    path.write_bytes(save({}, metadata={"format": FORMAT, "tgdfer_state": skeleton_text}))
    return path


def _header(**changes) -> dict:
    head = {"head_state": {}, "epoch": 3, "history": [], "best": [0.0, 1], "config": {"head": {}},
            "head_args": {"dim": 8, "frames": 16, "classes": 7}, "store_fingerprint": {"sampling": {"frames": 16}}}
    return {**head, **changes}


@pytest.mark.parametrize("header, words", [
    (json.dumps(_header(epoch="abc")), ["epoch is 'abc', not an integer"]),
    (json.dumps(_header(head_args={"dim": 8, "frames": 10**8, "classes": 7})), ["100,000,000 frames", "clip_frames"]),
    (json.dumps(_header(head_args={"dim": 8, "frames": 1e8, "classes": 7})), ["frames is 100000000.0"]),
    (json.dumps(_header(store_fingerprint={"sampling": {"frames": 10**9}})), ["clip_frames"]),
    ('{"head_state": {}, "deep": ' + "[" * 900 + "]" * 900 + "}", ["json_depth"]),
    ('{"head_state": {', ["not valid JSON"]),
])
def test_crafted_checkpoint_headers(tmp_path, header, words):
    ckpt = _checkpoint(tmp_path / "last.safetensors", header)
    clip = video(tmp_path / "a.mp4", 4)
    one_line(["predict", ckpt, clip, "--device", "cpu"], "last.safetensors", *words)


def test_zero_byte_checkpoint(tmp_path):
    ckpt = tmp_path / "last.safetensors"
    ckpt.write_bytes(b"")
    one_line(["predict", ckpt, video(tmp_path / "a.mp4", 4), "--device", "cpu"], "last.safetensors")


@pytest.mark.parametrize("change, words", [
    (lambda a: a["tgdfer_store"]["clip_columns"][0].update(dtype="not_a_dtype"), ["clip column", "not_a_dtype"]),
    (lambda a: a["tgdfer_store"].update(frames=10**9), ["clip_frames"]),
    (lambda a: a["tgdfer_store"].update(frames=17), ["feats array is (14, 3, 16"]),
    (lambda a: a["tgdfer_store"].update(frames=1e9), ["not a positive integer"]),
    (lambda a: a["fingerprint"].update(deep=json.loads("[" * 900 + "]" * 900)), ["json_depth"]),
])
def test_crafted_store_attributes(copy, change, words):
    edit_attrs(copy, change)
    one_line(["info", copy], "s.zarr", *words)
    one_line(["train-head", "--set", f'train.store="{copy}"', "--fold", "1", "--device", "cpu",
              "--out", copy.parent / "run"], *words)


def test_pickle_codec_in_store_metadata_is_refused_not_imported(copy, tmp_path):
    meta = json.loads((copy / "done" / "zarr.json").read_text())
    meta["codecs"] = [{"name": "numcodecs.pickle"}]
    (copy / "done" / "zarr.json").write_text(json.dumps(meta))
    one_line(["info", copy], "done/zarr.json", "numcodecs.pickle", "refused")
    (copy / "done" / "zarr.json").unlink()
    (copy / "done" / ".zarray").write_text(json.dumps({"filters": [{"id": "pickle"}]}))
    one_line(["info", copy], ".zarray", "refused")


def test_failure_row_out_of_range(copy):
    (copy / "failures").mkdir(exist_ok=True)
    (copy / "failures" / "writer_0.json").write_text(json.dumps(
        {"writer": 0, "failures": [{"row": 10**12, "clip_id": "x", "reason": "r"}]}))
    one_line(["info", copy], "row 1000000000000", "damaged failure table")


def test_temporary_file_of_a_killed_checkpoint_write_is_removed_by_the_next(tmp_path):
    target = tmp_path / "last.safetensors"
    dead = 2**22 + 12345  # above the default pid_max: no process has it
    killed = tmp_path / f".last.safetensors.{dead}.tmp"
    killed.write_bytes(b"half a checkpoint")
    live = tmp_path / f".last.safetensors.{os.getppid()}.tmp"  # a live process's write in progress: kept
    live.write_bytes(b"")
    other = tmp_path / f".best.safetensors.{dead}.tmp"  # another file's: left to that file's next write
    other.write_bytes(b"")
    save_state(target, {"head_state": {}, "epoch": 1})
    assert target.is_file() and not killed.exists() and live.exists() and other.exists()
    assert remove_stale(tmp_path / "best.safetensors") == [other] and not other.exists()


def _set_shape(meta_path: Path, shape) -> None:
    meta = json.loads(meta_path.read_text())
    meta["shape"] = shape
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, words", [
    (lambda p: _set_shape(p / "done" / "zarr.json", [10**9]), ["done array is (1000000000,)"]),
    (lambda p: _set_shape(p / "frame_index" / "zarr.json", [14, 3, 10**6]), ["frame_index array"]),
    (lambda p: (p / "clips.csv").write_text((p / "clips.csv").read_text().rsplit("\n", 2)[0] + "\n"),
     ["clip table has 13 rows", "14 clips"]),
])
def test_array_shapes_and_clip_count_must_match_the_attributes(copy, damage, words):
    damage(copy)
    one_line(["info", copy], "s.zarr", *words)


def test_text_set_shapes_are_checked_before_reading(copy):
    from tgdfer.errors import TgdferError
    from tgdfer.store import FeatureStore

    name = sorted(p.name for p in (copy / "text").iterdir() if p.is_dir())[0]
    _set_shape(copy / "text" / name / "tokens" / "zarr.json", [10**6, 10**6])
    with FeatureStore.open(copy) as s, pytest.raises(TgdferError, match="tokens \\(1000000, 1000000\\)"):
        s.text(name)


def test_deep_run_records_are_one_line(tmp_path):
    from tgdfer.errors import TgdferError
    from tgdfer.run import check_resume, load_run_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("[" * 900 + "]" * 900)
    with pytest.raises(TgdferError, match="json_depth"):
        load_run_config(run)
    save_state(run / "last.safetensors", _header())
    with pytest.raises(TgdferError, match="json_depth"):
        check_resume(run, {}, {})
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(TgdferError, match="not a JSON object"):
        load_run_config(run)
