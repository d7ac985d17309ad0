"""Annotation readers: exact clip tables from small fixtures in the real formats, and clear errors."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tgdfer.errors import AnnotationError, ConfigError
from tgdfer.labels import CLASSES
from tgdfer.readers import (
    COLUMNS,
    DTYPES,
    READERS,
    SKIPPED_COLUMNS,
    ClipTable,
    fold_split,
    load_clips,
    read_csv,
    read_dfew,
    read_ferv39k,
    read_list,
)

TRAIN, TEST = "train(single-labeled)", "test(single-labeled)"


# ----------------------------------------------------------------------------- fixtures


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


JPEG = _jpeg_bytes()


def frames(folder: Path, n: int, stem: str | None = None) -> Path:
    """A DFEW-style frame folder: <stem>_<NNNNN>.jpg, frames numbered from 1."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        (folder / f"{stem or folder.name}_{i:05d}.jpg").write_bytes(JPEG)
    return folder


def video(path: Path, n: int) -> Path:
    """A tiny video of n frames (mpeg4; .mkv does not record its frame count)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
        for i in range(n):
            img = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 20 * i, np.uint8), format="rgb24")
            for packet in s.encode(img):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# (clip_id, 0-based label, test fold, n_frames): 2 folds, 3 clips each
SYNTH = [("00001", 0, 1, 3), ("00002", 4, 2, 5), ("00003", 6, 1, 2),
         ("00004", 5, 2, 4), ("00005", 2, 1, 3), ("00006", 0, 2, 1)]


def make_synth(out: Path, clips=SYNTH, folds: int = 2) -> Path:
    """SynthDFER's layout (frames, DFEW split csvs, per-fold lists, clips.csv), written here by hand."""
    for clip_id, _, _, n in clips:
        frames(out / "frames" / clip_id, n)
    for k in range(1, folds + 1):
        for part, keep in (("train", lambda f: f != k), ("test", lambda f: f == k)):
            chosen = [c for c in clips if keep(c[2])]
            write(out / "EmoLabel_DataSplit" / f"{part}(single-labeled)" / f"set_{k}.csv",
                  "video_name,label\n" + "".join(f"{c[0]},{c[1] + 1}\n" for c in chosen))
            write(out / "lists" / f"set_{k}_{part}.txt", "".join(f"frames/{c[0]} {c[3]} {c[1]}\n" for c in chosen))
    write(out / "clips.csv", "clip_id,path,label,fold\n"
          + "".join(f"{c[0]},frames/{c[0]},{CLASSES[c[1]]},{c[2]}\n" for c in clips))
    return out


def expected(rows, root: Path) -> pd.DataFrame:
    """A clip table from (clip_id, relative path, label, fold, split, n_frames) rows."""
    cols = list(zip(*rows))
    data = {name: list(col) for name, col in zip(COLUMNS, cols)}
    data["path"] = [str((root / p).resolve()) for p in data["path"]]
    return pd.DataFrame({name: pd.array(data[name], dtype=DTYPES[name]) for name in COLUMNS})


def synth_expected(out: Path, clips=SYNTH) -> pd.DataFrame:
    return expected([(c[0], f"frames/{c[0]}", c[1], c[2], None, c[3]) for c in clips], out)


def check_table(result: ClipTable, want: pd.DataFrame) -> None:
    assert list(result.table.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in result.table.dtypes.items()} == DTYPES
    pd.testing.assert_frame_equal(result.table, want)


def raises_at(exc_info, path: Path, line: int | None, *words: str) -> None:
    """The AnnotationError names this file and line, and its message holds every word."""
    err = exc_info.value
    assert err.path == str(path) and err.line == line, str(err)
    for w in words:
        assert w in str(err), str(err)


# ----------------------------------------------------------------------------- DFEW


def test_dfew_table_and_folds(tmp_path):
    out = make_synth(tmp_path)
    result = read_dfew(out / "EmoLabel_DataSplit", out / "frames")
    check_table(result, synth_expected(out))
    assert result.skipped.empty and list(result.skipped.columns) == list(SKIPPED_COLUMNS)
    train, test = fold_split(result.table, 2)
    assert train.dtype == np.int64
    assert train.tolist() == [0, 2, 4] and test.tolist() == [1, 3, 5]


