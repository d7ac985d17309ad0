"""The annotation files the DFER community publishes, read from a pipeline's [data] table.

Each test writes a small file in one published layout and checks the exact clip table (or the
exact error, naming file and line) the reader gives.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from test_readers import SYNTH, expected, frames, make_synth, raises_at, synth_expected, video, write

from tgdfer.errors import AnnotationError, ConfigError
from tgdfer.frames import open_frames, video_frame_count
from tgdfer.labels import CLASSES
from tgdfer.pipeline import DataConfig, load_pipeline
from tgdfer.readers import CACHE_VERSION, SKIPPED_AT_READ, read_csv, read_dfew, read_ferv39k, read_list

TEST = "test(single-labeled)"
ALPHABETICAL = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]  # ids 0..6 in some repos
MAFW = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
        "helplessness", "disappointment"]


def gappy_avi(path: Path, n: int, keep_every: int) -> Path:
    """An AVI whose header counts n frames while only every k-th chunk holds data (old 'dropped frame' AVIs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 16, 16, "yuv420p"
        s.codec_context.gop_size = 1
        for i in range(n):
            img = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 8 * (i % 30), np.uint8), format="rgb24")
            img.pts = i
            for p in s.encode(img):
                if i % keep_every:
                    p = _empty_like(p, s)
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _empty_like(p, stream):
    e = av.Packet(0)
    e.pts, e.dts, e.time_base, e.stream = p.pts, p.dts, p.time_base, stream
    return e


# ----------------------------------------------------------------------------- labels


def test_label_names_map_alphabetical_ids(tmp_path):
    out = make_synth(tmp_path)
    # SYNTH's clips in alphabetical ids: Happiness=3, Surprise=6, Fear=2, Disgust=1, Neutral=4, Happiness=3
    alpha = {CLASSES.index(c): i for i, c in enumerate(("Anger", "Disgust", "Fear", "Happiness", "Neutral",
                                                       "Sadness", "Surprise"))}
    write(out / "alpha.csv", "path,label,fold\n" + "".join(f"frames/{c[0]},{alpha[c[1]]},{c[2]}\n" for c in SYNTH))
    result = read_csv(out / "alpha.csv", label_names=ALPHABETICAL)
    pd.testing.assert_frame_equal(result.table, synth_expected(out))
    with pytest.raises(ConfigError) as e:
        read_csv(out / "alpha.csv", label_names=["Angry", "Joy"])
    assert e.value.field == "label_names" and "'Joy'" in str(e.value) and "integer 1" in str(e.value)
    with pytest.raises(AnnotationError) as e:
        read_csv(out / "alpha.csv", label_names=ALPHABETICAL[:3])  # 3 names, the file uses 0..6
    raises_at(e, out / "alpha.csv", 2, "label 3", "0..2", "3 label_names")


def test_dfew_zero_based_labels_are_suggested_and_read(tmp_path):
    out = make_synth(tmp_path)
    split = out / "EmoLabel_DataSplit"
    for f in split.rglob("set_*.csv"):  # rewrite every file with 0-based labels
        rows = f.read_text().splitlines()
        f.write_text("\n".join([rows[0]] + [f"{r.split(',')[0]},{int(r.split(',')[1]) - 1}" for r in rows[1:]]) + "\n")
    for missing in ("error", "skip"):  # refused as a whole file, not row by row (no half-skipped table)
        with pytest.raises(AnnotationError) as e:
            read_dfew(split, out / "frames", missing=missing)
        raises_at(e, split / "train(single-labeled)" / "set_1.csv", None, "every label of its 3 rows lies in 0..6",
                  "1 are 0", "counts labels from 0, but label_base is 1", "2 rows would shift one class",
                  "set label_base = 0")
    pd.testing.assert_frame_equal(read_dfew(split, out / "frames", label_base=0).table, synth_expected(out))
    # and the other way: a 1-based file read with label_base 0 (labels 1..7 with a 7, no 0)
    lst = write(out / "test.txt", "frames/00001 3 1\nframes/00002 5 7\nframes/00003 2 5\n")
    with pytest.raises(AnnotationError) as e:
        read_list(lst)
    raises_at(e, lst, None, "lies in 1..7 and 1 are 7", "set label_base = 1")
    assert read_list(lst, label_base=1).table["label"].tolist() == [0, 6, 4]


