"""Files from others cannot run code: crafted checkpoints and weights on every load path, the opt-in.

Each crafted file holds a pickle whose unpickling would run `touch MARKER` (`__reduce__` returning
os.system). Every command that opens it must refuse it (exit 2, a message naming the file) and the
marker must never appear.
"""

from __future__ import annotations

import argparse
import json
import shutil
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tgdfer.checkpoint import convert_legacy, load_state
from tgdfer.cli import app
from tgdfer.encoders import EncoderConfig, load_encoder
from tgdfer.errors import TgdferError
from tgdfer.predict import predict
from tgdfer.run import load_checkpoint
from tgdfer.weights import UnsafeWeightsError, is_torchscript_archive, read_state_dict

from conftest import TINY
from crafted import Payload, flat, marker, one_epoch_run  # noqa: F401 (marker: a fixture)
from smallhead import SMALL_HEAD_SET

runner = CliRunner()


def crafted(path: Path, marker: Path, nested_constants: bool = False, base: dict | None = None) -> Path:
    """A torch.save zip whose pickle would run the payload; optionally with a nested `*/constants.pkl`
    member, which a loose TorchScript test ("any member ending in constants.pkl") would take for one."""
    torch.save({**(base or {"head_state": {"w": torch.zeros(1)}}), "payload": Payload(marker)}, path)
    if nested_constants:
        with zipfile.ZipFile(path) as zf:
            prefix = zf.namelist()[0].split("/")[0]
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(f"{prefix}/nested/constants.pkl", b"\x80\x02).")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, reference_store, encoder_cfg) -> Path:
    return one_epoch_run(tmp_path_factory.mktemp("sharing") / "run", reference_store, encoder_cfg)


@pytest.fixture(params=[False, True], ids=["zip", "nested-constants-pkl"])
def nested(request) -> bool:
    return request.param


def _legacy_run(run: Path, folder: Path, ckpt_file: Path) -> Path:
    """A run folder as tgdfer 0.1 left it: config.json and a pickle last.pt, no safetensors."""
    folder.mkdir()
    shutil.copy(run / "config.json", folder / "config.json")
    shutil.copy(ckpt_file, folder / "last.pt")
    return folder


def test_torchscript_is_recognised_as_torch_recognises_it(tmp_path, marker, nested):
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 3)), str(scripted))
    assert is_torchscript_archive(scripted)
    assert set(read_state_dict(scripted)) == {"weight", "bias"}
    path = crafted(tmp_path / "w.pt", marker, nested)
    assert not is_torchscript_archive(path)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    assert not is_torchscript_archive(plain) and not is_torchscript_archive(tmp_path)