def test_dfew_unpadded_names_and_videos(tmp_path):
    split = tmp_path / "EmoLabel_DataSplit"
    write(split / TEST / "set_1.csv", "video_name,label\n1,2\n00012,7\n")
    write(split / TRAIN / "set_1.csv", "video_name,label\n00003,1\n")
    write(split / TEST / "set_2.csv", "video_name,label\n3,1\n")
    write(split / TRAIN / "set_2.csv", "video_name,label\n00001,2\n12,7\n")
    vids = tmp_path / "original"
    video(vids / "1.mp4", 7)  # written unpadded on disk
    video(vids / "00012.mkv", 5)  # container without a frame count: counted from its packets
    video(vids / "00003.avi", 4)
    result = read_dfew(split, videos_dir=vids)
    check_table(result, expected([("00001", "original/1.mp4", 1, 1, None, 7),
                                  ("00003", "original/00003.avi", 0, 2, None, 4),
                                  ("00012", "original/00012.mkv", 6, 1, None, 5)], tmp_path))


def test_dfew_needs_exactly_one_clip_source(tmp_path):
    out = make_synth(tmp_path)
    for kwargs in ({}, {"frames_dir": out / "frames", "videos_dir": out / "videos"}):
        with pytest.raises(ConfigError, match="frames_dir"):
            read_dfew(out / "EmoLabel_DataSplit", **kwargs)
    with pytest.raises(ConfigError) as e:
        read_dfew(out / "EmoLabel_DataSplit", videos_dir=out / "videos")
    assert e.value.field == "videos_dir" and "folder not found" in str(e.value)


def test_dfew_clip_in_two_test_sets(tmp_path):
    out = make_synth(tmp_path)
    split = out / "EmoLabel_DataSplit"
    with (split / TEST / "set_2.csv").open("a") as f:
        f.write("1,1\n")  # 00001 is already fold 1's test clip
    with pytest.raises(AnnotationError) as e:
        read_dfew(split, out / "frames")
    raises_at(e, split / TEST / "set_2.csv", 5, "two test lists", str(split / TEST / "set_1.csv"))


def test_dfew_label_conflict_names_both_files(tmp_path):
    out = make_synth(tmp_path)
    split = out / "EmoLabel_DataSplit"
    write(split / TRAIN / "set_2.csv", "video_name,label\n00001,2\n00003,7\n00005,3\n")  # 00001 is 1 in set_1
    with pytest.raises(AnnotationError) as e:
        read_dfew(split, out / "frames")
    raises_at(e, split / TRAIN / "set_2.csv", 2, "Sadness", "Happiness", f"{split / TEST / 'set_1.csv'}:2")


@pytest.mark.parametrize("label", ["0", "8"])
def test_dfew_label_out_of_range(tmp_path, label):
    out = make_synth(tmp_path)
    bad = write(out / "EmoLabel_DataSplit" / TEST / "set_1.csv", f"video_name,label\n1,1\n3,{label}\n5,7\n")
    with pytest.raises(AnnotationError) as e:
        read_dfew(out / "EmoLabel_DataSplit", out / "frames")
    raises_at(e, bad, 3, f"label {label}", "1..7")


@pytest.mark.parametrize("text, line, words", [
    ("video_name,label\n1,1\nabc,2\n", 3, ["video_name 'abc'", "not an integer"]),
    ("video_name,label\n1,1\n3,2,9\n", 3, ["expected 2 fields"]),
    ("name,label\n1,1\n", 1, ["no column 'video_name'"]),
    ("video_name,label\n", None, ["no clips"]),
    ("", 1, ["no column 'video_name'"]),
])
def test_dfew_malformed_csv(tmp_path, text, line, words):
    out = make_synth(tmp_path)
    bad = write(out / "EmoLabel_DataSplit" / TEST / "set_1.csv", text)
    with pytest.raises(AnnotationError) as e:
        read_dfew(out / "EmoLabel_DataSplit", out / "frames")
    raises_at(e, bad, line, *words)


