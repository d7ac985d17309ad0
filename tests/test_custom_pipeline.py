"""pipelines/custom.toml: one's own folder of videos plus a CSV, read end to end from the pipeline file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tgdfer.labels import CLASSES
from tgdfer.pipeline import load_pipeline
from tgdfer.readers import fold_split
from tgdfer.synth import SynthConfig, generate

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
