"""pipelines/custom.toml: one's own folder of videos plus a CSV, read end to end from the pipeline file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tgdfer.labels import CLASSES
from tgdfer.pipeline import load_pipeline
from tgdfer.readers import fold_split
from tgdfer.synth import SynthConfig, generate

from smallhead import SMALL_HEAD_SET

CUSTOM = Path(__file__).parents[1] / "pipelines" / "custom.toml"


@pytest.fixture(scope="module")
def own_videos(tmp_path_factory) -> Path:
    """SynthDFER written as someone's own data: videos/*.mp4 and clips.csv (path, class name, fold)."""
    out = tmp_path_factory.mktemp("mine") / "data"
    generate(out, SynthConfig(clips=8, seed=3, format="video", size=32, min_frames=6, max_frames=12, folds=2,
                              workers=1))
    return out


def _load(own: Path, tmp_path: Path, *extra: str):
    overrides = [f'data.args.csv_file="{own / "clips.csv"}"', f'data.args.frame_cache="{tmp_path / "counts.json"}"',
                 *extra]
    return load_pipeline(CUSTOM, overrides).data.load()


def test_custom_pipeline_reads_own_videos_and_csv(own_videos, tmp_path):
    truth = pd.read_csv(own_videos / "clips.csv", dtype={"clip_id": str})
    frames = pd.read_csv(own_videos / "frame_labels.csv", dtype={"clip_id": str}).groupby("clip_id").size()
    clips = _load(own_videos, tmp_path)
    table = clips.table
    assert clips.skipped.empty
    assert table["clip_id"].tolist() == truth["clip_id"].tolist()
    assert table["path"].tolist() == [str((own_videos / p).resolve()) for p in truth["path"]]
    assert table["label"].tolist() == [CLASSES.index(c) for c in truth["label"]]  # class names in the CSV
    assert table["fold"].tolist() == truth["fold"].tolist()  # split_col/fold_col "auto" found the fold column
    assert table["n_frames"].tolist() == frames.loc[truth["clip_id"]].tolist()  # counted from the videos
    train, test = fold_split(table, 1)
    assert sorted(table["clip_id"].iloc[test]) == sorted(truth.loc[truth["fold"] == 1, "clip_id"])


def test_custom_pipeline_with_a_test_list_and_a_missing_video(own_videos, tmp_path):
    truth = pd.read_csv(own_videos / "clips.csv", dtype={"clip_id": str})
    no_fold = tmp_path / "clips.csv"
    truth[["path", "label"]].assign(path=[str(own_videos / p) for p in truth["path"]]).assign(
        path=lambda d: d["path"].where(d.index != 0, str(own_videos / "videos" / "gone.mp4"))).to_csv(no_fold, index=False)
    (tmp_path / "test_clips.txt").write_text("".join(f"{c}\n" for c in truth["clip_id"][-3:]))
    clips = load_pipeline(CUSTOM, [f'data.args.csv_file="{no_fold}"', f'data.args.test_list="{tmp_path / "test_clips.txt"}"',
                                   f'data.args.frame_cache="{tmp_path / "counts.json"}"']).data.load()
    assert clips.skipped["clip_id"].tolist() == ["gone"]  # missing = "skip" in custom.toml
    assert clips.table["split"].tolist() == ["train"] * 4 + ["test"] * 3


@pytest.fixture(scope="module")
def raw_videos(tmp_path_factory) -> Path:
    """Raw recordings: SynthDFER faces (64 px) off-centre and moving in 160 px frames, true boxes in boxes.csv."""
    out = tmp_path_factory.mktemp("raw") / "data"
    generate(out, SynthConfig(clips=12, seed=5, format="video", size=64, canvas=160, min_frames=8, max_frames=12,
                              folds=2, workers=1))
    return out


def test_custom_pipeline_end_to_end_on_raw_videos_with_face_detection(raw_videos, tmp_path, encoder_cfg):
    """extract (CenterFace track and crop) -> train-head -> predict, all from pipelines/custom.toml."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from tgdfer.cli import app
    from tgdfer.store import FeatureStore

    store, run = tmp_path / "s.zarr", tmp_path / "runs"
    common = ["--config", str(CUSTOM), "--set", f'data.args.csv_file="{raw_videos / "clips.csv"}"',
              "--set", f'data.args.frame_cache="{tmp_path / "counts.json"}"',
              "--set", f'encoder.model="{encoder_cfg.model}"', "--set", f'encoder.pretrained="{encoder_cfg.pretrained}"',
              "--set", f'extract.store="{store}"', "--set", f'train.store="{store}"', "--set", "extract.workers=0",
              "--set", "faces.min_score=0.3", "--set", "faces.size=64"]  # drawn faces score lower than real ones
    runner = CliRunner()
    result = runner.invoke(app, ["extract", *common])
    assert result.exit_code in (0, 1), result.output  # 1 only if a clip had no face at all (recorded, not fatal)
    with FeatureStore.open(store) as s:
        assert s.fingerprint["faces"]["detector"] == "centerface" and s.done.sum() >= 10
        boxes = s.read_boxes(np.flatnonzero(s.done))[:, 0]  # [n, T, 4] view-0 crop boxes, 160 px frames
        side = boxes[..., 2] - boxes[..., 0]
        assert np.isfinite(boxes).all() and (side < 160).all() and (side > 40).all()  # a face crop, not the frame
        rows = np.flatnonzero(s.done)
        ids, index = s.clips["clip_id"].iloc[rows].astype(str).tolist(), s.read_frame_index()[rows, 0]  # [n, T]
    truth = pd.read_csv(raw_videos / "boxes.csv", dtype={"clip_id": str}).set_index(["clip_id", "frame"])
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # [n, T, 2]
    inside = [truth.loc[(c, int(f)), "x0"] <= x <= truth.loc[(c, int(f)), "x1"] and
              truth.loc[(c, int(f)), "y0"] <= y <= truth.loc[(c, int(f)), "y1"]
              for c, fs, cs in zip(ids, index, centre) for f, (x, y) in zip(fs, cs)]
    assert np.mean(inside) > 0.9  # the crops follow the drawn face
    result = runner.invoke(app, ["train-head", *common, "--fold", "1", "--epochs", "1", "--out", str(run),
                                 "--set", "train.batch_size=4", "--set", "head.learnable=false", *SMALL_HEAD_SET,
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    video = sorted((raw_videos / "videos").glob("*.mp4"))[0]
    result = runner.invoke(app, ["predict", str(run), str(video), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["faces"]["detector"] == "centerface"
    frames = doc["predictions"][0]["frames"]
    assert len(frames) == 16 and all(len(f["box"]) == 4 for f in frames)
