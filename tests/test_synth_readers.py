"""SynthDFER read back through every reader: the same clip table whatever the annotation format."""

import pandas as pd
import pandas.testing as pdt
import pytest

from tgdfer.readers import fold_split, load_clips
from tgdfer.synth import SynthConfig, generate


@pytest.fixture(scope="module")
def synth_both(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_both")
    summary = generate(out, SynthConfig(clips=30, size=32, min_frames=6, max_frames=20, workers=1))
    return out, summary


@pytest.fixture(scope="module")
def synth_video(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_video")
    generate(out, SynthConfig(clips=12, size=32, min_frames=6, max_frames=20, workers=1, format="video"))
    return out


def test_frame_folders_read_identically_by_dfew_list_and_csv(synth_both):
    out, summary = synth_both
    dfew = load_clips("dfew", split_dir=out / "EmoLabel_DataSplit", frames_dir=out / "frames").table
    lst = load_clips("list", files=out / "lists", root=out).table
    csv = load_clips("csv", csv_file=out / "clips.csv", root=out, id_col="clip_id").table
    pdt.assert_frame_equal(dfew, lst)
    pdt.assert_frame_equal(dfew, csv)
    # ... and the table says what the generator made.
    expect = summary.set_index("clip_id").loc[dfew["clip_id"]]
    assert dfew["label"].tolist() == expect["label"].tolist()
    assert dfew["fold"].tolist() == expect["fold"].tolist()
    assert dfew["n_frames"].tolist() == expect["n_frames"].tolist()
    assert dfew["path"].map(lambda p: p.endswith(f"frames/{p.rsplit('/', 1)[-1]}")).all()


def test_videos_read_identically_by_dfew_and_list(synth_video):
    dfew = load_clips("dfew", split_dir=synth_video / "EmoLabel_DataSplit", videos_dir=synth_video / "videos").table
    lst = load_clips("list", files=synth_video / "lists", root=synth_video).table
    assert dfew["path"].str.endswith(".mp4").all()
    # DFEW's CSVs carry no frame count: the reader takes it from the container, and it must agree.
    pdt.assert_frame_equal(dfew, lst)


def test_each_clip_is_tested_in_exactly_one_fold(synth_both):
    out, _ = synth_both
    table = load_clips("dfew", split_dir=out / "EmoLabel_DataSplit", frames_dir=out / "frames").table
    tested = pd.concat([pd.Series(fold_split(table, k)[1]) for k in range(1, 6)])
    assert sorted(tested.tolist()) == list(range(len(table)))
    for k in range(1, 6):
        train, test = fold_split(table, k)
        assert not set(train) & set(test) and len(train) + len(test) == len(table)
