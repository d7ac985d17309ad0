"""SynthDFER: the file layout other modules read, determinism, episode structure and learnability."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tgdfer import faces, synth
from tgdfer.config import build
from tgdfer.errors import ConfigError, TgdferError
from tgdfer.labels import CLASSES, DFEW_CLASS_SHARES, NUM_CLASSES, class_index
from tgdfer.synth import SynthConfig, class_counts, generate, summarize

SMALL = dict(clips=70, size=48, min_frames=8, max_frames=24, folds=5, format="both")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A small dataset written by a 2-process pool (the determinism test reruns it in-process)."""
    out = tmp_path_factory.mktemp("synth") / "a"
    ticks = []
    table = generate(out, SynthConfig(**SMALL, workers=2), progress=ticks.append)
    assert sum(ticks) == SMALL["clips"]
    return out, table


def _read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, dtype={"clip_id": str, "video_name": str})


def _frames_of(out: Path, clip_id: str) -> list[Path]:
    return sorted((out / "frames" / clip_id).iterdir())


def test_layout_and_annotation_formats(small):
    out, table = small
    n = SMALL["clips"]
    ids = [f"{i:05d}" for i in range(1, n + 1)]
    assert list(table.clip_id) == ids
    assert (out / "clips.csv").read_text().splitlines()[0] == "clip_id,path,label,fold"
    assert (out / "frame_labels.csv").read_text().splitlines()[0] == "clip_id,frame,intensity,in_episode"
    clips = _read(out, "clips.csv")
    assert list(clips.clip_id) == ids
    assert list(clips.path) == [f"frames/{i}" for i in ids]
    assert set(clips.label) <= set(CLASSES)
    assert [class_index(c) for c in clips.label] == list(table.label)
    for row in table.itertuples():
        files = _frames_of(out, row.clip_id)
        assert [f.name for f in files] == [f"{row.clip_id}_{t:05d}.jpg" for t in range(1, row.n_frames + 1)]
        assert (out / "videos" / f"{row.clip_id}.mp4").stat().st_size > 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["config"]["clips"] == n and meta["tgdfer_version"]
    assert meta["class_counts"] == {c: int((table["class"] == c).sum()) for c in CLASSES}


def test_dfew_split_files_and_lists(small):
    out, table = small
    by_id = table.set_index("clip_id")
    tested = []
    for k in range(1, SMALL["folds"] + 1):
        splits = {}
        for split in ("train", "test"):
            path = out / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{k}.csv"
            assert path.read_text().splitlines()[0] == "video_name,label"
            df = _read(out, path.relative_to(out))
            assert df.video_name.str.fullmatch(r"\d{5}").all()
            assert (df.label.to_numpy() == by_id.loc[df.video_name, "label"].to_numpy() + 1).all()  # 1..7
            lines = (out / "lists" / f"set_{k}_{split}.txt").read_text().splitlines()
            assert lines == [f"frames/{c} {by_id.n_frames[c]} {by_id.label[c]}" for c in df.video_name]
            splits[split] = set(df.video_name)
        assert not splits["train"] & splits["test"] and splits["train"] | splits["test"] == set(table.clip_id)
        assert splits["test"] == set(table.clip_id[table.fold == k])
        tested += sorted(splits["test"])
    assert sorted(tested) == sorted(table.clip_id)  # each clip in the test set of exactly one fold


def test_frame_labels_match_clips_and_episodes_cover_part(small):
    out, table = small
    fl = _read(out, "frame_labels.csv")
    assert (fl.in_episode == (fl.intensity > 0).astype(int)).all()
    assert fl.intensity.between(0, 1).all()
    for row in table.itertuples():
        clip = fl[fl.clip_id == row.clip_id]
        assert list(clip.frame) == list(range(row.n_frames))
        inside = np.flatnonzero(clip.in_episode.to_numpy())
        assert inside[0] == row.episode_start and inside[-1] + 1 == row.episode_end
        assert len(inside) == inside[-1] - inside[0] + 1  # one contiguous episode
        assert 3 <= len(inside) <= row.n_frames - 2  # covers only part of the clip
        # onset rises to the apex, offset falls from it
        curve = clip.intensity.to_numpy()[inside]
        apex = int(np.argmax(curve))
        assert row.apex == row.episode_start + apex
        assert (np.diff(curve[: apex + 1]) >= 0).all() and (np.diff(curve[apex:]) <= 0).all()
    assert (table.n_frames < 16).any() and (table.n_frames >= 16).any()
    assert table.n_frames.between(SMALL["min_frames"], SMALL["max_frames"]).all()


