"""`tgdfer predict`: the extract path reproduced on new clips, JSON schema, figures, bad input."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.evaluation import forward, load_run
from tgdfer.labels import CLASSES
from tgdfer.predict import load_predictor, predict, predict_clip
from tgdfer.sampling import segment_indices
from tgdfer.store import FeatureStore
from tgdfer.run import load_checkpoint, save_checkpoint
from tgdfer.training import TrainConfig, train

from smallhead import small_head

runner = CliRunner()
T = 8


def flat(text: str) -> str:
    """Text without whitespace: rich breaks console lines at 80 columns (and drops the space there)."""
    return "".join(str(text).split())  # the reference store's frames per view


@pytest.fixture(scope="module")
def run(tmp_path_factory, reference_store, encoder_cfg):
    """A (small) head with learnable prompts (text tower from the weights file), trained 2 epochs on the reference
    store."""
    out = tmp_path_factory.mktemp("predict") / "run"
    train(small_head(), TrainConfig(store=str(reference_store), fold=1, out=str(out), epochs=2, batch_size=8,
                                    device="cpu"), encoder=encoder_cfg)
    return out


@pytest.fixture(scope="module")
def predictor(run):
    return load_predictor(run, device="cpu")


def test_predict_on_a_store_clip_reproduces_its_features_and_evaluate_logits(run, predictor, reference_store):
    lr = load_run(run, "cpu")
    with FeatureStore.open(reference_store) as store:
        clips, feats = store.clips, store.read_feats(views=0)  # [N, T, D]
    for row in (int(lr.test[0]), int(lr.test[-1])):
        pred = predict_clip(predictor, clips["path"].iat[row])
        assert pred.frame_index.tolist() == lr.frame_index[row].tolist()
        x = torch.from_numpy(feats[[row]])
        logits, influence = forward(lr.head, x)
        np.testing.assert_allclose(pred.logits, logits[0], atol=5e-2)  # logits are cosines / 0.01
        np.testing.assert_allclose(pred.influence, influence[0], atol=2e-3)
        sim = predict_clip(predictor, clips["path"].iat[row], influence="similarity")
        np.testing.assert_allclose(sim.influence, forward(lr.head, x, influence="similarity")[1][0], atol=2e-3)
        assert pred.predicted == int(logits[0].argmax())
        assert pred.probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_names_that_look_like_rich_markup_are_printed_as_they_are(run, synth_dir, tmp_path):
    video = sorted((synth_dir / "videos").glob("*.mp4"))[0]
    names = ["clip [draft].mp4", "x[bold red]y.mp4", "take [/x] 2.mp4"]  # "[/x]" ended in a bare MarkupError
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)  # "take [" is a folder: "[/x]" spans the slash
        shutil.copy(video, tmp_path / name)
    (tmp_path / "broken [v1].mp4").write_bytes(b"junk")
    result = runner.invoke(app, ["predict", str(run), *(str(tmp_path / n) for n in names),
                                 str(tmp_path / "broken [v1].mp4"), "--device", "cpu", "--csv", str(tmp_path / "o [1].csv")],
                           env={"COLUMNS": "400"})  # long paths on one line
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output  # one clip failed
    for name in names:
        assert f"{tmp_path / name}: " in result.stdout
    squeezed = "".join(result.stderr.split())  # stderr's console wraps at its own width
    assert "".join(f"failed: {tmp_path / 'broken [v1].mp4'}".split()) in squeezed
    assert "".join(f"predictions -> {tmp_path / 'o [1].csv'}".split()) in squeezed


def test_a_clip_shorter_than_t_says_its_repeated_frames_differ_by_position_alone(run, synth_dir, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted((synth_dir / "frames" / "00001").iterdir())[0], one / "00001.jpg")
    result = runner.invoke(app, ["predict", str(run), str(one), "--device", "cpu"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert re.search(r"1 distinct frames in \d+ positions: the copies of one frame differ in influence by their "
                     "position", result.stdout), result.stdout


def test_video_json_schema(run, synth_dir):
    video = sorted((synth_dir / "videos").glob("*.mp4"))[0]
    result = runner.invoke(app, ["predict", str(run), str(video), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"model", "tgdfer_version", "encoder", "influence", "faces", "classes", "predictions"}
    assert doc["influence"] == "relative"  # the default mode
    assert doc["faces"] == {"detector": "none"}  # the store was pre-cropped: no face stage, no boxes
    assert doc["classes"] == list(CLASSES) and doc["encoder"]["model"] == "tgdfer-tiny-vit"
    assert doc["model"].endswith("last.safetensors")
    (p,) = doc["predictions"]
    assert set(p) == {"input", "ok", "n_frames", "predicted", "probabilities", "influence_class", "frames"}
    assert p["ok"] and p["input"] == str(video)
    assert list(p["probabilities"]) == list(CLASSES)
    assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert p["predicted"] == max(p["probabilities"], key=p["probabilities"].get) == p["influence_class"]
    frames = p["frames"]
    assert [f["position"] for f in frames] == list(range(T))
    assert [f["frame"] for f in frames] == segment_indices(p["n_frames"], T).tolist()  # test-mode sampling
    inf = [f["influence"] for f in frames]
    assert min(inf) == 0.0 and max(inf) == pytest.approx(1.0) and all(0 <= v <= 1 for v in inf)


def test_any_length_folder_and_one_frame(predictor, synth_dir, tmp_path):
    src = sorted((synth_dir / "frames").iterdir())[0]
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(src.glob("*.jpg"))[3], one / "x_00001.jpg")
    pred = predict_clip(predictor, one)
    assert pred.n_frames == 1 and pred.frame_index.tolist() == [0] * T
    assert np.isfinite(pred.logits).all() and pred.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert pred.influence.min() == 0.0  # positions differ (positional embeddings) even for one repeated frame


def test_list_of_inputs_keeps_going_past_bad_ones_and_exits_1(run, synth_dir, tmp_path):
    good = sorted((synth_dir / "frames").iterdir())[1]
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00not a video" * 100)
    missing = tmp_path / "missing.mp4"
    listing = tmp_path / "clips.txt"
    listing.write_text(f"# clips\n{good}\n\ncorrupt.mp4\n")
    result = runner.invoke(app, ["predict", str(run), str(empty), str(listing), str(missing), "--json",
                                 "--device", "cpu", "--csv", str(tmp_path / "p.csv")])
    assert result.exit_code == 1, result.output
    preds = json.loads(result.stdout)["predictions"]
    import csv

    rows = list(csv.DictReader((tmp_path / "p.csv").open()))  # the failed rows' empty cells keep 58 from being 58.0
    assert [r["n_frames"] for r in rows] == ["", str(preds[1]["n_frames"]), "", ""]
    assert [p["input"] for p in preds] == [str(empty), str(good), str(corrupt), str(missing)]
    assert [p["ok"] for p in preds] == [False, True, False, False]
    for p in (preds[0], preds[2], preds[3]):
        assert p["error"].startswith(p["input"]) and "Traceback" not in p["error"]
        assert flat(p["input"]) in flat(result.stderr)  # also reported on the console
    assert "no such file" in preds[3]["error"]


def test_plain_output_and_figure(run, synth_dir, tmp_path):
    clip = sorted((synth_dir / "frames").iterdir())[2]
    result = runner.invoke(app, ["predict", str(run), str(clip), "--figure", str(tmp_path / "figs"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert str(clip) in result.stdout and "influence (Eq. 12, relative)" in result.stdout
    png = tmp_path / "figs" / f"{clip.name}_influence.png"
    assert png.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[1] > 3 * img.shape[0]  # a strip: T frames side by side
    assert img.std() > 10  # not blank


def test_influence_option(run, synth_dir):
    clip = sorted((synth_dir / "frames").iterdir())[2]
    result = runner.invoke(app, ["predict", str(run), str(clip), "--json", "--influence", "similarity",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["influence"] == "similarity"
    assert max(f["influence"] for f in doc["predictions"][0]["frames"]) == pytest.approx(1.0)
    result = runner.invoke(app, ["predict", str(run), str(clip), "--influence", "raw", "--device", "cpu"])
    assert result.exit_code == 2 and "--influence" in result.output and "relative, similarity" in result.output
    assert "Traceback" not in result.output


def test_missing_or_wrong_weights_file(run, tmp_path, tiny_weights, other_weights):
    ckpt = load_checkpoint(run / "last.safetensors")
    ckpt["config"]["encoder"]["pretrained"] = str(tmp_path / "gone.pt")
    save_checkpoint(tmp_path / "moved.pt", **ckpt)
    result = runner.invoke(app, ["predict", str(tmp_path / "moved.pt"), str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 2
    assert flat(tmp_path / "moved.pt") in flat(result.output) and flat(tmp_path / "gone.pt") in flat(result.output)
    assert "--weights" in result.output
    ok = predict(tmp_path / "moved.pt", [tmp_path / "nothing"], device="cpu", weights=str(tiny_weights))
    assert ok.failed == 1  # the model loads with --weights; the input is what fails
    result = runner.invoke(app, ["predict", str(tmp_path / "moved.pt"), str(tmp_path), "--weights",
                                 str(other_weights), "--device", "cpu"])
    assert result.exit_code == 2 and "sha256" in result.output and flat(other_weights) in flat(result.output)


def _save(d, obj):
    save_checkpoint(d / "x.safetensors", **obj)
    return d / "x.safetensors"


def _garbage(d, ckpt):
    (d / "x.safetensors").write_bytes(b"garbage")
    return d / "x.safetensors"


def _torn(d, ckpt):
    save_checkpoint(d / "x.safetensors", **ckpt)
    data = (d / "x.safetensors").read_bytes()
    (d / "x.safetensors").write_bytes(data[: len(data) // 2])
    return d / "x.safetensors"


@pytest.mark.parametrize("make, words", [
    (lambda d, ckpt: d, "not a run folder"),
    (_garbage, "not a tgdfer checkpoint"),
    (_torn, "truncated or damaged"),
    (lambda d, ckpt: _save(d, {"weights": 1}), "not a tgdfer checkpoint"),
    (lambda d, ckpt: _save(d, {k: v for k, v in ckpt.items() if k != "store_fingerprint"}), "store_fingerprint"),
    (lambda d, ckpt: _save(d, {**ckpt, "mode": "distilled"}), "mode"),
    (lambda d, ckpt: _save(d, {**ckpt, "tgdfer_version": "9.9", "head_args": {**ckpt["head_args"], "frames": 12}}),
     "9.9"),
], ids=["folder", "garbage", "torn", "foreign", "no-fingerprint", "mode", "other-version"])
def test_bad_model_is_a_clear_error_naming_it(run, tmp_path, make, words):
    ckpt = load_checkpoint(run / "last.safetensors")
    model = make(tmp_path, ckpt)
    result = runner.invoke(app, ["predict", str(model), str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert flat(model) in flat(result.output) and flat(words) in flat(result.output)
    assert "Traceback" not in result.output


def test_influence_mode_defaults_to_the_models_head_setting(run, tmp_path, synth_dir):
    """A model trained with [head] influence = "similarity" (the paper profile) shows that mode by default."""
    ckpt = load_checkpoint(run / "last.safetensors")
    ckpt["config"]["head"]["influence"] = "similarity"
    save_checkpoint(tmp_path / "sim.safetensors", **ckpt)
    clip = sorted((synth_dir / "videos").glob("*.mp4"))[0]
    sim = predict(tmp_path / "sim.safetensors", [clip], device="cpu")
    assert sim.influence == "similarity" and predict(run, [clip], device="cpu").influence == "relative"
    forced = predict(tmp_path / "sim.safetensors", [clip], device="cpu", influence="relative")
    plain = predict(run, [clip], device="cpu").predictions[0].influence
    np.testing.assert_allclose(forced.predictions[0].influence, plain, atol=1e-6)