def test_dfew_split_files_under_other_names(tmp_path):
    out = make_synth(tmp_path)
    flat = out / "splits"
    for k in (1, 2):
        for part in ("train", "test"):
            src = out / "EmoLabel_DataSplit" / f"{part}(single-labeled)" / f"set_{k}.csv"
            rows = src.read_text().splitlines()  # ids zero-padded already ("00001")
            write(flat / f"{part}_set_{k}.csv", "\n".join(rows) + "\n")
    pd.testing.assert_frame_equal(read_dfew(flat, out / "frames").table, synth_expected(out))
    (flat / "test_set_2.csv").unlink()
    with pytest.raises(AnnotationError) as e:
        read_dfew(flat, out / "frames")
    raises_at(e, flat / "train_set_2.csv", None, "no test file for set 2")


def test_custom_class_set_names_ints_and_errors(tmp_path):
    for i, name in enumerate(("a", "b", "c")):
        frames(tmp_path / "clips" / name, 2)
    lst = write(tmp_path / "test.txt", "clips/a contempt\nclips/b 10\nclips/c HAPPINESS\n")
    result = read_list(lst, class_names=MAFW)
    assert result.table["label"].tolist() == [7, 10, 3]
    write(lst, "clips/a happy\n")  # an alias of the default 7 classes, not a MAFW class name
    with pytest.raises(AnnotationError) as e:
        read_list(lst, class_names=MAFW)
    raises_at(e, lst, 1, "label 'happy'", "contempt")
    write(lst, "clips/a 11\n")
    with pytest.raises(AnnotationError) as e:
        read_list(lst, class_names=MAFW)
    raises_at(e, lst, 1, "label 11", "0..10", "11 classes")
    with pytest.raises(ConfigError) as e:
        read_list(lst, class_names=["Happy", "Sad", "happy"])
    assert e.value.field == "class_names" and "'happy' appears twice" in str(e.value)


# ----------------------------------------------------------------------------- lists without counts, frame cache


def test_path_label_list_counts_frames_and_caches_them(tmp_path):
    data = tmp_path / "data"
    video(data / "v1.mp4", 7)
    video(data / "v2.avi", 4)
    frames(data / "f3", 3)
    lst = write(data / "test.txt", "v1.mp4 0\nv2.avi 3\nf3 6\n")
    cache = tmp_path / "cache" / "counts.json"
    os.chmod(data, 0o555)  # a read-only dataset folder: nothing may be written into it
    try:
        result = read_list(lst, frame_cache=cache)
    finally:
        os.chmod(data, 0o755)
    assert result.table[["clip_id", "label", "n_frames"]].values.tolist() == [["f3", 6, 3], ["v1", 0, 7], ["v2", 3, 4]]
    assert sorted(p.name for p in data.iterdir()) == ["f3", "test.txt", "v1.mp4", "v2.avi"]
    counts = json.loads(cache.read_text())["counts"]
    assert {Path(k).name: v[2] for k, v in counts.items()} == {"v1.mp4": 7, "v2.avi": 4}
    # the cache answers while size and mtime match (a planted count proves it is read) ...
    key = str((data / "v1.mp4").resolve())
    counts[key][2] = 99
    cache.write_text(json.dumps({"version": 1, "counts": counts}))  # counted before counts followed decoding
    assert read_list(lst, frame_cache=cache).table["n_frames"].tolist() == [3, 7, 4]
    cache.write_text(json.dumps({"version": CACHE_VERSION, "counts": counts}))
    assert read_list(lst, frame_cache=cache).table["n_frames"].tolist() == [3, 99, 4]
    # ... and is recounted when the file changes
    video(data / "v1.mp4", 5)
    assert read_list(lst, frame_cache=cache).table["n_frames"].tolist() == [3, 5, 4]
    assert read_list(lst, frame_cache="none").table["n_frames"].tolist() == [3, 5, 4]


