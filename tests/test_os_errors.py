"""The operating system's refusals are one clear line and exit 2, and damage nothing already written.

Read-only folders are real: a read-only bind mount (as root, where permission bits do not bind)
or chmod 555 (as a normal user). A full disk is a real tmpfs of a few pages where mounting is
allowed; elsewhere the checkpoint writer's fsync is patched to fail with ENOSPC.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tgdfer.head import HeadConfig
from tgdfer.run import LAST, load_checkpoint
from tgdfer.training import train

from smallhead import SMALL_HEAD_SET, small_head
from test_train import cfg, make_planted_store

runner = CliRunner()


def flat(text) -> str:
    return "".join(str(text).split())


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` (existing) made read-only for this process, then writable again."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if not (_mount("--bind", str(folder), str(folder)) and _mount("-o", "remount,bind,ro", str(folder))):
        subprocess.run(["umount", str(folder)], capture_output=True)
        pytest.skip("root without the right to mount: no way to make a folder read-only here")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def ro(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        yield folder


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_planted_store(tmp_path_factory.mktemp("planted") / "s.zarr", np.tile(np.arange(1, 6), 21))


def _train_cli(store, out, *extra):
    return runner.invoke(app(), ["train-head", "--set", f'train.store="{store}"', "--set", "head.learnable=false",
                                 "--set", "train.batch_size=16", "--set", "train.milestones=[5]", "--out", str(out),
                                 "--fold", "1", "--device", "cpu", *extra])


def app():
    from tgdfer.cli import app as typer_app

    return typer_app


def _one_clear_line(result, *words):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    for w in words:
        assert flat(w) in flat(result.output), (w, result.output)


def test_train_head_into_a_read_only_folder_or_onto_a_file(store, ro, tmp_path):
    _one_clear_line(_train_cli(store, ro / "run", "--epochs", "1"), ro / "run", "read-only")
    assert not (ro / "run").exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _one_clear_line(_train_cli(store, blocker, "--epochs", "1"), blocker, "is a file")
    assert blocker.read_text() == "x"
    _one_clear_line(_train_cli(store, blocker / "run", "--epochs", "1"), blocker / "run", "not a folder")


def test_full_disk_while_resuming_keeps_the_last_good_checkpoint(store, tmp_path, monkeypatch):
    done = tmp_path / "done"
    # the paper-sized head: the file system below holds the run plus 64 KiB, which a checkpoint must not fit in
    train(HeadConfig(learnable=False), cfg(store, done, epochs=1, batch_size=16))
    used = sum(p.stat().st_size for p in done.iterdir())
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = os.geteuid() == 0 and _mount("-t", "tmpfs", "-o", f"size={used + 64 * 1024}", "tmpfs", str(disk))
    try:
        if not mounted:  # no small file system to fill: the checkpoint writer fails as a full disk would
            import tgdfer.checkpoint as ck

            def full(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(ck.os, "fsync", full)
        run = disk / "run"
        shutil.copytree(done, run)
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.name != "config.json"}
        result = _train_cli(store, run, "--epochs", "3", "--resume")
        _one_clear_line(result, run / LAST, "disk is full")
        after = {p.name: p.read_bytes() for p in run.iterdir() if p.name != "config.json"}
        assert after == before  # no torn checkpoint, no stray .tmp
        record = json.loads((run / "config.json").read_text())  # whole: only the asked-for epochs recorded
        assert record["train"]["epochs"] == 3 and record == {**json.loads((done / "config.json").read_text()),
                                                               "train": record["train"]}
        assert load_checkpoint(run / LAST)["epoch"] == 1
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=True)


def test_truncated_or_foreign_checkpoint_in_evaluate_and_resume(store, tmp_path):
    run = tmp_path / "run"
    train(small_head(learnable=False), cfg(store, run, epochs=1, batch_size=16))
    data = (run / LAST).read_bytes()
    (run / LAST).write_bytes(data[: len(data) // 3])
    _one_clear_line(runner.invoke(app(), ["evaluate", str(run), "--device", "cpu", "--no-figures"]),
                    run / LAST, "truncated or damaged")
    _one_clear_line(_train_cli(store, run, "--epochs", "2", "--resume", *SMALL_HEAD_SET), run / LAST,
                    "truncated or damaged")
    from safetensors.torch import save_file
    import torch

    save_file({"w": torch.zeros(2)}, str(run / LAST))  # someone else's safetensors file
    _one_clear_line(runner.invoke(app(), ["evaluate", str(run), "--device", "cpu", "--no-figures"]),
                    run / LAST, "not a tgdfer checkpoint")
    _one_clear_line(_train_cli(store, run, "--epochs", "2", "--resume", *SMALL_HEAD_SET), run / LAST,
                    "not a tgdfer checkpoint")


def test_evaluate_and_extract_into_read_only_folders(store, ro, tmp_path, synth_dir, encoder_cfg):
    run = tmp_path / "run"
    train(small_head(learnable=False), cfg(store, run, epochs=1, batch_size=16))
    _one_clear_line(runner.invoke(app(), ["evaluate", str(run), "--out", str(ro / "eval"), "--device", "cpu"]),
                    ro / "eval", "read-only")
    result = runner.invoke(app(), [
        "extract", "--store", str(ro / "s.zarr"), "--model", encoder_cfg.model, "--pretrained", encoder_cfg.pretrained,
        "--set", 'data.kind="dfew"', "--set",
        f'data.args={{split_dir="{synth_dir / "EmoLabel_DataSplit"}", frames_dir="{synth_dir / "frames"}"}}'])
    _one_clear_line(result, ro / "s.zarr", "read-only")


def test_a_store_path_through_a_file_names_that_file(tmp_path):
    import errno

    from tgdfer.errors import os_error

    (tmp_path / "notes").write_text("a file")
    for code in (errno.EEXIST, errno.ENOTDIR):  # mkdir says "File exists", open says "Not a directory"
        e = os_error(tmp_path / "notes" / "s.zarr", OSError(code, "x"), "create the feature store")
        assert str(e) == f"{tmp_path / 'notes' / 's.zarr'}: cannot create the feature store: {tmp_path / 'notes'} is a file, not a folder: choose another path"


def test_predict_figures_into_a_read_only_folder_still_prints_predictions(reference_store, encoder_cfg, ro,
                                                                          tmp_path, synth_dir):
    from tgdfer.training import TrainConfig

    run = tmp_path / "run"
    train(small_head(learnable=False), TrainConfig(store=str(reference_store), fold=1, out=str(run), epochs=1,
                                                   batch_size=8, device="cpu"), encoder=encoder_cfg)
    clip = sorted((synth_dir / "videos").glob("*.mp4"))[0]
    result = runner.invoke(app(), ["predict", str(run), str(clip), "--figure", str(ro / "figs"), "--device", "cpu"])
    _one_clear_line(result, ro / "figs", "read-only")
    assert clip.name in result.output and "influence" in result.output  # the predictions were printed
    # the same for a CSV the folder refuses: the predictions are printed first (they were thrown away)
    result = runner.invoke(app(), ["predict", str(run), str(clip), "--csv", str(ro / "p.csv"), "--device", "cpu",
                                   "--json"])
    _one_clear_line(result, ro / "p.csv", "read-only")
    assert json.loads(result.stdout)["predictions"][0]["input"] == str(clip)
    folder = tmp_path / "adir"
    folder.mkdir()
    result = runner.invoke(app(), ["predict", str(run), str(clip), "--csv", str(folder), "--device", "cpu"])
    assert result.exit_code == 2 and "is a folder" in result.output and "influence" not in result.output  # before
