"""The layouts people publish, loaded from a pipeline TOML (no Python) and through `tgdfer check`.

Each fixture is a small tree shaped like one published layout: S2D's DFEW folders (the split
files inside `train(single-labeled)` / `test(single-labeled)` named `train_set_<k>.csv` /
`test_set_<k>.csv`, labels 0-based), S2D's FERV39k `train.csv` + `test.csv`, a TSV, a list file
with a header line, and annotation paths written on another machine.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_readers import frames, raises_at, write
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.errors import AnnotationError, ConfigError
from tgdfer.pipeline import load_pipeline
from tgdfer.readers import fold_split

runner = CliRunner()
TRAIN, TEST = "train(single-labeled)", "test(single-labeled)"

# (clip number, 0-based label in DFEW order, test fold): 2 folds; labels 0..5 only (no Fear), like a small file
S2D_DFEW = [(1, 0, 1), (2, 3, 1), (3, 5, 1), (4, 1, 2), (5, 0, 2), (6, 2, 2), (7, 4, 2)]


def pipeline(tmp_path: Path, kind: str, args: dict, name: str = "p.toml") -> Path:
    """A pipeline file holding only a [data] table."""
    return write(tmp_path / name, f'[data]\nkind = "{kind}"\nargs = {_toml(args)}\n')


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def load(config: Path):
    pipe = load_pipeline(config)
    return pipe.data.load(class_names=pipe.classes.class_set().names)


def check(config: Path, tmp_path: Path, *extra: str):
    """`tgdfer check` on a pipeline: (exit code, the output on one line)."""
    result = runner.invoke(app, ["check", str(config), "--workers", "0", "--csv", str(tmp_path / "r.csv"), *extra])
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def s2d_dfew(root: Path) -> Path:
    for number, _, _ in S2D_DFEW:
        frames(root / "clip_224x224" / f"{number:05d}", 4)
    split = root / "EmoLabel_DataSplit"
    for k in (1, 2):
        for part, folder, keep in (("train", TRAIN, lambda f: f != k), ("test", TEST, lambda f: f == k)):
            rows = "".join(f"{n:05d},{label}\n" for n, label, fold in S2D_DFEW if keep(fold))
            write(split / folder / f"{part}_set_{k}.csv", "video_name,label\n" + rows)
    return split


def test_s2d_dfew_folders_with_zero_based_labels(tmp_path):
    split = s2d_dfew(tmp_path / "DFEW")
    args = {"split_dir": str(split), "frames_dir": str(tmp_path / "DFEW" / "clip_224x224")}
    table = load(pipeline(tmp_path, "dfew", {**args, "label_base": 0})).table
    assert table["clip_id"].tolist() == [f"{n:05d}" for n, _, _ in S2D_DFEW]
    assert table["label"].tolist() == [label for _, label, _ in S2D_DFEW]
    assert table["fold"].tolist() == [fold for _, _, fold in S2D_DFEW] and table["n_frames"].tolist() == [4] * 7
    train, test = fold_split(table, 2)
    assert test.tolist() == [3, 4, 5, 6] and train.tolist() == [0, 1, 2]
    # the default label_base (1) is refused for the whole file, with its counts, also when checking (missing="skip")
    default = pipeline(tmp_path, "dfew", args, "default.toml")
    with pytest.raises(AnnotationError) as e:
        load(default)
    raises_at(e, split / TRAIN / "train_set_1.csv", None, "every label of its 4 rows lies in 0..6 and 1 are 0",
              "3 rows would shift one class and 1 would be out of range", "set label_base = 0")
    code, out = check(default, tmp_path)
    assert code == 2 and "set label_base = 0" in out and "train_set_1.csv" in out
    code, out = check(pipeline(tmp_path, "dfew", {**args, "label_base": 0}, "zero.toml"), tmp_path)
    assert code == 0 and "7 ok" in out


def test_s2d_dfew_folder_errors_name_the_file(tmp_path):
    split = s2d_dfew(tmp_path / "DFEW")
    (split / TRAIN / "train_set_2.csv").unlink()
    args = {"split_dir": str(split), "frames_dir": str(tmp_path / "DFEW" / "clip_224x224"), "label_base": 0}
    with pytest.raises(AnnotationError) as e:
        load(pipeline(tmp_path, "dfew", args))
    raises_at(e, split / TRAIN / "set_2.csv", None, "file not found", str(split / TEST / "test_set_2.csv"))
    write(split / TRAIN / "test_set_2.csv", "video_name,label\n")
    with pytest.raises(AnnotationError) as e:
        load(pipeline(tmp_path, "dfew", args))
    raises_at(e, split / TRAIN / "test_set_2.csv", None, "a test file in the train folder")


def ferv_clips(root: Path) -> list[tuple[str, int, str]]:
    """FERV39k-shaped folders; (relative path, 0-based label, split)."""
    clips = [("Action/Happy/0001", 0, "train"), ("Action/Sad/0002", 1, "train"), ("Talk-Show/Angry/0001", 3, "test"),
             ("Talk-Show/Fear/0007", 6, "test"), ("Action/Neutral/0003", 2, "train")]
    for rel, _, _ in clips:
        frames(root / rel, 3, stem="f")
    return clips


def test_s2d_ferv39k_train_and_test_csv_combine_into_one_split_table(tmp_path):
    root = tmp_path / "FERV39k" / "2_ClipsforFaceCrop"
    clips = ferv_clips(root)
    ann = tmp_path / "annotation" / "FERV39k"
    for part in ("train", "test"):
        write(ann / f"{part}.csv", "path,label\n" + "".join(f"{rel},{label}\n" for rel, label, s in clips if s == part))
    want = sorted((rel, label, s) for rel, label, s in clips)
    for files in ({"train": str(ann / "train.csv"), "test": str(ann / "test.csv")},  # a table of roles
                  [str(ann / "train.csv"), str(ann / "test.csv")],  # a list: the names say the part
                  str(ann)):  # a folder: its *.csv
        table = load(pipeline(tmp_path, "csv", {"csv_file": files, "root": str(root)})).table
        assert list(zip(table["clip_id"], table["label"], table["split"])) == want
        assert table["fold"].isna().all() and table["n_frames"].tolist() == [3] * 5
    train, test = fold_split(table, None)
    assert len(train) == 3 and len(test) == 2
    # the same files whitespace-separated without a header: the list reader combines them the same way
    for part in ("train", "test"):
        write(ann / "plain" / f"{part}.csv", "".join(f"{rel} {label}\n" for rel, label, s in clips if s == part))
    table = load(pipeline(tmp_path, "list", {"files": str(ann / "plain"), "pattern": "*.csv", "root": str(root)})).table
    assert list(zip(table["clip_id"], table["label"], table["split"])) == want
    code, out = check(pipeline(tmp_path, "csv", {"csv_file": str(ann), "root": str(root)}, "c.toml"), tmp_path)
    assert code == 0 and "5 ok" in out


def test_train_and_test_files_that_also_carry_a_split_column_are_refused(tmp_path):
    root = tmp_path / "clips"
    clips = ferv_clips(root)
    ann = tmp_path / "ann"
    for part in ("train", "test"):
        rows = "".join(f"{r},{lab},{s}\n" for r, lab, s in clips if s == part)
        write(ann / f"{part}.csv", "path,label,split\n" + rows)
    with pytest.raises(ConfigError) as e:
        load(pipeline(tmp_path, "csv", {"csv_file": str(ann), "root": str(root)}))
    assert e.value.field == "split_col" and "is the test file and also has the column 'split'" in str(e.value)
    table = load(pipeline(tmp_path, "csv", {"csv_file": str(ann), "root": str(root), "split_col": "none"})).table
    assert table["split"].tolist() == [s for _, _, s in sorted(clips)]


def test_tsv_is_sniffed_or_named_and_a_wrong_delimiter_says_so(tmp_path):
    root = tmp_path / "clips"
    clips = ferv_clips(root)
    tsv = write(tmp_path / "clips.tsv", "video\temotion\tsplit\n"
                + "".join(f"{rel}\t{label}\t{s}\n" for rel, label, s in clips))
    args = {"csv_file": str(tsv), "root": str(root), "path_col": "video", "label_col": "emotion"}
    want = sorted((rel, label, s) for rel, label, s in clips)
    for delimiter in (None, "tab", "\t"):
        given = args if delimiter is None else {**args, "delimiter": delimiter}
        table = load(pipeline(tmp_path, "csv", given)).table
        assert list(zip(table["clip_id"], table["label"], table["split"])) == want
    with pytest.raises(AnnotationError) as e:
        load(pipeline(tmp_path, "csv", {**args, "delimiter": ","}))
    raises_at(e, tsv, 1, "no column 'video'", "separated by ','", "set delimiter")
    with pytest.raises(ConfigError) as e:
        load(pipeline(tmp_path, "csv", {**args, "delimiter": "::"}))
    assert e.value.field == "delimiter"
    semi = write(tmp_path / "semi.csv", "video;emotion\n" + "".join(f"{rel};{label}\n" for rel, label, _ in clips))
    table = load(pipeline(tmp_path, "csv", {**args, "csv_file": str(semi)})).table
    assert sorted(table["label"].tolist()) == sorted(label for _, label, _ in clips) and table["split"].isna().all()


def test_list_file_with_a_header_line(tmp_path, caplog):
    root = tmp_path / "clips"
    clips = ferv_clips(root)
    lst = write(tmp_path / "test.txt", "path n_frames emotion\n"
                + "".join(f"{rel} 3 {label}\n" for rel, label, _ in clips))
    with caplog.at_level(logging.WARNING, logger="tgdfer.readers"):
        table = load(pipeline(tmp_path, "list", {"files": str(lst), "root": str(root)})).table
    assert sorted(table["label"].tolist()) == sorted(label for _, label, _ in clips)
    assert table["split"].tolist() == ["test"] * 5
    assert "line 1 'path n_frames emotion' is a header line" in caplog.text
    write(lst, "video label\n" + "".join(f"{rel} {label}\n" for rel, label, _ in clips))  # 'path label' layout
    assert len(load(pipeline(tmp_path, "list", {"files": str(lst), "root": str(root)})).table) == 5
    # a first line whose label is a class name is data, not a header
    write(lst, "Action/Happy/0001 Happy\nAction/Sad/0002 1\n")
    assert load(pipeline(tmp_path, "list", {"files": str(lst), "root": str(root)})).table["label"].tolist() == [0, 1]
    # with explicit fields, a non-integer n_frames in line 1 is the header
    write(lst, "clip frames label\nAction/Happy/0001 3 0\n")
    table = load(pipeline(tmp_path, "list", {"files": str(lst), "root": str(root),
                                             "fields": ["path", "n_frames", "label"]})).table
    assert table["clip_id"].tolist() == ["0001"] and table["n_frames"].tolist() == [3]


def test_missing_paths_under_a_foreign_prefix_suggest_path_map(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for n in (1, 2, 3):
        frames(tmp_path / "data" / "DFEW" / "clip_224x224" / f"{n:05d}", 2)
    lst = write(tmp_path / "ann" / "test.txt",
                "".join(f"/home/someone/DFEW/clip_224x224/{n:05d} 2 {n}\n" for n in (1, 2, 3)))
    config = pipeline(tmp_path, "list", {"files": str(lst)})
    found = tmp_path.resolve() / "data" / "DFEW" / "clip_224x224"
    hint = ('all 3 of 3 clips lie under /home/someone/DFEW/clip_224x224, which does not exist here: map it to where '
            f'the files are with path_map = {{ "/home/someone/DFEW/clip_224x224" = "{found}" }}')
    with pytest.raises(AnnotationError) as e:
        load(config)
    raises_at(e, lst, 1, hint)
    assert "missing='skip'" not in str(e.value)
    code, out = check(config, tmp_path)  # check reads with missing="skip": every clip skipped, the same advice
    assert code == 2 and "".join(hint.split()) in out.replace(" ", "")  # rich may break a long path
    mapped = pipeline(tmp_path, "list", {"files": str(lst), "path_map": {"/home/someone/DFEW/clip_224x224":
                                                                          str(found)}}, "m.toml")
    assert load(mapped).table["label"].tolist() == [1, 2, 3]
    # clips missing under a folder that exists here are really missing: the old advice
    lst2 = write(tmp_path / "ann" / "set_1_test.txt", f"{tmp_path}/data/DFEW/clip_224x224/00009 2 1\n")
    with pytest.raises(AnnotationError) as e:
        load(pipeline(tmp_path, "list", {"files": {"test": str(lst2)}}, "n.toml"))
    assert "missing='skip'" in str(e.value) and "path_map" not in str(e.value)


def test_a_path_map_target_that_does_not_exist_is_named_not_asked_for_again(tmp_path, monkeypatch):
    # DFER-CLIP's lists beside the data: a relative target is read from root (the list's folder), not the
    # working directory; the error names the entry and where it led instead of asking for the entry again
    monkeypatch.chdir(tmp_path)
    for n in (1, 2):
        frames(tmp_path / "data" / "DFEW" / "clip_224x224" / f"{n:05d}", 2)
    lst = write(tmp_path / "annotation" / "DFEW_set_1_test.txt",
                "".join(f"C:\\Users\\me\\DFEW\\clip_224x224\\{n:05d} 2 {n}\n" for n in (1, 2)))
    prefix = "C:/Users/me/DFEW/clip_224x224"
    config = pipeline(tmp_path, "list", {"files": str(lst), "path_map": {prefix: "data/DFEW/clip_224x224"}})
    with pytest.raises(AnnotationError) as e:
        load(config)
    found = tmp_path.resolve() / "data" / "DFEW" / "clip_224x224"
    raises_at(e, lst, 1, f"path_map maps {prefix} to data/DFEW/clip_224x224, read as "
                         f"{tmp_path.resolve() / 'annotation' / 'data' / 'DFEW' / 'clip_224x224'}, which does not exist")
    assert f'write path_map = {{ "{prefix}" = "{found}" }}' in str(e.value)
    assert "which does not exist here: map it" not in str(e.value)
    fixed = pipeline(tmp_path, "list", {"files": str(lst), "path_map": {prefix: str(found)}}, "f.toml")
    assert load(fixed).table["label"].tolist() == [1, 2]
    # a target that exists: the clips missing under it are really missing, the old advice
    (found / "00002").rename(found.parent / "moved")
    with pytest.raises(AnnotationError) as e:
        load(fixed)
    assert "missing='skip'" in str(e.value) and "path_map maps" not in str(e.value)


def test_split_dir_one_level_off_and_a_misspelt_argument_name_the_fix(tmp_path):
    # DFEW as it unpacks: data/DFEW/{EmoLabel_DataSplit, Clip/clip_224x224}; split_dir given one level off
    split = s2d_dfew(tmp_path / "DFEW")
    for f in split.glob("*/*.csv"):  # DFEW's own names: set_<k>.csv in each folder
        f.rename(f.with_name(f.name.split("_", 1)[1]))
    for given in (tmp_path / "DFEW", tmp_path, split / TEST):
        config = pipeline(tmp_path, "dfew", {"split_dir": str(given), "frames_dir": str(tmp_path / "DFEW" / "clip_224x224"),
                                              "label_base": 0})
        with pytest.raises(AnnotationError) as e:
            load(config)
        assert f'that folder is {split}: set split_dir = "{split.as_posix()}"' in str(e.value), given
    nowhere = pipeline(tmp_path, "dfew", {"split_dir": str(tmp_path / "nope"), "frames_dir": str(tmp_path)})
    with pytest.raises(AnnotationError) as e:
        load(nowhere)
    assert "that folder is" not in str(e.value)
    high = pipeline(tmp_path, "dfew", {"split_dir": str(split), "frames_dir": str(tmp_path), "label_base": 0})
    with pytest.raises(AnnotationError) as e:  # frames_dir one level above the clips' folder
        load(high)
    assert f"lies deeper, in {tmp_path / 'DFEW' / 'clip_224x224'}: point the reader's clip folder" in str(e.value)
    typo = pipeline(tmp_path, "dfew", {"splitdir": str(split), "frames_dir": str(tmp_path)})
    code, out = check(typo, tmp_path)
    assert code == 2 and 'splitdir: not an argument of the \'dfew\' reader (did you mean "split_dir"?)' in out


@pytest.mark.parametrize("args, field, words", [
    ({"csv_file": 3}, "csv_file", "expected a path, a list (a path each) or a table"),
    ({"csv_file": ["train.csv", 2]}, "csv_file", "got ['train.csv', 2]"),
    ({"csv_file": "a.csv", "label_base": "one"}, "label_base", "expected an integer"),
    ({"csv_file": "a.csv", "path_map": ["/a", "b"]}, "path_map", "expected a table"),
    ({"csv_file": {}}, "csv_file", "a table such as"),
])
def test_a_wrong_argument_type_is_one_line_exit_2(tmp_path, args, field, words):
    config = pipeline(tmp_path, "csv", args)
    with pytest.raises(ConfigError) as e:
        load(config)
    assert e.value.field == field and words in str(e.value), str(e.value)
    code, out = check(config, tmp_path)
    assert code == 2 and out.startswith("error:") and words in out


def test_missing_relative_and_windows_paths_get_advice_that_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for n in (1, 2):
        frames(tmp_path / "data" / "DFEW" / "clip_224x224" / f"{n:05d}", 2)
    # paths relative to the repository the list came from, not to the list's folder: root is the advice
    rel = write(tmp_path / "annotation" / "test.txt", "".join(f"data/DFEW/clip_224x224/{n:05d} 2 {n}\n" for n in (1, 2)))
    with pytest.raises(AnnotationError) as e:
        load(pipeline(tmp_path, "list", {"files": str(rel)}))
    raises_at(e, rel, 1, f'with root = "{tmp_path.resolve()}"')
    assert load(pipeline(tmp_path, "list", {"files": str(rel), "root": str(tmp_path)}, "r.toml")).table["label"].tolist() == [1, 2]
    # written on Windows: a drive path (either slash) is mapped by its prefix as written
    for sep in ("\\", "/"):
        win = write(tmp_path / "win" / "test.txt",
                    "".join(f"C:{sep}Users{sep}me{sep}DFEW{sep}clip_224x224{sep}{n:05d} 2 {n}\n" for n in (1, 2)))
        with pytest.raises(AnnotationError) as e:
            load(pipeline(tmp_path, "list", {"files": str(win)}, "w.toml"))
        found = tmp_path.resolve() / "data" / "DFEW" / "clip_224x224"
        raises_at(e, win, 1, f'path_map = {{ "C:/Users/me/DFEW/clip_224x224" = "{found}" }}')
        mapped = pipeline(tmp_path, "list", {"files": str(win), "path_map": {"C:/Users/me/DFEW/clip_224x224": str(found)}},
                          "wm.toml")
        assert load(mapped).table["label"].tolist() == [1, 2]
    # a relative path written with backslashes reads as the folder it names
    back = write(tmp_path / "data" / "test.txt", "DFEW\\clip_224x224\\00001 2 1\n")
    assert load(pipeline(tmp_path, "list", {"files": str(back)}, "b.toml")).table["path"].tolist() == [
        str(tmp_path.resolve() / "data" / "DFEW" / "clip_224x224" / "00001")]