def test_explicit_fields_and_mixed_layouts(tmp_path):
    frames(tmp_path / "a", 2)
    lst = write(tmp_path / "test.txt", "a 3\n")
    assert read_list(lst, fields=["path", "label"]).table["label"].tolist() == [3]
    write(lst, "a 2 3\na 3\n")
    with pytest.raises(AnnotationError) as e:
        read_list(lst)
    raises_at(e, lst, 2, "expected 3 fields 'path n_frames label', got 2")
    with pytest.raises(ConfigError, match="fields"):
        read_list(lst, fields=["label", "n_frames"])


# ----------------------------------------------------------------------------- paths from another machine


def test_path_map_rewrites_foreign_absolute_paths(tmp_path):
    frames(tmp_path / "data" / "DFEW" / "00001", 3)
    frames(tmp_path / "data" / "DFEW" / "00002", 2)
    lst = write(tmp_path / "ann" / "test.txt",
                "/home/them/DFEW/clip_224x224/00001 3 0\nD:\\datasets\\DFEW\\clip_224x224\\00002 2 1\n")
    path_map = {"/home/them/DFEW/clip_224x224": str(tmp_path / "data" / "DFEW"),
                "D:\\datasets\\DFEW\\clip_224x224": str(tmp_path / "data" / "DFEW")}
    result = read_list(lst, path_map=path_map)
    assert result.table["path"].tolist() == [str(tmp_path / "data" / "DFEW" / c) for c in ("00001", "00002")]
    with pytest.raises(ConfigError) as e:
        read_list(lst, path_map={**path_map, "/home/them/FERV39k": "data/FERV39k"})
    assert e.value.field == "path_map" and "'/home/them/FERV39k' matches none of the paths" in str(e.value)
    assert str(lst) in str(e.value)


# ----------------------------------------------------------------------------- label from the path


def ferv_tree(tmp_path: Path) -> Path:
    root = tmp_path / "2_ClipsforFaceCrop"
    for rel in ("Action/Happy/0001", "Action/Sad/0002", "Talk-Show/Angry/0001"):
        frames(root / rel, 2, stem="f")
    return root


def test_label_from_path_component_and_regex(tmp_path):
    root = ferv_tree(tmp_path)
    lst = write(tmp_path / "test.txt", "Action/Happy/0001\nAction/Sad/0002\nTalk-Show/Angry/0001\n")
    want = [("Action/Happy/0001", 0), ("Action/Sad/0002", 1), ("Talk-Show/Angry/0001", 3)]
    by_component = read_list(lst, root=root, label_from_path=-2).table
    by_regex = read_list(lst, root=root, label_from_path=r"/(?P<label>[A-Za-z]+)/\d+$").table
    for table in (by_component, by_regex):
        assert table[["clip_id", "label"]].values.tolist() == [list(w) for w in want]
    write(lst, "Action/Happy/0001\nnowhere\n")
    with pytest.raises(AnnotationError) as e:
        read_list(lst, root=root, label_from_path=r"/(?P<label>[A-Za-z]+)/\d+$")
    raises_at(e, lst, 2, "no label in the path 'nowhere'")
    with pytest.raises(ConfigError, match="needs a group"):
        read_list(lst, root=root, label_from_path=r"/\w+/")


def test_label_column_and_path_disagree_error_or_skip(tmp_path):
    root = ferv_tree(tmp_path)
    setup = tmp_path / "setup"
    write(setup / "train_All.csv", "Action/Happy/0001 Happy\nTalk-Show/Angry/0001 Sad\n")  # line 2 disagrees
    write(setup / "test_All.csv", "Action/Sad/0002 Sad\n")
    assert len(read_ferv39k(setup, root).table) == 3  # no check unless asked
    with pytest.raises(AnnotationError) as e:
        read_ferv39k(setup, root, label_from_path=-2)
    raises_at(e, setup / "train_All.csv", 2, "label disagrees with the path", "says Sadness ('Sad')",
              "says Anger ('Angry')")
    result = read_ferv39k(setup, root, label_from_path=-2, missing="skip")
    assert result.table["clip_id"].tolist() == ["Action/Happy/0001", "Action/Sad/0002"]
    assert result.skipped[["line", "clip_id"]].values.tolist() == [[2, "Talk-Show/Angry/0001"]]
    assert "label disagrees" in result.skipped["reason"][0]
    assert "1 label disagreements" in result.summary()
    assert len(result.with_skipped()) == 2  # a contradictory row is not an annotated clip for the store


