"""The Python API (issue 13 item 4): lazy entry points, the docs example as written, Predictor, predict inputs."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import tgdfer
from tgdfer.cli import app
from tgdfer.errors import TgdferError
from tgdfer.frames import open_frames
from tgdfer.labels import CLASSES
from tgdfer.predict import Prediction, PredictFailure, Predictor

from smallhead import SMALL_HEAD_OVERRIDES, SMALL_HEAD_TOML

runner = CliRunner()
ROOT = Path(__file__).parents[1]
MARKER = "python-api-example"  # an HTML comment right above a ```python block: the block is tested as written
EXAMPLES = [p for p in (ROOT / "docs" / "python-api.md", ROOT / "README.md") if MARKER in p.read_text()]


def docs_example(doc: Path) -> str:
    """The code block after the `python-api-example` marker of `doc`."""
    return re.search(MARKER + r".*?```python\n(.*?)```", doc.read_text(), re.S).group(1)


def test_import_tgdfer_is_light_and_names_the_api():
    code = "import sys, tgdfer; print('torch' in sys.modules, sorted(tgdfer.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    torch_loaded, names = out.split(" ", 1)
    assert torch_loaded == "False"
    for name in ("load_pipeline", "extract", "train", "evaluate", "Predictor", "FeatureStore"):
        assert name in names
    assert tgdfer.Predictor is Predictor and callable(tgdfer.train) and callable(tgdfer.extract)
    import types

    from tgdfer import api
    for name in ("extract", "train", "evaluate"):  # plain functions, no module behind the name (docs/python-api.md)
        assert getattr(tgdfer, name) is getattr(api, name)
        assert not isinstance(getattr(tgdfer, name), types.ModuleType)


@pytest.fixture(scope="module")
def examples_run() -> dict:
    """(block text, after_demo) -> (folder, namespace) of the run of that text. README.md's block is
    docs/python-api.md's word for word: one run of the text is a run of both, as written."""
    return {}


@pytest.mark.parametrize("after_demo", [False, True], ids=["clean", "after_demo"])
@pytest.mark.parametrize("doc", EXAMPLES, ids=lambda p: p.name)
def test_the_docs_example_runs_as_written(doc, after_demo, tmp_path_factory, monkeypatch, synth_dir, tiny_weights,
                                          examples_run):
    code = docs_example(doc)
    assert len(code.strip().splitlines()) <= 10
    if (code, after_demo) not in examples_run:
        examples_run[code, after_demo] = _run_example(doc, code, after_demo, tmp_path_factory.mktemp("example"),
                                                      monkeypatch, synth_dir, tiny_weights)
    folder, scope = examples_run[code, after_demo]
    monkeypatch.chdir(folder)
    if after_demo:
        assert Path("runs/synth/fold1/last.safetensors").read_bytes() == b"the demo's run"  # left as it was
    run = Path("runs/readme")
    assert scope["run"] == run and (run / "final.json").is_file()
    assert len(pd.read_csv(run / "metrics.csv")) == 5  # train.epochs=5 from the example's override
    assert (run / "eval" / "results.csv").is_file()
    pred = scope["pred"]
    assert isinstance(pred, Prediction) and pred.label in CLASSES
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert pred.influence.shape == (8,) and pred.frame_index.shape == (8,)
    preds = scope["preds"]
    assert [p.input for p in preds] == ["data/synth/frames/00002", "data/synth/videos/00003.mp4"]
    assert all(isinstance(p, Prediction) for p in preds)


def _run_example(doc, code, after_demo, tmp_path, monkeypatch, synth_dir, tiny_weights) -> tuple[Path, dict]:
    """Run `code` in `tmp_path` laid out as a clone (a small pipelines/synthetic.toml, data/synth), with
    the demo's run in place when `after_demo`; returns (tmp_path, the code's namespace)."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "synthetic.toml").write_text(f"""