def test_mp4_matches_the_jpeg_frames(small):
    out, table = small
    row = table.iloc[0]
    with av.open(str(out / "videos" / f"{row.clip_id}.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        video = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    jpegs = np.stack([np.asarray(Image.open(p)) for p in _frames_of(out, row.clip_id)])
    assert video.shape == jpegs.shape == (row.n_frames, 48, 48, 3)
    assert np.abs(video.astype(int) - jpegs.astype(int)).mean() < 12  # same content, two lossy codecs


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_same_seed_same_bytes_any_worker_count(small, tmp_path):
    out, table = small
    again = generate(tmp_path / "b", SynthConfig(**SMALL, workers=1))
    pd.testing.assert_frame_equal(table, again)
    other = tmp_path / "b"
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.suffix != ".mp4")
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file() and p.suffix != ".mp4")
    for rel in files:  # JPEGs, CSVs, lists, meta.json
        assert (out / rel).read_bytes() == (other / rel).read_bytes(), rel
    for clip_id in table.clip_id:  # the contract is "same decoded frames"
        video = f"videos/{clip_id}.mp4"
        assert np.array_equal(_decode(out / video), _decode(other / video)), video


def test_other_seed_other_data(small, tmp_path):
    out, table = small
    other = generate(tmp_path / "c", SynthConfig(**{**SMALL, "format": "frames"}, seed=1, workers=1))
    assert not table[["label", "n_frames", "episode_start"]].equals(other[["label", "n_frames", "episode_start"]])
    first = "00001/00001_00001.jpg"
    assert (out / "frames" / first).read_bytes() != (tmp_path / "c" / "frames" / first).read_bytes()


def test_class_counts_follow_shares():
    shares = np.asarray(DFEW_CLASS_SHARES) / sum(DFEW_CLASS_SHARES)
    big = class_counts(10_000, shares)
    assert big.sum() == 10_000 and np.abs(big / 10_000 - shares).max() < 1e-3
    small = class_counts(60, shares)
    assert small.sum() == 60 and (small >= 1).all()  # every class shows up, Disgust (1.2%) included
    assert np.abs(small / 60 - shares).max() < 0.03
    assert list(class_counts(14, np.full(7, 1 / 7))) == [2] * 7
    assert list(class_counts(5, np.array([1, 0, 0, 0, 0, 0, 0.0]))) == [5, 0, 0, 0, 0, 0, 0]


def test_generated_labels_follow_shares_and_folds_are_stratified(small):
    out, table = small
    cfg = SynthConfig(**SMALL)
    counts = table.label.value_counts().reindex(range(NUM_CLASSES), fill_value=0).to_numpy()
    assert list(counts) == list(class_counts(SMALL["clips"], cfg.shares()))
    assert counts[CLASSES.index("Happiness")] > 3 * counts[CLASSES.index("Disgust")]  # DFEW imbalance by default
    fold_sizes = table.fold.value_counts()
    assert sorted(fold_sizes.index) == [1, 2, 3, 4, 5] and fold_sizes.max() - fold_sizes.min() <= 1
    per_class = pd.crosstab(table.label, table.fold)
    assert (per_class.max(axis=1) - per_class.min(axis=1) <= 1).all()  # stratified


def test_distractor_is_another_class_outside_the_episode():
    cfg = SynthConfig(clips=60, min_frames=12, max_frames=30, distractor_prob=1.0)
    plans = synth.plan(cfg)
    with_distractor = [p for p in plans if p.distractor >= 0]
    assert len(with_distractor) > 40
    for p in with_distractor:
        assert p.distractor not in (p.label, CLASSES.index("Neutral"))
        assert not ((p.intensity > 0) & (p.distractor_intensity > 0)).any()
        assert p.distractor_intensity.max() <= cfg.distractor_intensity[1] < p.intensity.max()