# ----------------------------------------------------------------------------- generic CSV from a pipeline


def _data(tmp_path: Path, args: str) -> DataConfig:
    path = write(tmp_path / "p.toml", f'[data]\nkind = "csv"\nargs = {{ {args} }}\n')
    return load_pipeline(path).data


def test_csv_split_fold_and_neither_from_toml(tmp_path):
    out = make_synth(tmp_path)
    rows = [(c[0], c[1], "test" if c[2] == 1 else "train") for c in SYNTH]
    write(out / "both.csv", "path,label,fold,split\n" + "".join(f"frames/{i},{lab},1,{s}\n" for i, lab, s in rows))
    write(out / "split.csv", "path,label,split\n" + "".join(f"frames/{i},{lab},{s}\n" for i, lab, s in rows))
    write(out / "all.csv", "path,label\n" + "".join(f"frames/{i},{lab}\n" for i, lab, _ in rows))
    write(out / "test_clips.txt", "".join(f"frames/{i}\n" for i, _, s in rows if s == "test"))
    want = expected([(c[0], f"frames/{c[0]}", c[1], None, "test" if c[2] == 1 else "train", c[3]) for c in SYNTH], out)
    by_split = _data(tmp_path, f'csv_file = "{out / "both.csv"}", fold_col = "none", split_col = "split"').load()
    pd.testing.assert_frame_equal(by_split.table, want)
    pd.testing.assert_frame_equal(_data(tmp_path, f'csv_file = "{out / "split.csv"}"').load().table, want)  # auto
    listed = _data(tmp_path, f'csv_file = "{out / "all.csv"}", test_list = "{out / "test_clips.txt"}"').load()
    pd.testing.assert_frame_equal(listed.table, want)
    neither = _data(tmp_path, f'csv_file = "{out / "all.csv"}", test_list = "none"').load().table
    assert neither["split"].isna().all() and neither["fold"].isna().all()
    with pytest.raises(ConfigError, match="not both"):
        _data(tmp_path, f'csv_file = "{out / "both.csv"}"').load()
    with pytest.raises(AnnotationError) as e:
        _data(tmp_path, f'csv_file = "{out / "all.csv"}", split_col = "part"').load()
    raises_at(e, out / "all.csv", 1, "no column 'part'", 'split_col to "none"')


# ----------------------------------------------------------------------------- videos that claim more frames


def test_video_header_claiming_more_frames_records_what_it_holds(tmp_path, caplog):
    avi = gappy_avi(tmp_path / "clips" / "old.avi", n=60, keep_every=4)
    count = video_frame_count(avi)
    assert (count.claimed, count.frames) == (60, 15)
    for backend in ("pyav", "auto"):
        src = open_frames(avi, backend)
        assert len(src) == 15
        assert src.read([0, 14]).shape == (2, 16, 16, 3)
    video(tmp_path / "clips" / "ok.mp4", 5)
    lst = write(tmp_path / "test.txt", "clips/old.avi 1\nclips/ok.mp4 2\n")
    with caplog.at_level(logging.WARNING, logger="tgdfer.readers"):
        table = read_list(lst, frame_cache=tmp_path / "counts.json").table
    assert table[["clip_id", "n_frames"]].values.tolist() == [["ok", 5], ["old", 15]]
    warnings = [r.getMessage() for r in caplog.records if "claims more frames" in r.getMessage()]
    assert len(warnings) == 1 and "1 videos" in warnings[0] and "claims 60, holds 15" in warnings[0]


# ----------------------------------------------------------------------------- skipped clips