[data]
kind = "dfew"
args = {{ split_dir = "data/synth/EmoLabel_DataSplit", frames_dir = "data/synth/frames" }}
[encoder]
model = "tgdfer-tiny-vit"
pretrained = "{tiny_weights}"
[extract]
store = "cache/synth.zarr"
views = 2
frames = 8
workers = 0
batch_clips = 4
device = "cpu"
[head]
{SMALL_HEAD_TOML}[train]
fold = 1
out = "runs/synth"
batch_size = 8
milestones = [3, 4]
device = "cpu"
""")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synth").symlink_to(synth_dir)
    monkeypatch.chdir(tmp_path)
    demo_run = Path("runs/synth/fold1")  # where `make demo` leaves its run (issue 21 item 1)
    if after_demo:
        demo_run.mkdir(parents=True)
        (demo_run / "last.safetensors").write_bytes(b"the demo's run")
    scope: dict = {}
    exec(compile(code, str(doc), "exec"), scope)
    return tmp_path, scope


@pytest.fixture(scope="module")
def run(tmp_path_factory, reference_store, encoder_cfg):
    out = tmp_path_factory.mktemp("api") / "run"
    tgdfer.train(_pipe(reference_store, encoder_cfg), fold=1, out=out)
    return out


def test_a_taken_run_folder_is_refused_in_python_words_and_in_cli_words(run, reference_store, encoder_cfg):
    with pytest.raises(TgdferError) as e:
        tgdfer.train(_pipe(reference_store, encoder_cfg), fold=1, out=run)
    assert "already holds a run" in str(e.value) and "resume=True" in str(e.value) and "out=" in str(e.value)
    assert "--" not in str(e.value)  # no CLI option names in a Python error (issue 21 item 1)
    result = runner.invoke(app, ["train-head", "--set", f"train.store='{reference_store}'",
                                 "--set", f"encoder.model='{encoder_cfg.model}'",
                                 "--set", f"encoder.pretrained='{encoder_cfg.pretrained}'",
                                 "--fold", "1", "--out", str(run), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "--resume" in result.output and "--out" in result.output and "resume=True" not in result.output


def _pipe(store, enc):
    return tgdfer.load_pipeline(None, [f"train.store='{store}'", f"encoder.model='{enc.model}'",
                                       f"encoder.pretrained='{enc.pretrained}'", "train.epochs=2",
                                       "train.batch_size=8", "train.device='cpu'", *SMALL_HEAD_OVERRIDES])


def test_predictor_takes_arrays_lists_and_batches_like_single_calls(run, synth_dir):
    predictor = Predictor(run, device="cpu", batch=2)
    folder = synth_dir / "frames" / "00004"
    with open_frames(folder) as src:
        frames = src.read(np.arange(len(src)))  # [T, H, W, 3] uint8
    single = predictor(folder)
    from_array = predictor(frames)
    np.testing.assert_allclose(from_array.logits, single.logits, atol=1e-4)
    np.testing.assert_array_equal(from_array.frame_index, single.frame_index)
    clips = [folder, synth_dir / "videos" / "00005.mp4", frames, synth_dir / "nope.mp4", synth_dir / "frames" / "00006"]
    many = predictor(clips)
    assert [type(p) for p in many] == [Prediction, Prediction, Prediction, PredictFailure, Prediction]
    assert "nope.mp4" in many[3].error
    for clip, p in zip(clips, many):
        if isinstance(p, Prediction):  # batched (2 at a time) = one at a time
            np.testing.assert_allclose(p.logits, predictor(clip).logits, atol=1e-3)
    with pytest.raises(TgdferError, match="nope.mp4"):
        predictor(synth_dir / "nope.mp4")
    with pytest.raises(TgdferError, match=r"\[T, H, W, 3\] uint8"):
        predictor(frames.astype(np.float32))
    import torch  # torchvision.io.read_video gives a tensor: it was turned into text and opened as a file name

    np.testing.assert_allclose(predictor(torch.from_numpy(frames)).logits, single.logits, atol=1e-4)
    assert isinstance(predictor([torch.from_numpy(frames), synth_dir / "nope.mp4"])[1], PredictFailure)


def test_predict_cli_takes_folders_and_globs_and_writes_csv(run, synth_dir, tmp_path):
    videos = sorted((synth_dir / "videos").glob("*.mp4"))
    csv = tmp_path / "out" / "p.csv"
    result = runner.invoke(app, ["predict", str(run), str(synth_dir / "videos"), str(synth_dir / "frames" / "0000[12]"),
                                 str(synth_dir / "frames" / "00003"), "--device", "cpu", "--json", "--csv", str(csv)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    inputs = [p["input"] for p in doc["predictions"]]
    assert inputs == [*map(str, videos), str(synth_dir / "frames" / "00001"), str(synth_dir / "frames" / "00002"),
                      str(synth_dir / "frames" / "00003")]
    table = pd.read_csv(csv)
    assert table["input"].tolist() == inputs and table["ok"].all()
    assert list(table.columns[:3]) == ["input", "ok", "predicted"] and set(CLASSES) <= set(table.columns)
    np.testing.assert_allclose(table[list(CLASSES)].sum(axis=1), 1.0, atol=1e-5)
    first = doc["predictions"][0]
    assert table["predicted"].iat[0] == first["predicted"]
    assert [float(v) for v in table["influence"].iat[0].split()] == pytest.approx(
        [f["influence"] for f in first["frames"]], abs=1e-4)
    result = runner.invoke(app, ["predict", str(run), str(synth_dir / "none_*.mp4"), "--device", "cpu"])
    assert result.exit_code == 1 and "no file or folder matches" in " ".join(result.output.split())


def test_api_train_folds_and_evaluate_default_folder(tmp_path, reference_store, encoder_cfg):
    results = tgdfer.train(_pipe(reference_store, encoder_cfg), folds=[1, 2], out=tmp_path / "runs")
    assert [r.run for r in results] == [tmp_path / "runs" / "fold1", tmp_path / "runs" / "fold2"]
    ev = tgdfer.evaluate([r.run for r in results], device="cpu", figures=False)
    assert (tmp_path / "runs" / "eval_fold1+fold2" / "results.csv") in ev.files
    assert not (tmp_path / "runs" / "results.csv").exists()