def test_summarize_reads_counts_back(small):
    out, table = small
    s = summarize(out)
    assert list(s.index) == [*CLASSES, "total"]
    assert s.loc["total", "clips"] == SMALL["clips"]
    for k in range(1, SMALL["folds"] + 1):
        assert s.loc["total", f"fold_{k}"] == (table.fold == k).sum()
        assert s.loc["Happiness", f"fold_{k}"] == ((table.fold == k) & (table.label == 0)).sum()
    assert s.loc["total", "short"] == (table.n_frames < 16).sum()
    assert s.loc["total", "share"] == pytest.approx(1.0)


def test_summarize_rejects_a_folder_without_annotations(tmp_path):
    with pytest.raises(TgdferError, match="clips.csv"):
        summarize(tmp_path)


@pytest.mark.parametrize(
    "field, value",
    [
        ("clips", 0), ("seed", -1), ("format", "gif"), ("size", 47), ("size", 16), ("min_frames", 2),
        ("max_frames", 7), ("folds", 1), ("class_shares", (1.0, 2.0)), ("class_shares", (0.0,) * 7),
        ("class_shares", (-1.0, 1, 1, 1, 1, 1, 1)), ("workers", -1), ("episode_fraction", (0.6, 0.3)),
        ("apex_intensity", (0.5, 1.5)), ("distractor_prob", 1.5), ("noise", -0.1), ("jpeg_quality", 0), ("crf", 60),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        SynthConfig(**{field: value})
    assert err.value.field == field


def test_config_from_toml_table():
    table = {"clips": 12, "class_shares": [1, 1, 1, 1, 1, 1, 1], "episode_fraction": [0.2, 0.5]}
    cfg = build(SynthConfig, table, "synth")
    assert cfg.class_shares == (1.0,) * 7 and cfg.episode_fraction == (0.2, 0.5)
    with pytest.raises(ConfigError, match=r"synth\.size.*even"):
        build(SynthConfig, {"size": 63}, "synth")


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    tiny = SynthConfig(clips=4, folds=2, size=32, min_frames=5, max_frames=6, format="frames", workers=1)
    with pytest.raises(TgdferError, match="overwrite=True"):
        generate(out, tiny)
    generate(out, tiny, overwrite=True)
    (out / "frames" / "00001" / "stale.jpg").write_bytes(b"x")
    table = generate(out, SynthConfig(**{**tiny.__dict__, "format": "video"}), overwrite=True)
    assert not (out / "frames").exists()  # old outputs are replaced, not mixed
    assert (out / "notes.txt").read_text() == "mine"  # files that are not ours are left alone
    assert list(table.path) == [f"videos/{c}.mp4" for c in table.clip_id]
    assert (out / "lists" / "set_1_test.txt").read_text().split()[0].startswith("videos/")


def test_overwrite_deletes_only_a_folder_synth_made(tmp_path):
    out = tmp_path / "DFEW"  # a real dataset's folder names, and a user's own video
    (out / "EmoLabel_DataSplit").mkdir(parents=True)
    (out / "EmoLabel_DataSplit" / "set_1.csv").write_text("video_name,label\n1,1\n")
    (out / "videos").mkdir()
    (out / "videos" / "my_interview.mp4").write_bytes(b"mine")
    tiny = SynthConfig(clips=4, folds=2, size=32, min_frames=5, max_frames=6, format="frames", workers=1)
    with pytest.raises(TgdferError, match="holds videos, EmoLabel_DataSplit but no meta.json written by tgdfer synth"):
        generate(out, tiny, overwrite=True)
    assert (out / "videos" / "my_interview.mp4").read_bytes() == b"mine"
    synth = tmp_path / "synth"
    generate(synth, tiny)
    (synth / "meta.json").write_text('{"generator": "tgdfer.synth", "complete": false}')  # as an interrupted run leaves it
    generate(synth, tiny, overwrite=True)
    assert json.loads((synth / "meta.json").read_text())["complete"] is True


def test_folds_out_of_range_name_the_clips_as_the_upper_bound():
    with pytest.raises(ConfigError, match=r"5 is out of range; expected 2 <= folds <= clips \(3\)"):
        SynthConfig(clips=3)


def test_emotion_prototypes_follow_facs():
    au = {name: i for i, name in enumerate(faces.AUS)}
    happy, surprise = faces.emotion_aus(class_index("happy")), faces.emotion_aus(class_index("surprise"))
    assert happy[au["AU6"]] > 0 and happy[au["AU12"]] > 0 and happy.sum() == happy[au["AU6"]] + happy[au["AU12"]]
    assert all(surprise[au[a]] > 0 for a in ("AU1", "AU2", "AU5", "AU26"))
    assert faces.emotion_aus(class_index("neutral")).sum() == 0
    assert all(faces.emotion_aus(c).any() for c in range(NUM_CLASSES) if CLASSES[c] != "Neutral")


# ---------------------------------------------------------------------------------------------
# Learnability: the class is visible at the apex and nowhere else
# ---------------------------------------------------------------------------------------------

def _pixels(out: Path, rows: pd.DataFrame) -> torch.Tensor:
    """Grayscale, central crop (the face), 24x24, standardised per image.  # [N, 576]"""
    xs = []
    for r in rows.itertuples():
        im = Image.open(out / "frames" / r.clip_id / f"{r.clip_id}_{r.frame + 1:05d}.jpg").convert("L")
        c = round(im.size[0] * 0.12)
        im = im.crop((c, c, im.size[0] - c, im.size[1] - c)).resize((24, 24), Image.BILINEAR)
        xs.append(np.asarray(im, np.float32).ravel())
    x = torch.tensor(np.stack(xs))
    return (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-3)


def _logreg_accuracy(x: torch.Tensor, y: torch.Tensor, folds: np.ndarray) -> float:
    """Multinomial logistic regression, 5-fold cross-validated over the DFEW-style folds."""
    correct = 0
    for k in np.unique(folds):
        test = torch.from_numpy(folds == k)
        mu, sd = x[~test].mean(0), x[~test].std(0) + 1e-3
        torch.manual_seed(0)
        lin = torch.nn.Linear(x.shape[1], NUM_CLASSES)
        opt = torch.optim.Adam(lin.parameters(), lr=0.05, weight_decay=1e-3)
        for _ in range(300):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(lin((x[~test] - mu) / sd), y[~test]).backward()
            opt.step()
        with torch.no_grad():
            correct += (lin((x[test] - mu) / sd).argmax(1) == y[test]).sum().item()
    return correct / len(y)


@pytest.mark.slow  # 210 clips drawn and a classifier fitted per frame type (make test-slow)
def test_class_is_learnable_at_the_apex_and_not_outside_the_episode(tmp_path):
    """Measured with this config over seeds 0..7: apex 0.46-0.54, outside 0.10-0.18 (chance 1/7 = 0.143)."""
    out = tmp_path / "learn"
    uniform = (1.0,) * NUM_CLASSES  # chance is 1/7
    cfg = SynthConfig(clips=210, size=48, min_frames=10, max_frames=20, format="frames", class_shares=uniform)
    generate(out, cfg)
    clips = _read(out, "clips.csv")
    clips["y"] = clips.label.map(class_index)
    frames = _read(out, "frame_labels.csv").merge(clips[["clip_id", "y", "fold"]], on="clip_id")
    apex = frames.loc[frames.groupby("clip_id").intensity.idxmax()]
    outside = frames[frames.in_episode == 0].groupby("clip_id").sample(1, random_state=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and deterministic
    try:
        acc = {
            name: _logreg_accuracy(_pixels(out, rows), torch.tensor(rows.y.to_numpy()), rows.fold.to_numpy())
            for name, rows in (("apex", apex), ("outside", outside))
        }
    finally:
        torch.set_num_threads(threads)
    chance = 1 / NUM_CLASSES
    assert acc["apex"] > 2.5 * chance, acc
    assert acc["outside"] < 1.5 * chance, acc