def test_skipped_clips_keep_their_place_for_the_store(tmp_path):
    out = make_synth(tmp_path)
    (out / "frames" / "00002").rename(out / "gone")
    for f in (out / "frames" / "00004").iterdir():
        f.unlink()
    result = read_dfew(out / "EmoLabel_DataSplit", out / "frames", missing="skip")
    assert result.summary() == "skipped 2 of 6 annotated clips (1 missing, 1 empty folder)"
    full = result.with_skipped()
    want = synth_expected(out)
    want.loc[want["clip_id"].isin(["00002", "00004"]), "n_frames"] = pd.NA
    pd.testing.assert_frame_equal(full, want)
    reasons = result.skip_reasons()
    assert sorted(reasons) == ["00002", "00004"]
    assert reasons["00002"].startswith(f"{SKIPPED_AT_READ} (") and "nothing at" in reasons["00002"]


def test_whole_set_list_with_and_without_a_test_list(tmp_path):
    for name in ("a", "b", "c"):
        frames(tmp_path / "clips" / name, 2)
    whole = write(tmp_path / "mine.txt", "clips/a 0\nclips/b 1\nclips/c 2\n")
    tests = write(tmp_path / "held_out.txt", "clips/b\nc\n")  # by path as written, or by clip id
    table = read_list({"all": whole}, test_list=tests).table
    assert table[["clip_id", "split"]].values.tolist() == [["a", "train"], ["b", "test"], ["c", "test"]]
    assert read_list({"all": whole}).table["split"].isna().all()
    write(tests, "clips/b\nclips/zzz\n")
    with pytest.raises(AnnotationError) as e:
        read_list({"all": whole}, test_list=tests)
    raises_at(e, tests, 2, "'clips/zzz' is neither a path nor a clip id")
    with pytest.raises(ConfigError, match="test_list"):
        read_list({"train": whole, "test": whole}, test_list=tests)


def test_a_bad_label_stops_the_read_or_is_skipped(tmp_path):
    out = make_synth(tmp_path)
    bad = write(out / "EmoLabel_DataSplit" / TEST / "set_1.csv", "video_name,label\n1,1\n3,9\n5,3\n")
    with pytest.raises(AnnotationError) as e:
        read_dfew(out / "EmoLabel_DataSplit", out / "frames")
    raises_at(e, bad, 3, "label 9", "1..7")
    result = read_dfew(out / "EmoLabel_DataSplit", out / "frames", missing="skip")
    assert "00003" not in result.table["clip_id"].tolist() and len(result.table) == 5
    assert result.skipped[["line", "clip_id"]].values.tolist() == [[3, "00003"]]
    assert "label 9 is outside the allowed range 1..7" in result.skipped["reason"][0]
    assert result.summary() == "skipped 1 of 6 annotated clips (1 bad labels)"


def test_every_snippet_in_docs_datasets_names_real_reader_arguments():
    import inspect
    import re
    import tomllib

    from tgdfer.readers import READERS

    text = (Path(__file__).parents[1] / "docs" / "datasets.md").read_text()
    snippets = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert len(snippets) >= 10
    kinds = set()
    for snippet in snippets:
        data = tomllib.loads(snippet)["data"]  # valid TOML, a [data] table
        config = DataConfig(**data)
        assert "class_names" not in config.args, "a pipeline's class set is its [classes] table"
        params = inspect.signature(READERS[config.kind]).parameters
        assert set(config.args) <= set(params), (config.kind, set(config.args) - set(params))
        kinds.add(config.kind)
    assert kinds == set(READERS)


def test_data_config_passes_the_pipelines_class_set(tmp_path):
    frames(tmp_path / "clips" / "a", 2)
    lst = write(tmp_path / "test.txt", "clips/a contempt\n")
    data = DataConfig(kind="list", args={"files": str(lst)})
    assert data.load(class_names=MAFW).table["label"].tolist() == [7]
    with pytest.raises(AnnotationError, match="'contempt' is not"):
        data.load()  # the default 7 emotions
    clash = DataConfig(kind="list", args={"files": str(lst), "class_names": CLASSES})
    with pytest.raises(ConfigError, match="args.class_names"):
        clash.load(class_names=MAFW)