def test_dfew_missing_files(tmp_path):
    out = make_synth(tmp_path)
    split = out / "EmoLabel_DataSplit"
    (split / TRAIN / "set_2.csv").unlink()
    with pytest.raises(AnnotationError) as e:
        read_dfew(split, out / "frames")
    raises_at(e, split / TRAIN / "set_2.csv", None, "file not found", str(split / TEST / "set_2.csv"))
    with pytest.raises(AnnotationError) as e:
        read_dfew(tmp_path / "nowhere", out / "frames")
    raises_at(e, tmp_path / "nowhere" / TEST, None, "folder not found", "EmoLabel_DataSplit")


def test_dfew_clip_in_no_test_set(tmp_path):
    out = make_synth(tmp_path)
    train = write(out / "EmoLabel_DataSplit" / TRAIN / "set_1.csv", "video_name,label\n2,5\n4,6\n6,1\n9,1\n")
    with pytest.raises(AnnotationError) as e:
        read_dfew(out / "EmoLabel_DataSplit", out / "frames")
    raises_at(e, train, 5, "clip 00009", "no test list")


def test_dfew_warns_when_a_train_list_omits_clips(tmp_path, caplog):
    out = make_synth(tmp_path)
    write(out / "EmoLabel_DataSplit" / TRAIN / "set_1.csv", "video_name,label\n2,5\n4,6\n")  # 00006 missing
    with caplog.at_level(logging.WARNING, logger="tgdfer.readers"):
        result = read_dfew(out / "EmoLabel_DataSplit", out / "frames")
    assert "fold 1's train list omits 1 clips" in caplog.text and "00006" in caplog.text
    assert fold_split(result.table, 1)[0].tolist() == [1, 3, 5]


# ----------------------------------------------------------------------------- missing clips


def test_missing_clip_error_and_skip(tmp_path):
    out = make_synth(tmp_path)
    split, test1 = out / "EmoLabel_DataSplit", out / "EmoLabel_DataSplit" / TEST / "set_1.csv"
    for f in (out / "frames" / "00003").iterdir():
        f.unlink()  # empty frame folder: test line 3 of set_1
    (out / "frames" / "00002").rename(out / "elsewhere")  # nothing there: test line 2 of set_2
    with pytest.raises(AnnotationError) as e:
        read_dfew(split, out / "frames")
    raises_at(e, split / TEST / "set_2.csv", 2, "clip 00002", "nothing at", 'data.args.missing = "skip"', "missing='skip'")
    result = read_dfew(split, out / "frames", missing="skip")
    check_table(result, synth_expected(out, [c for c in SYNTH if c[0] not in ("00002", "00003")]))
    skipped = result.skipped
    assert {c: str(t) for c, t in skipped.dtypes.items()} == {
        "source": "str", "line": "Int64", "clip_id": "str", "reason": "str", "label": "Int64", "fold": "Int64",
        "split": "string", "path": "str"}
    assert skipped[["label", "fold", "path"]].values.tolist() == [[4, 2, str(out / "frames" / "00002")],
                                                                  [6, 1, str(out / "frames" / "00003")]]
    assert skipped[["source", "line", "clip_id"]].values.tolist() == [
        [str(split / TEST / "set_2.csv"), 2, "00002"], [str(test1), 3, "00003"]]
    assert skipped["reason"].str.contains("nothing at").tolist() == [True, False]
    assert "holds no images" in skipped["reason"][1]


def test_every_clip_skipped_is_an_error(tmp_path):
    lst = write(tmp_path / "test.txt", "a 3 0\nb 3 1\n")
    with pytest.raises(AnnotationError, match="every clip was skipped"):
        read_list(lst, missing="skip")
    with pytest.raises(ConfigError, match="missing"):
        read_list(lst, missing="ignore")


def test_empty_video_file_is_missing(tmp_path):
    write(tmp_path / "v.mp4", "")
    lst = write(tmp_path / "test.txt", "v.mp4 3 0\n")
    with pytest.raises(AnnotationError) as e:
        read_list(lst)
    raises_at(e, lst, 1, "video file", "is empty")


# ----------------------------------------------------------------------------- FERV39k