class Nested(torch.nn.Module):
    """Parameters, a buffer, a plain tensor attribute (not in a state dict), a bias-less layer, nesting."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 3)
        self.seq = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False), torch.nn.LayerNorm(3))
        self.register_buffer("buf", torch.arange(4.0))
        self.scale = torch.nn.Parameter(torch.full([], 2.0))
        self.attr = torch.zeros(2)

    def forward(self, x):
        return self.seq(self.lin(x)) * self.scale + self.buf.sum() + self.attr.sum()


@pytest.mark.parametrize("how", ["script", "trace", "script-fp16", "open_clip"])
def test_torchscript_weights_read_as_data_equal_torchscripts_own_state_dict(tmp_path, how):
    """Keys (in order), dtypes and values equal TorchScript's loader's state_dict(), which the test itself runs."""
    import open_clip

    from tgdfer.encoders import register_model_configs
    from tgdfer.torchscript import read_torchscript_state

    torch.manual_seed(0)
    if how == "open_clip":
        register_model_configs()
        module = open_clip.create_model(TINY).eval()
    else:
        module = Nested().half() if how == "script-fp16" else Nested()
    path = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(module, torch.randn(1, 2)) if how == "trace" else torch.jit.script(module)
        torch.jit.save(scripted, str(path))
        expected = torch.jit.load(str(path)).state_dict()
    got = read_torchscript_state(path)
    assert list(got) == list(expected) and len(got) > 5
    for k, v in expected.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
    assert "attr" not in got


@pytest.mark.parametrize("how", ["run-folder", "file"])
def test_crafted_checkpoint_in_predict_evaluate_resume_and_convert(run, tmp_path, marker, nested, how):
    evil = crafted(tmp_path / "evil.pt", marker, nested)
    folder = _legacy_run(run, tmp_path / "old", evil)
    model = folder if how == "run-folder" else evil
    result = runner.invoke(app, ["predict", str(model), str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "convert-checkpoint" in flat(result.output) and "Traceback" not in result.output
    for args in (["evaluate", str(folder), "--device", "cpu", "--no-figures"],
                 ["train-head", "--set", f'train.store="{json.loads((run / "config.json").read_text())["train"]["store"]}"',
                  "--out", str(folder), "--epochs", "2", "--device", "cpu", "--resume", *SMALL_HEAD_SET]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "last.pt" in flat(result.output) and "convert-checkpoint" in flat(result.output)
    result = runner.invoke(app, ["convert-checkpoint", str(evil)])
    assert result.exit_code == 2 and "--trust-weights" in flat(result.output), result.output
    assert not (tmp_path / "evil.safetensors").exists()
    with pytest.raises(TgdferError, match="pickle format"):
        load_state(evil)


def test_crafted_encoder_weights_on_every_load_path(run, tmp_path, marker, nested, synth_dir, reference_store):
    evil = crafted(tmp_path / "ViT-evil.pt", marker, nested, base={"visual.proj": torch.zeros(1)})
    store = json.loads((run / "config.json").read_text())["train"]["store"]
    checks = {
        "extract": ["extract", "--store", str(tmp_path / "s.zarr"), "--model", TINY, "--pretrained", str(evil),
                    "--set", 'data.kind="dfew"', "--set",
                    f'data.args={{split_dir="{synth_dir / "EmoLabel_DataSplit"}", frames_dir="{synth_dir / "frames"}"}}'],
        "predict --weights": ["predict", str(run), str(tmp_path), "--weights", str(evil), "--device", "cpu"],
        "train-head (text tower)": ["train-head", "--set", f'train.store="{store}"', "--set",
                                    f'encoder.pretrained="{evil}"', "--set", f'encoder.model="{TINY}"',
                                    "--out", str(tmp_path / "t"), "--fold", "1", "--epochs", "1", "--device", "cpu"],
        "train-head --end-to-end (image tower)": [
            "train-head", "--set", f'train.store="{store}"', "--set", f'encoder.pretrained="{evil}"',
            "--set", f'encoder.model="{TINY}"', "--set", 'head.text_prompt="class"', "--set", "head.learnable=false",
            "--out", str(tmp_path / "e"), "--fold", "1", "--epochs", "1", "--device", "cpu", "--end-to-end"],
    }
    for name, args in checks.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (name, result.output)
        out = flat(result.output)
        assert flat(evil) in out and "refused" in out and "--trust-weights" in out, (name, result.output)
        assert "Traceback" not in result.output
    # a run folder cannot vouch for its own encoder file: config.json's trust_weights is ignored
    folder = tmp_path / "shared_run"
    shutil.copytree(run, folder)
    record = json.loads((folder / "config.json").read_text())
    record["encoder"].update(pretrained=str(evil), trust_weights=True)
    (folder / "config.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["evaluate", str(folder), "--device", "cpu", "--no-figures"])
    assert result.exit_code == 2 and "refused" in flat(result.output), result.output


def test_trust_weights_is_an_explicit_opt_in(tmp_path, tiny_weights):
    """A training script's checkpoint ({"state_dict": ..., "args": Namespace}) is refused, then loads with the opt-in."""
    sd = read_state_dict(tiny_weights)
    path = tmp_path / "script_ckpt.pt"
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeWeightsError, match=r"argparse\.Namespace.*--trust-weights"):
        load_encoder(EncoderConfig(model=TINY, pretrained=str(path)))
    enc = load_encoder(EncoderConfig(model=TINY, pretrained=str(path), trust_weights=True))
    ref = load_encoder(EncoderConfig(model=TINY, pretrained=str(tiny_weights)))
    for (k, a), b in zip(enc.model.state_dict().items(), ref.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_old_checkpoint_converts_once_and_predicts_the_same(run, tmp_path, synth_dir):
    """A tgdfer 0.1 checkpoint (torch.save of the same state) is refused, converted knowingly, then works."""
    state = load_checkpoint(run / "last.safetensors")
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(run / "config.json", old / "config.json")
    torch.save(state, old / "last.pt")
    clip = next((synth_dir / "videos").glob("*.mp4"))
    assert runner.invoke(app, ["predict", str(old), str(clip), "--device", "cpu"]).exit_code == 2
    result = runner.invoke(app, ["convert-checkpoint", str(old)])
    assert result.exit_code == 0, result.output
    assert (old / "last.safetensors").is_file() and (old / "last.pt").is_file()
    a = predict(old, [clip], device="cpu").predictions[0]
    b = predict(run, [clip], device="cpu").predictions[0]
    assert a.probs == pytest.approx(b.probs, abs=1e-6)
    with pytest.raises(TgdferError, match="exists"):
        convert_legacy(old / "last.pt")


def test_checkpoint_round_trips_every_value(tmp_path):
    from tgdfer.checkpoint import save_state

    w = torch.randn(4, 3)
    state = {"head_state": {"a": w, "view": w[1:], "scalar": torch.tensor(2)},
             "opt_state": {"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [
                 {"lr": 0.1, "params": [0], "foreach": None, "nesterov": False}]},
             "best": [float("-inf"), 0], "pair": (1, "x"), "rng": torch.get_rng_state(), "empty": torch.zeros(0, 5)}
    save_state(tmp_path / "c.safetensors", state)
    back = load_state(tmp_path / "c.safetensors")
    assert back["opt_state"]["state"][0]["momentum_buffer"].tolist() == [1.0, 1.0, 1.0]
    assert back["opt_state"]["param_groups"] == state["opt_state"]["param_groups"]
    assert back["best"] == [float("-inf"), 0] and back["pair"] == (1, "x") and back["empty"].shape == (0, 5)
    assert torch.equal(back["head_state"]["view"], w[1:]) and torch.equal(back["rng"], state["rng"])
    header = load_state(tmp_path / "c.safetensors", tensors=False)  # what --resume's check reads
    assert header["best"] == [float("-inf"), 0] and header["pair"] == (1, "x") and header["rng"] is None
    assert header["opt_state"]["param_groups"] == state["opt_state"]["param_groups"]
    assert header["head_state"] == {"a": None, "view": None, "scalar": None}
    with pytest.raises(TypeError, match="payload"):
        save_state(tmp_path / "d.safetensors", {"payload": Payload(tmp_path / "m")})