def test_label_names_naming_one_class_twice_is_a_typo_unless_every_class_is_reached(tmp_path, caplog):
    out = make_synth(tmp_path)
    write(out / "alpha.csv", "path,label,fold\n" + "".join(f"frames/{c[0]},0,{c[2]}\n" for c in SYNTH))
    typo = list(ALPHABETICAL[:-1]) + ["Sad"]  # "Sad" for "Surprise": 6 would read as Sadness, Surprise never
    with pytest.raises(ConfigError) as e:
        read_csv(out / "alpha.csv", label_names=typo)
    assert e.value.field == "label_names" and "integers 5 and 6 both name Sadness" in str(e.value)
    assert "no entry names Surprise" in str(e.value)
    merge = list(ALPHABETICAL) + ["Disgust"]  # an 8th label (contempt) merged into Disgust: every class reached
    with caplog.at_level(logging.INFO, logger="tgdfer.readers"):
        read_csv(out / "alpha.csv", label_names=merge)
    assert "merges the file's integers 1 and 7 into Disgust" in caplog.text


def test_a_stray_quote_in_a_dfew_sized_csv_is_named_where_it_opens(tmp_path):
    frames(tmp_path / "clips" / "a", 2)
    big = "".join(f"clips/{i:05d},{i % 7},train\n" for i in range(8000))  # over the csv module's field limit
    ann = write(tmp_path / "ann.csv", 'path,label,split\nclips/a,0,train\n"clips/b,1,test\n' + big)
    with pytest.raises(AnnotationError) as e:  # a bare csv traceback before
        read_csv(ann)
    raises_at(e, ann, 3, "field larger than field limit", 'a double quote (") that opens a field on this line')


@pytest.mark.parametrize("text,line,words", [
    ('path,label,split\nclips/a,0,train\n"clips/b,1,test\nclips/a,2,test\nclips/b,3,train\n', 3,
     "got 1 in the row that runs from here to line 5"),  # named at the end of the file before
    ("path,label\nclips/a,3.0\n", 2, "label '3.0' is a decimal number: write integer labels"),
    ("path,label,label\nclips/a,0,3\n", 1, "the header names column 'label' twice"),  # the last one was read
    ("path,label\nclips/a,0\n,1\n", 3, "the path cell is empty"),  # read as the CSV's own folder before
])
def test_a_csv_that_cannot_be_read_as_meant_is_refused_at_its_line(tmp_path, text, line, words):
    frames(tmp_path / "clips" / "a", 2)
    ann = write(tmp_path / "ann.csv", text)
    with pytest.raises(AnnotationError) as e:
        read_csv(ann)
    raises_at(e, ann, line, words)


def test_an_annotation_folder_names_the_files_it_ignores(tmp_path, caplog):
    for name in ("a", "b", "c"):
        frames(tmp_path / "clips" / name, 2)
    split = tmp_path / "split"
    write(split / "train.csv", "path,label\n../clips/a,0\n")
    write(split / "test.csv", "path,label\n../clips/b,1\n")
    write(split / "val.csv", "path,label\n../clips/c,2\n")  # neither part: its clip is in no table
    (split / "._train.csv").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS's copy beside train.csv
    with caplog.at_level(logging.WARNING, logger="tgdfer.readers"):
        table = read_csv(split).table
    assert table["clip_id"].tolist() == ["a", "b"]
    assert "read test.csv, train.csv; ignored val.csv" in caplog.text and "._train.csv" not in caplog.text


def test_a_test_list_line_is_a_whole_path_first_and_only_known_header_words_are_headers(tmp_path):
    for name in ("take", "take 2", "c"):
        frames(tmp_path / "clips" / name, 2)
    whole = write(tmp_path / "all.csv", "path,label\nclips/take,0\nclips/take 2,1\nclips/c,2\n")
    tests = write(tmp_path / "held_out.txt", "clips/take 2\n")
    table = read_csv({"all": whole}, test_list=tests).table
    assert dict(zip(table["clip_id"], table["split"])) == {"take": "train", "take 2": "test", "c": "train"}
    write(tests, "path\nclips/c\n")
    table = read_csv({"all": whole}, test_list=tests).table
    assert dict(zip(table["clip_id"], table["split"])) == {"take": "train", "take 2": "train", "c": "test"}
    write(tests, "clip_c\nclips/take\n")  # a typo on the first line is no header
    with pytest.raises(AnnotationError) as e:
        read_csv({"all": whole}, test_list=tests)
    raises_at(e, tests, 1, "'clip_c' is neither a path nor a clip id")