def make_ferv39k(tmp_path: Path) -> tuple[Path, Path]:
    """FERV39k's layout: 2_ClipsforFaceCrop/<Scene>/<Emotion>/<NNNN>/*.jpg and 4_setups/All_scenes lists."""
    clips = tmp_path / "FERV39k" / "2_ClipsforFaceCrop"
    for rel, n in (("Action/Happy/0001", 3), ("Action/Sad/0001", 2), ("Talk-Show/Angry/0007", 4),
                   ("Talk-Show/Fear/0002", 1)):
        frames(clips / rel, n, stem="frame")
    setup = tmp_path / "FERV39k" / "4_setups" / "All_scenes"
    write(setup / "train_All.csv", "Action/Happy/0001 Happy\nTalk-Show/Angry/0007 Angry\nTalk-Show/Fear/0002 Fear\n")
    write(setup / "test_All.csv", "Action/Sad/0001 Sad\n")
    return setup, clips


def test_ferv39k_official_lists(tmp_path):
    setup, clips = make_ferv39k(tmp_path)
    want = expected([("Action/Happy/0001", "Action/Happy/0001", 0, None, "train", 3),
                     ("Action/Sad/0001", "Action/Sad/0001", 1, None, "test", 2),
                     ("Talk-Show/Angry/0007", "Talk-Show/Angry/0007", 3, None, "train", 4),
                     ("Talk-Show/Fear/0002", "Talk-Show/Fear/0002", 6, None, "train", 1)], clips)
    check_table(read_ferv39k(setup, clips), want)
    mapping = {"train": setup / "train_All.csv", "test": str(setup / "test_All.csv")}
    check_table(read_ferv39k(mapping, clips), want)
    train, test = fold_split(want, None)
    assert train.tolist() == [0, 2, 3] and test.tolist() == [1]


@pytest.mark.parametrize("line_text, words", [
    ("Action/Sad/0001 Sadd", ["label 'Sadd'", "not an emotion", "Happiness"]),
    ("Action/Sad/0001", ["expected 2 fields"]),
    ("Action/Sad/0001,Sad", ["expected 2 fields"]),
])
def test_ferv39k_bad_lines(tmp_path, line_text, words):
    setup, clips = make_ferv39k(tmp_path)
    bad = write(setup / "test_All.csv", f"Action/Happy/0001 Happy\n{line_text}\n")
    with pytest.raises(AnnotationError) as e:
        read_ferv39k(setup, clips)
    raises_at(e, bad, 2, *words)


def test_ferv39k_clip_in_train_and_test(tmp_path):
    setup, clips = make_ferv39k(tmp_path)
    bad = write(setup / "test_All.csv", "Action/Sad/0001 Sad\n\nTalk-Show/Fear/0002 Fear\n")
    with pytest.raises(AnnotationError) as e:
        read_ferv39k(setup, clips)
    raises_at(e, bad, 3, "Talk-Show/Fear/0002", "test list here", str(setup / "train_All.csv"))


# ----------------------------------------------------------------------------- plain lists


def test_list_train_test_pair_with_videos_and_absolute_paths(tmp_path):
    data = tmp_path / "data"
    frames(data / "2_ClipsforFaceCrop" / "Action" / "Happy" / "0267", 4, stem="f")
    video(data / "2_ClipsforFaceCrop" / "Action" / "Sad" / "0010.mp4", 6)
    ann = tmp_path / "annotation"
    write(ann / "FERV39K_train.txt", f"{data}/2_ClipsforFaceCrop/Action/Happy/0267 4 0\n")
    write(ann / "FERV39K_test.txt", "../data/2_ClipsforFaceCrop/Action/Sad/0010.mp4 9 1\n")  # relative to ann/
    result = read_list(ann)
    # n_frames of a video comes from the annotation (9), not from the container (6)
    check_table(result, expected([("Happy/0267", "data/2_ClipsforFaceCrop/Action/Happy/0267", 0, None, "train", 4),
                                  ("Sad/0010", "data/2_ClipsforFaceCrop/Action/Sad/0010.mp4", 1, None, "test", 9)],
                                 tmp_path))


def test_list_folder_count_wins_over_annotation(tmp_path, caplog):
    frames(tmp_path / "clips" / "a", 5)
    frames(tmp_path / "clips" / "b", 2)
    lst = write(tmp_path / "test.txt", "clips/a 5 0\nclips/b 16 3\n")
    with caplog.at_level(logging.WARNING, logger="tgdfer.readers"):
        result = read_list(lst)
    assert result.table["n_frames"].tolist() == [5, 2]
    assert "1 clips: annotated n_frames differs" in caplog.text and f"{lst}:2 says 16" in caplog.text


