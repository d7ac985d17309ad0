"""Every command that opens a file, against files crafted to run code (issue 20).

The crafted files: a bare pickle and a torch.save zip whose unpickling runs `touch MARKER`
(`__reduce__` -> os.system), that zip inside another zip, a TorchScript archive whose class
`__setstate__` writes MARKER with `torch.save` (TorchScript's loader runs it: checked below), a
TorchScript-shaped archive whose data.pkl names os.system, a checkpoint and a store whose face
stage names `subprocess:run`, and config files (pipeline, `base =` chain, profile, sweep, `--set`)
that grant themselves trust. Each case: exit code 2, one error line naming the file (or the
field), no traceback, and no MARKER.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tgdfer.checkpoint import load_state, save_state
from tgdfer import detectors
from tgdfer.cli import app
from tgdfer.errors import ConfigError, TgdferError
from tgdfer.facetrack import FacesConfig, FaceStage
from tgdfer.pipeline import load_pipeline
from tgdfer.store import FeatureStore
from tgdfer.weights import UnsafeWeightsError, read_state_dict

from conftest import TINY
from crafted import Payload, flat, marker, one_epoch_run  # noqa: F401 (marker: a fixture)

runner = CliRunner()


class SetStateWrites(torch.nn.Module):
    """A module whose TorchScript `__setstate__` (run by TorchScript's loader) writes a file with torch.save."""

    def __init__(self, marker: str):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(2))
        self.marker = marker

    def forward(self, x):
        return x + self.weight

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, str, bool]:
        return self.weight, self.marker, self.training

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, str, bool]) -> None:
        self.weight = state[0]
        self.marker = state[1]
        self.training = state[2]
        torch.save(self.weight, self.marker)


