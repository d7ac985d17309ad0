"""One definition of predict's inputs and options for the CLI and `Predictor` (issue 21, item 6)."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import tgdfer

from tgdfer.cli import app
from tgdfer.errors import ConfigError, TgdferError
from tgdfer.head import INFLUENCES
from tgdfer.inputs import BadInput, expand_input, expand_inputs, folder_clips
from tgdfer.predict import PredictFailure, Prediction, Predictor, predict
from tgdfer.predictoptions import INFLUENCE_MODES, ON_MISSING, PredictOptions
from tgdfer.training import TrainConfig, train

from smallhead import small_head

runner = CliRunner()
NATIVE_LOG = ("video_reader.cc", "ERROR opening", "[mov,mp4", "@ 0x")  # decord's / FFmpeg's own stderr lines


# -- the expansion, without a model ------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """videos/clip_2.mp4, clip_10.mp4, frames/a/*.jpg, and list files naming them relative to their folder."""
    (tmp_path / "videos").mkdir()
    for name in ("clip_10.mp4", "clip_2.mp4", "notes.md"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    (tmp_path / "frames" / "a").mkdir(parents=True)
    (tmp_path / "frames" / "a" / "0001.jpg").write_bytes(b"x")
    return tmp_path


def test_folders_globs_and_lists_expand_to_the_same_clips(tree):
    videos = [tree / "videos" / "clip_2.mp4", tree / "videos" / "clip_10.mp4"]  # natural order
    frames = tree / "frames" / "a"
    assert expand_input(tree / "videos") == (videos, True)
    assert expand_input(str(tree / "videos" / "clip_*.mp4")) == (videos, True)
    assert expand_input(frames) == ([frames], False)  # a frame folder is one clip
    assert expand_input(videos[0]) == ([videos[0]], False)
    (tree / "list.csv").write_text("label,path,split\nhappy,videos/clip_2.mp4,test\nsad,videos/clip_10.mp4,test\n"
                                   "x,frames/a,train\n")  # an annotation CSV: only `path` is read
    (tree / "plain.csv").write_text(f"videos/clip_2.mp4\n{videos[1]}\nframes/a\n")  # no header, one column
    (tree / "list.txt").write_text("# mine\nvideos/clip_2.mp4\n\nvideos/clip_10.mp4\nframes/a\n")
    (tree / "dirs.txt").write_text("videos\n")  # a listed folder of videos gives its videos
    for name in ("list.csv", "plain.csv", "list.txt"):
        assert expand_input(tree / name) == ([*videos, frames], True), name
    assert expand_inputs([tree / "dirs.txt", frames]) == [*videos, frames]


def test_a_csv_input_is_read_as_the_annotation_reader_reads_it(tree):
    """predict's CSV input follows the [data] csv reader: the separator sniffed, quoted fields, the path as written."""
    lead, plain = tree / "videos" / " lead.mp4", tree / "videos" / "lead.mp4"
    lead.write_bytes((tree / "videos" / "clip_2.mp4").read_bytes())
    plain.write_bytes(b"not the clip listed")
    (tree / "semi.csv").write_text("path;label\nvideos/clip_2.mp4;0\n\"videos/ lead.mp4\";1\n")  # Excel in Europe
    assert expand_input(tree / "semi.csv")[0] == [tree / "videos" / "clip_2.mp4", lead]  # not lead.mp4
    (tree / "tabs.csv").write_text("label\tpath\nhappy\tvideos/clip_10.mp4\n")
    assert expand_input(tree / "tabs.csv")[0] == [tree / "videos" / "clip_10.mp4"]


def test_a_folder_of_clip_folders_gives_them_and_videos_beside_images_are_named(tree, tmp_path):
    clips = tmp_path / "synth_frames"  # the layout tgdfer synth writes (frames/): one frame folder per clip
    for name in ("clip_10", "clip_2"):
        (clips / name).mkdir(parents=True)
        (clips / name / "00001.jpg").write_bytes(b"x")
    (clips / "notes").mkdir()  # no frames: not a clip
    assert expand_input(clips) == ([clips / "clip_2", clips / "clip_10"], True)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("a.mp4", "b.mkv", "cover.jpg"):
        (mixed / name).write_bytes(b"x")
    (bad,) = expand_input(mixed)[0]  # read as a frame folder, it was one clip: the cover image
    assert isinstance(bad, BadInput) and "holds both videos (a.mp4, b.mkv) and images (cover.jpg)" in bad.error


def test_a_bad_list_row_names_the_file_and_line(tree):
    (tree / "bad.csv").write_text("path,label\nvideos/clip_2.mp4,happy\n,sad\nvideos/gone.mp4,happy\n")
    ok, empty, gone = expand_input(tree / "bad.csv")[0]
    assert ok == tree / "videos" / "clip_2.mp4"
    assert empty == BadInput(f"{tree / 'bad.csv'}:3", f"{tree / 'bad.csv'} line 3: empty path")
    assert isinstance(gone, BadInput) and gone.input == str(tree / "videos" / "gone.mp4")
    assert gone.error.endswith(f"no such file or directory (listed in {tree / 'bad.csv'} line 4)")
    (tree / "wide.csv").write_text("video,label\nvideos/clip_2.mp4,happy\n")
    (bad,) = expand_input(tree / "wide.csv")[0]
    assert bad.error.startswith(f"{tree / 'wide.csv'} line 1: no 'path' column") and "'video', 'label'" in bad.error
    (tree / "empty.txt").write_text("# nothing\n\n")
    assert expand_input(tree / "empty.txt")[0][0].error == f"{tree / 'empty.txt'}: the list names no clips"
    (tree / "latin.csv").write_bytes("path\nvid\xe9o.mp4\n".encode("latin-1"))
    assert "latin.csv:2: is not UTF-8 text: byte 0xe9" in expand_input(tree / "latin.csv")[0][0].error
    (missing,) = expand_input(str(tree / "none_*.mp4"))[0]
    assert missing.error == f"{tree / 'none_*.mp4'}: no file or folder matches"


# -- the options ------------------------------------------------------------------------------------------


def _params(command: str) -> dict:
    group = typer.main.get_command(app)
    params = group.commands[command].params if command else group.params
    return {p.name: p for p in params}


def test_the_predict_command_takes_exactly_the_option_fields_with_their_defaults_and_help():
    cli = _params("predict")
    fields = {f.name: f for f in dataclasses.fields(PredictOptions)}
    cli_only = {"model", "inputs", "as_json", "csv", "figures", "figure", "allow_import"}  # output, and imports
    assert set(cli) - cli_only == set(PredictOptions.command_fields())
    assert set(fields) - set(PredictOptions.command_fields()) == {"threads"}
    assert "threads" in _params("")  # the global `tgdfer --threads`
    for name in PredictOptions.command_fields():
        assert cli[name].default == fields[name].default, name
        assert f"--{name.replace('_', '-')}" in cli[name].opts
        if name != "trust_weights":  # the shared --trust-weights text of every command
            assert cli[name].help == PredictOptions.help(name), name


def test_option_values_are_checked_once_in_python_words_and_cli_words():
    assert INFLUENCE_MODES == INFLUENCES and set(ON_MISSING) == {"fail", "center"}
    with pytest.raises(ConfigError) as e:
        PredictOptions(on_missing="skip")
    assert str(e.value).startswith("on_missing: 'skip'") and "--" not in str(e.value)
    assert e.value.cli.startswith("--on-missing: 'skip'")
    for bad in ({"batch": 0}, {"threads": -1}, {"influence": "raw"}, {"batch": True}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            PredictOptions(**bad)
    result = runner.invoke(app, ["predict", "no-model", "x.mp4", "--on-missing", "skip"])
    assert result.exit_code == 2 and "--on-missing: 'skip'" in result.output and "on_missing:" not in result.output
    with pytest.raises(TypeError, match="unknown predict option.*on_missng"):
        predict("no-model", ["x.mp4"], on_missng="center")
    with pytest.raises(TypeError):
        Predictor("no-model", "cpu")  # options by name only: Predictor(run, "cpu") once meant device
    assert tgdfer.PredictOptions is PredictOptions


# -- the CLI and Predictor on the same inputs -------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory, reference_store, encoder_cfg):
    out = tmp_path_factory.mktemp("inputs") / "run"
    train(small_head(), TrainConfig(store=str(reference_store), fold=1, out=str(out), epochs=1, batch_size=8,
                                    device="cpu"), encoder=encoder_cfg)
    return out


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor(run, device="cpu", batch=4)


@pytest.fixture
def clips(synth_dir, tmp_path):
    """A folder of 3 videos, a glob over them, a frame folder and a CSV naming a video and a frame folder."""
    folder = tmp_path / "vids"
    folder.mkdir()
    for v in sorted((synth_dir / "videos").glob("*.mp4"))[:3]:
        shutil.copy(v, folder / v.name)
    frames = sorted((synth_dir / "frames").iterdir())[0]
    listing = tmp_path / "todo.csv"
    listing.write_text(f"path,label\nvids/{sorted(folder.iterdir())[1].name},x\n{frames},y\n")
    return {"folder": str(folder), "glob": str(folder / "*.mp4"), "frames": str(frames), "csv": str(listing)}


def test_cli_and_predictor_predict_the_same_clips(run, predictor, clips):
    for kind, item in clips.items():
        result = runner.invoke(app, ["predict", str(run), item, "--json", "--device", "cpu"])
        assert result.exit_code == 0, (kind, result.output)
        doc = json.loads(result.stdout)["predictions"]
        got = predictor(item)
        got = [got] if kind == "frames" else got  # one frame folder: one Prediction; the others: a list
        assert all(isinstance(p, Prediction) for p in got), kind
        assert [p.input for p in got] == [p["input"] for p in doc], kind
        assert [p.label for p in got] == [p["predicted"] for p in doc], kind
    assert len(predictor(clips["folder"])) == 3 and len(predictor(clips["csv"])) == 2
    mixed = predictor([clips["glob"], clips["frames"]])  # a list: each item expanded in place
    assert [Path(p.input).name for p in mixed] == [*sorted(Path(p).name for p in Path(clips["folder"]).iterdir()),
                                                   Path(clips["frames"]).name]


def test_a_non_video_and_a_bad_csv_row_fail_cleanly_without_native_log_lines(run, predictor, clips, tmp_path,
                                                                                capfd):
    notes = tmp_path / "notes.json"
    notes.write_text('{"not": "a video"}')
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 400)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"path,label\n{clips['frames']},a\n\n,b\n{corrupt.name},c\n")
    capfd.readouterr()
    result = runner.invoke(app, ["predict", str(run), str(notes), str(bad), "--json", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    preds = json.loads(result.stdout)["predictions"]
    assert [p["ok"] for p in preds] == [False, True, False, False]
    assert preds[0]["error"].startswith(f"{notes}: ") and "CSV" not in preds[0]["error"]
    assert preds[2]["error"] == f"{bad} line 4: empty path"
    assert preds[3]["input"] == str(corrupt) and preds[3]["error"].startswith(str(corrupt))
    by_decord = dataclasses.replace(predictor.model, frame_backend="decord")  # the backend that logs natively
    auto = predictor.model
    try:
        for model in (auto, by_decord):
            predictor.model = model
            got = predictor([notes, bad, corrupt])
            assert [isinstance(p, PredictFailure) for p in got] == [True, False, True, True, True]
            with pytest.raises(TgdferError, match="notes.json"):
                predictor(notes)
    finally:
        predictor.model = auto
    err = capfd.readouterr().err  # file descriptor 2: what a native library writes lands here too
    assert not [line for line in err.splitlines() if any(mark in line for mark in NATIVE_LOG)], err
    decord = pytest.importorskip("decord")  # the check above can fail: decord given the file itself logs natively
    with pytest.raises(Exception):
        decord.VideoReader(str(notes))
    assert "ERROR opening" in capfd.readouterr().err


def test_a_utf16_list_reads_as_its_byte_order_mark_says(tree):
    """Excel's "Unicode Text" export: UTF-16 with a BOM and CRLF line ends (a Latin-1 list: the test above)."""
    listed = tree / "u16.txt"
    listed.write_bytes("videos/clip_2.mp4\r\nframes/a\r\n".encode("utf-16"))
    assert expand_inputs([str(listed)]) == [tree / "videos" / "clip_2.mp4", tree / "frames" / "a"]


def test_a_folder_reads_camcorder_and_phone_videos_and_names_the_files_it_leaves(tmp_path, caplog):
    """.MTS (AVCHD), .m2ts, .ts and .3gp were left out of a folder without a word (exit 0)."""
    for name in ("00000.mp4", "00001.MTS", "00002.m2ts", "00003.3gp", "00004.ts", "notes.txt", "clip.r3d"):
        (tmp_path / name).write_bytes(b"")
    with caplog.at_level("WARNING", logger="tgdfer.inputs"):
        got = folder_clips(tmp_path)
    assert [p.name for p in got] == ["00000.mp4", "00001.MTS", "00002.m2ts", "00003.3gp", "00004.ts"]
    assert "1 file(s) not read as clips" in caplog.text and "clip.r3d" in caplog.text
    assert "notes.txt" not in caplog.text