def test_frame_folders_are_counted_as_their_frame_source_reads_them(tmp_path, caplog):
    tif = tmp_path / "clips" / "tif"
    tif.mkdir(parents=True)
    for k in range(3):  # TIFF frames: read by FolderSource, so counted too
        Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(tif / f"{k:05d}.tif")
    mac = frames(tmp_path / "clips" / "mac", 2)
    for f in sorted(mac.iterdir()):  # a copy through an exFAT drive: AppleDouble files beside each frame
        (mac / f"._{f.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    stray = frames(tmp_path / "clips" / "stray", 4)  # stray_00001.jpg ... stray_00004.jpg
    (stray / "stray_00002 2.jpg").write_bytes(JPEG)  # a file manager's copy
    dup = frames(tmp_path / "clips" / "dup", 2)
    (dup / "dup_1.jpg").write_bytes(JPEG)  # dup_00001.jpg's number again
    lst = write(tmp_path / "test.txt", "clips/tif 0\nclips/mac 1\nclips/stray 2\nclips/dup 3\n")
    with caplog.at_level(logging.WARNING, logger="tgdfer.readers"):
        result = read_list(lst, missing="skip")
    assert result.table.set_index("clip_id")["n_frames"].to_dict() == {"tif": 3, "mac": 2, "stray": 5}
    assert "1 frame folders hold images named unlike their other frames" in caplog.text
    assert f"{stray}: stray_00002 2.jpg" in caplog.text
    assert "dup_00001.jpg and dup_1.jpg are the same frame number" in result.skipped["reason"].iloc[0]


def test_list_root_and_per_fold_mapping(tmp_path):
    out = make_synth(tmp_path)
    lists = {f"set_{k}_{p}": out / "lists" / f"set_{k}_{p}.txt" for k in (1, 2) for p in ("train", "test")}
    check_table(read_list(lists, root=out), synth_expected(out))
    tests_only = [out / "lists" / "set_1_test.txt", out / "lists" / "set_2_test.txt"]
    check_table(read_list(tests_only, root=out), synth_expected(out))


@pytest.mark.parametrize("text, line, words", [
    ("frames/00001 3 0\nframes/00002 5\n", 2, ["expected 3 fields 'path n_frames label', got 2"]),
    ("frames/00001 3 0\nframes/00002 5 4 1\n", 2, ["got 4"]),
    ("frames/00001 3 0\nframes/00002 five 4\n", 2, ["n_frames 'five' is not an integer"]),
    ("frames/00001 3 0\nframes/00002 0 4\n", 2, ["n_frames 0", ">= 1"]),
    ("frames/00001 3 7\n", 1, ["label 7", "0..6"]),
    ("frames/00001 3 -1\n", 1, ["label -1", "0..6"]),
    ("\n\n", None, ["no clips"]),
    ("frames/00001 3 0\nframes/00001 3 0\n", 2, ["listed twice", "lines 1 and 2"]),
])
def test_list_malformed(tmp_path, text, line, words):
    out = make_synth(tmp_path)
    bad = write(out / "lists" / "set_1_test.txt", text)
    with pytest.raises(AnnotationError) as e:
        read_list(out / "lists", root=out)
    raises_at(e, bad, line, *words)


def test_list_missing_file_and_bad_roles(tmp_path):
    out = make_synth(tmp_path)
    with pytest.raises(AnnotationError) as e:
        read_list({"test": out / "lists" / "nope.txt"}, root=out)
    raises_at(e, out / "lists" / "nope.txt", None, "file not found")
    with pytest.raises(AnnotationError, match="annotation file or folder not found"):
        read_list(out / "nope")
    with pytest.raises(AnnotationError, match="cannot tell the part"):
        read_list([out / "clips.csv"])
    write(out / "lists" / "train.txt", "frames/00001 3 0\n")
    with pytest.raises(AnnotationError, match="mixes per-fold lists"):
        read_list(out / "lists", root=out)
    with pytest.raises(AnnotationError, match="are the set_1_test list"):
        read_list([out / "lists" / "set_1_test.txt", write(out / "DFEW_set_1_test.txt", "x 1 0\n")], root=out)
    with pytest.raises(AnnotationError, match="need the test lists"):
        read_list(out / "lists", root=out, pattern="set_*_train.txt")
    with pytest.raises(AnnotationError, match="no annotation files matching"):
        read_list(out / "lists", pattern="*.json")


def test_list_inconsistent_n_frames_across_files(tmp_path):
    out = make_synth(tmp_path)
    bad = write(out / "lists" / "set_2_train.txt", "frames/00001 4 0\nframes/00003 2 6\nframes/00005 3 2\n")
    with pytest.raises(AnnotationError) as e:
        read_list(out / "lists", root=out)
    raises_at(e, bad, 1, "n_frames 4 here but 3")


# ----------------------------------------------------------------------------- generic CSV


def test_csv_names_aliases_and_one_based_ints(tmp_path):
    out = make_synth(tmp_path)
    write(out / "split.csv", "path,emotion,part,name\nframes/00001,happy,train,a\nframes/00002,SURPRISE,Test,b\n")
    result = read_csv(out / "split.csv", label_col="emotion", fold_col=None, split_col="part", id_col="name")
    check_table(result, expected([("a", "frames/00001", 0, None, "train", 3),
                                  ("b", "frames/00002", 4, None, "test", 5)], out))
    write(out / "ints.csv", "path,label\nframes/00004,6\nframes/00006,1\n")
    result = read_csv(out / "ints.csv", fold_col=None, label_base=1)
    check_table(result, expected([("00004", "frames/00004", 5, None, None, 4),
                                  ("00006", "frames/00006", 0, None, None, 1)], out))
    with pytest.raises(ConfigError, match="no row has a fold or a split"):
        fold_split(result.table, None)


@pytest.mark.parametrize("text, kwargs, line, words", [
    ("path,label,fold\nframes/00001,Joy,1\n", {}, 2, ["label 'Joy'", "not an emotion"]),
    ("path,label,fold\nframes/00001,7,1\n", {}, 2, ["label 7", "0..6"]),
    ("path,label,fold\nframes/00001,0,1\n", {"label_base": 1}, 2, ["label 0", "1..7"]),
    ("path,label,fold\nframes/00001,0,0\n", {}, 2, ["fold 0", ">= 1"]),
    ("path,label,fold\nframes/00001,0,x\n", {}, 2, ["fold 'x' is not an integer"]),
    ("path,label\nframes/00001,0\n", {"fold_col": "fold"}, 1, ["no column 'fold'", "columns: path, label"]),
    ("path,label,split\nframes/00001,0,val\n", {"fold_col": None, "split_col": "split"}, 2, ["'train' or 'test'"]),
    ("path,label,fold\nframes/00001,0,1\nframes/00001,1,2\n", {}, 3, ["listed twice"]),
])
def test_csv_bad_input(tmp_path, text, kwargs, line, words):
    out = make_synth(tmp_path)
    bad = write(out / "bad.csv", text)
    with pytest.raises(AnnotationError) as e:
        read_csv(bad, **kwargs)
    raises_at(e, bad, line, *words)


def test_csv_config_errors(tmp_path):
    out = make_synth(tmp_path)
    with pytest.raises(ConfigError, match="split_col"):
        read_csv(out / "clips.csv", split_col="fold")
    with pytest.raises(ConfigError, match="label_base"):
        read_csv(out / "clips.csv", label_base=2)


# ----------------------------------------------------------------------------- one table, three readers


def test_dfew_list_and_csv_readers_agree(tmp_path):
    out = make_synth(tmp_path)
    dfew = read_dfew(out / "EmoLabel_DataSplit", out / "frames").table
    lists = read_list(out / "lists", root=out).table
    clips = read_csv(out / "clips.csv", id_col="clip_id").table
    derived_ids = read_csv(out / "clips.csv").table
    pd.testing.assert_frame_equal(dfew, lists)
    pd.testing.assert_frame_equal(dfew, clips)
    pd.testing.assert_frame_equal(dfew, derived_ids)
    check_table(ClipTable(dfew, None), synth_expected(out))


# ----------------------------------------------------------------------------- registry, folds


def test_load_clips_dispatches_by_kind(tmp_path):
    out = make_synth(tmp_path)
    assert set(READERS) == {"dfew", "ferv39k", "list", "csv"}
    via = load_clips("dfew", split_dir=str(out / "EmoLabel_DataSplit"), frames_dir=str(out / "frames"))
    pd.testing.assert_frame_equal(via.table, synth_expected(out))
    with pytest.raises(ConfigError) as e:
        load_clips("afew", files=out)
    assert e.value.field == "kind" and "dfew, ferv39k, list, csv" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_clips("list", file=out / "lists")
    assert e.value.field == "file" and "files, root, pattern, fields, label_base" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_clips("ferv39k", lists=out / "lists")
    assert e.value.field == "root" and "required" in str(e.value)


@pytest.mark.parametrize("fold, words", [(None, "folds 1, 2"), (3, "folds 1, 2"), (True, "got True")])
def test_fold_split_rejects_bad_fold_on_fold_data(tmp_path, fold, words):
    table = synth_expected(tmp_path)
    with pytest.raises(ConfigError) as e:
        fold_split(table, fold)
    assert e.value.field == "fold" and words in str(e.value)


def test_fold_split_rejects_fold_on_split_data(tmp_path):
    setup, clips = make_ferv39k(tmp_path)
    table = read_ferv39k(setup, clips).table
    with pytest.raises(ConfigError) as e:
        fold_split(table, 1)
    assert e.value.field == "fold" and "set fold to none" in str(e.value)


# ----------------------------------------------------------------------------- text encodings


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_csv_in_any_unicode_encoding_with_its_byte_order_mark_reads_alike(tmp_path, encoding):
    """Excel's "Unicode Text" export is a UTF-16 TSV with a BOM and CRLF line ends; it used to fail
    ("'utf-8' codec can't decode byte 0xff")."""
    frames(tmp_path / "clips" / "a", 3)
    frames(tmp_path / "clips" / "b", 4)
    text = "path\tlabel\tsplit\r\nclips/a\tHappy\ttrain\r\nclips/b\tSad\ttest\r\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # the codec writes no BOM of its own
    (tmp_path / "ann.tsv").write_bytes(data)
    table = read_csv(tmp_path / "ann.tsv", frame_cache="none").table
    assert table[["clip_id", "label", "split", "n_frames"]].values.tolist() == [["a", 0, "train", 3], ["b", 1, "test", 4]]


def test_a_csv_that_is_not_utf8_names_its_line_and_how_to_save_it(tmp_path):
    (tmp_path / "ann.csv").write_bytes("path,label\nclips/a,Happy\nclips/café,Sad\n".encode("cp1252"))
    with pytest.raises(AnnotationError, match=r"ann\.csv:3: is not UTF-8 text: byte 0xe9 .*save the file as UTF-8"):
        read_csv(tmp_path / "ann.csv", frame_cache="none")
    # UTF-16 without its BOM decodes as UTF-8 (NUL is valid there) into columns no one can name: refused
    (tmp_path / "ann.csv").write_bytes("path,label\nclips/a,Happy\n".encode("utf-16-le"))
    with pytest.raises(AnnotationError, match=r"ann\.csv:1: holds NUL bytes: UTF-16 or UTF-32 text without a byte order"):
        read_csv(tmp_path / "ann.csv", frame_cache="none")


def test_a_name_in_another_unicode_normalisation_is_found_and_one_in_another_case_is_named(tmp_path):
    import unicodedata

    nfd = unicodedata.normalize("NFD", "Émotions/café")  # as macOS's HFS+ stores names
    frames(tmp_path / nfd, 2, stem="f")
    frames(tmp_path / "clips" / "Take", 2, stem="f")
    lst = write(tmp_path / "test.txt", f"{unicodedata.normalize('NFC', 'Émotions/café')} 0\n")  # typed: NFC
    assert unicodedata.normalize("NFC", nfd) != nfd
    table = read_list(lst).table
    assert table["path"].tolist() == [str((tmp_path / nfd).resolve())] and table["n_frames"].tolist() == [2]
    write(lst, "clips/take 0\n")
    with pytest.raises(AnnotationError) as e:
        read_list(lst)
    raises_at(e, lst, 1, f"(there is {tmp_path.resolve() / 'clips' / 'Take'}, which differs in case)")