def script_save(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        torch.jit.save(torch.jit.script(module), str(path))
    return path


def crafted_weights(folder: Path, marker: Path) -> dict[str, Path]:
    """Every kind of crafted weights file, each of which runs `marker`'s payload if loaded naively."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"pickle": folder / "evil.pkl", "torch-zip": folder / "evil.pt", "nested-zip": folder / "nested.zip",
             "torchscript-setstate": folder / "evil_script.pt", "torchscript-os-system": folder / "evil_ts_pickle.pt"}
    files["pickle"].write_bytes(pickle.dumps({"visual.proj": Payload(marker)}, protocol=2))
    torch.save({"visual.proj": torch.zeros(1), "payload": Payload(marker)}, files["torch-zip"])
    with zipfile.ZipFile(files["nested-zip"], "w") as zf:
        zf.write(files["torch-zip"], "inner/evil.pt")
    script_save(SetStateWrites(str(marker)), files["torchscript-setstate"])
    with open(files["torchscript-os-system"], "wb") as f:  # TorchScript's layout, data.pkl a plain pickle payload
        with torch.serialization._open_zipfile_writer(f) as zw:
            records = {"data.pkl": pickle.dumps(Payload(marker), protocol=2), "constants.pkl": b"\x80\x02)."}
            for name, data in records.items():
                zw.write_record(name, data, len(data))
    return files


@pytest.fixture(scope="module")
def run(tmp_path_factory, reference_store, encoder_cfg) -> Path:
    return one_epoch_run(tmp_path_factory.mktemp("attacks") / "run", reference_store, encoder_cfg)


def refused(args: list[str], *names: str, env: dict | None = None) -> str:
    """Run the CLI; assert exit code 2, one error line (naming each of `names`), no traceback."""
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert result.output.count("error:") == 1 and "Traceback" not in result.output, result.output
    for name in names:
        assert flat(name) in flat(result.output), (name, result.output)
    return flat(result.output)


def shared_run(run: Path, folder: Path, change) -> Path:
    """A copy of `run` whose config.json and checkpoint headers `change(record)` rewrote."""
    shutil.copytree(run, folder)
    record = json.loads((folder / "config.json").read_text())
    change(record)
    (folder / "config.json").write_text(json.dumps(record))
    for ckpt in folder.glob("*.safetensors"):
        state = load_state(ckpt)
        change(state["config"])
        change(state)
        save_state(ckpt, state)
    return folder


def test_the_torchscript_payload_is_live(tmp_path):
    """The crafted archive does run its code when TorchScript's loader opens it (so the cases below test something)."""
    live = tmp_path / "LIVE"
    path = script_save(SetStateWrites(str(live)), tmp_path / "live.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path))
    assert live.exists()


@pytest.mark.parametrize("kind", ["pickle", "torch-zip", "nested-zip", "torchscript-setstate",
                                  "torchscript-os-system"])
def test_crafted_weights_through_every_command(kind, run, tmp_path, marker, synth_dir, reference_store):
    """extract --pretrained, predict --weights, predict/evaluate of a shared run and train-head on a store whose
    recorded weights path is the crafted file (inside the run folder), convert-checkpoint without --trust."""
    evil = crafted_weights(tmp_path / "files", marker)[kind]
    data = ["--set", 'data.kind="dfew"', "--set", f'data.args={{split_dir="{synth_dir / "EmoLabel_DataSplit"}", '
            f'frames_dir="{synth_dir / "frames"}"}}']
    refused(["extract", "--store", str(tmp_path / "s.zarr"), "--model", TINY, "--pretrained", str(evil), *data],
            str(evil))
    refused(["predict", str(run), str(tmp_path), "--weights", str(evil), "--device", "cpu"], str(evil))

    def point_at_evil(record: dict) -> None:  # the run's recorded weights file: one inside the shared folder
        for table in (record.get("encoder"), record.get("pipeline", {}).get("encoder")):
            if isinstance(table, dict):
                table["pretrained"] = str(folder / evil.name)

    folder = tmp_path / "shared"
    shared_run(run, folder, point_at_evil)
    shutil.copy(evil, folder / evil.name)
    clip = next((synth_dir / "videos").glob("*.mp4"))
    refused(["predict", str(folder), str(clip), "--device", "cpu"], str(folder / evil.name))
    refused(["evaluate", str(folder), "--device", "cpu", "--no-figures"], str(folder / evil.name))
    for extra in ([], ["--end-to-end", "--set", 'head.text_prompt="class"', "--set", "head.learnable=false"]):
        refused(["train-head", "--set", f'train.store="{reference_store}"', "--set", f'encoder.pretrained="{evil}"',
                 "--set", f'encoder.model="{TINY}"', "--out", str(tmp_path / f"t{len(extra)}"), "--fold", "1",
                 "--epochs", "1", "--device", "cpu", *extra], str(evil))
    out = refused(["convert-checkpoint", str(evil)], str(evil))
    assert not list(evil.parent.glob("*.safetensors"))
    if kind in ("pickle", "torch-zip"):
        assert "--trust-weights" in out


@pytest.mark.parametrize("kind", ["torchscript-setstate", "torchscript-os-system", "torch-zip"])
def test_weights_refusal_says_how_to_trust_and_no_file_can_say_it(kind, tmp_path, marker):
    evil = crafted_weights(tmp_path / "files", marker)[kind]
    with pytest.raises(UnsafeWeightsError) as e:
        read_state_dict(evil)
    assert str(evil) in str(e.value) and "--trust-weights" in str(e.value) and "TGDFER_TRUST_WEIGHTS=1" in str(e.value)
    assert "\n" not in str(e.value)


DETECTORS = {  # face stages a checkpoint or store might name: code to import, or a name nobody registered
    "subprocess:run": lambda m: {"detector": "subprocess:run", "args": {"args": ["touch", str(m)]}},
    "os:system": lambda m: {"detector": "os:system", "args": {"command": f"touch {m}"}},
    "unregistered": lambda m: {"detector": "retinaface", "args": {}},
}


@pytest.mark.parametrize("name", list(DETECTORS))
def test_checkpoint_naming_a_detector_callable_is_not_imported(name, run, tmp_path, marker, synth_dir):
    faces = DETECTORS[name](marker)

    def name_detector(record: dict) -> None:
        if "store_fingerprint" in record:
            record["store_fingerprint"]["faces"] = faces

    folder = shared_run(run, tmp_path / "shared", name_detector)
    clip = next((synth_dir / "videos").glob("*.mp4"))
    out = refused(["predict", str(folder), str(clip), "--device", "cpu"], str(folder), faces["detector"])
    assert ("--allow-import" in out) if ":" in faces["detector"] else ("register_detector" in out)


@pytest.mark.parametrize("name", ["subprocess:run", "os:system"])
def test_store_naming_a_detector_callable_is_not_imported(name, reference_store, tmp_path, marker, tiny_weights):
    store = tmp_path / "shared.zarr"
    shutil.copytree(reference_store, store)
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["fingerprint"]["faces"] = DETECTORS[name](marker)
    (store / "zarr.json").write_text(json.dumps(meta))
    with FeatureStore.open(store) as s:
        stage = FaceStage(FacesConfig.from_fingerprint(s.fingerprint["faces"]))
    with pytest.raises(ConfigError, match="never imports.*--allow-import"):
        stage.detector
    # end-to-end training builds the store's face stage (views beyond the stored boxes are detected again)
    refused(["train-head", "--set", f'train.store="{store}"', "--set", f'encoder.model="{TINY}"', "--set",
             f'encoder.pretrained="{tiny_weights}"', "--out",
             str(tmp_path / "e2e"), "--fold", "1", "--epochs", "1", "--device", "cpu", "--end-to-end",
             "--set", 'head.text_prompt="class"', "--set", "head.learnable=false"], name, "--allow-import")


def whole_frame():
    """A detector factory for --allow-import: one face filling each frame."""
    return lambda frames: [[(np.array([0, 0, f.shape[1], f.shape[0]], float), 1.0)] for f in frames]


def test_allow_import_is_the_only_way_to_name_code(run, tmp_path, synth_dir, monkeypatch):
    """`--faces pkg.module:factory` needs --allow-import; --allow-import needs such a --faces."""
    monkeypatch.setattr(detectors, "_DETECTORS", dict(detectors._DETECTORS))
    clip = next((synth_dir / "videos").glob("*.mp4"))
    spec = f"{__name__}:whole_frame"
    out = refused(["predict", str(run), str(clip), "--device", "cpu", "--faces", spec], spec)
    assert "--allow-import" in out
    refused(["predict", str(run), str(clip), "--device", "cpu", "--allow-import"], "--allow-import")
    result = runner.invoke(app, ["predict", str(run), str(clip), "--device", "cpu", "--faces", spec,
                                 "--allow-import", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["faces"]["detector"] == spec


TRUST = "[encoder]\ntrust_weights = true\n"


def test_no_config_file_grants_trust(tmp_path):
    """A pipeline, a `base =` chain, a profile overlay, a sweep file and --set all fail to set trust_weights."""
    (tmp_path / "pipe.toml").write_text(TRUST)
    (tmp_path / "base.toml").write_text(TRUST)
    (tmp_path / "top.toml").write_text('base = "base.toml"\n[train]\nepochs = 1\n')
    (tmp_path / "profile.toml").write_text(TRUST)
    (tmp_path / "sweep.toml").write_text(f'[sweep]\nbase = "{tmp_path / "top_ok.toml"}"\n'
                                         'set = ["encoder.trust_weights=true"]\n[grid]\n"head.window" = [2]\n')
    (tmp_path / "grid.toml").write_text(f'[sweep]\nbase = "{tmp_path / "top_ok.toml"}"\n'
                                        '[grid]\n"encoder.trust_weights" = [true]\n')
    (tmp_path / "top_ok.toml").write_text("[train]\nepochs = 1\n")
    why = "encoder.trust_weights: no config file can grant trust"
    for args in (["-c", str(tmp_path / "pipe.toml")], ["-c", str(tmp_path / "top.toml")],
                 ["--profile", str(tmp_path / "profile.toml")], ["--set", "encoder.trust_weights=true"]):
        for command in ("train-head", "extract"):
            refused([command, *args, "--print-config"], why, "--trust-weights")
    for sweep in ("sweep.toml", "grid.toml"):
        refused(["sweep", str(tmp_path / sweep), "--dry-run"], str(tmp_path / sweep), "trust")
    with pytest.raises(ConfigError, match="no config file can grant trust"):
        load_pipeline(tmp_path / "top.toml")
    # the flag itself is the command line's: accepted, and never written into the printed (re-readable) config
    result = runner.invoke(app, ["train-head", "-c", str(tmp_path / "top_ok.toml"), "--trust-weights",
                                 "--print-config"])
    assert result.exit_code == 0 and "trust_weights" not in result.output, result.output


def test_environment_variable_is_the_other_opt_in(tmp_path, tiny_weights, monkeypatch):
    """TGDFER_TRUST_WEIGHTS=1 lifts the refusal of a script checkpoint (argparse.Namespace beside the weights)."""
    import argparse

    sd = read_state_dict(tiny_weights)
    path = tmp_path / "script_ckpt.pt"
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=0.1)}, path)
    monkeypatch.setenv("TGDFER_TRUST_WEIGHTS", "0")
    with pytest.raises(UnsafeWeightsError):
        read_state_dict(path)
    monkeypatch.setenv("TGDFER_TRUST_WEIGHTS", "1")
    back = read_state_dict(path)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_damaged_torchscript_is_one_line(tmp_path):
    """A TorchScript archive with a truncated data.pkl or a missing storage record: a TgdferError naming the file."""
    good = script_save(torch.nn.Linear(2, 3), tmp_path / "good.pt")
    for name, drop in (("truncated", "data.pkl"), ("no-storage", "data/0")):
        bad = tmp_path / f"{name}.pt"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename.endswith("/" + drop):
                    if drop != "data.pkl":
                        continue
                    data = data[: len(data) // 2]
                dst.writestr(info, data)
        with pytest.raises(TgdferError, match=rf"{bad}: .*(data\.pkl|data/0)") as e:
            read_state_dict(bad)
        assert "\n" not in str(e.value)


def test_store_chunks_behind_a_pickle_codec_are_never_unpickled(reference_store, tmp_path, marker):
    """A store whose feats array names numcodecs' pickle codec, every chunk a payload: zarr refuses the codec.

    (The one-line message for it belongs to the store's error handling; here: no code runs, no success.)"""
    store = tmp_path / "pickled.zarr"
    shutil.copytree(reference_store, store)
    meta = json.loads((store / "feats" / "zarr.json").read_text())
    meta["codecs"] = [{"name": "numcodecs.pickle", "configuration": {"protocol": 5}}]
    (store / "feats" / "zarr.json").write_text(json.dumps(meta))
    chunks = [p for p in (store / "feats").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert chunks
    for chunk in chunks:
        chunk.write_bytes(pickle.dumps(Payload(marker)))
    result = runner.invoke(app, ["train-head", "--set", f'train.store="{store}"', "--set", f'encoder.model="{TINY}"',
                                 "--set", 'head.text_prompt="class"', "--set", "head.learnable=false",
                                 "--out", str(tmp_path / "t"), "--fold", "1", "--epochs", "1", "--device", "cpu"])
    assert result.exit_code != 0 and not (tmp_path / "t" / "final.json").exists()


def test_installed_packages_supply_detectors_by_entry_point(monkeypatch):
    """A name in the `tgdfer.detectors` entry points (code the user installed) builds; a file holds only the name."""
    from importlib.metadata import EntryPoint

    eps = [EntryPoint("wholeframe", f"{__name__}:whole_frame", detectors.ENTRY_POINTS)]
    monkeypatch.setattr(detectors.importlib.metadata, "entry_points",
                        lambda group: [e for e in eps if e.group == group])
    (found,) = FaceStage(FacesConfig(detector="wholeframe")).detector(np.zeros((1, 6, 8, 3), np.uint8))
    assert found[0][0].tolist() == [0, 0, 8, 6]
    assert "wholeframe" in detectors.list_detectors()
    with pytest.raises(ConfigError, match="unknown detector 'other'"):
        detectors.make_detector("other")
