"""`tgdfer check`: every annotation row read, every clip looked at (or every frame decoded), one verdict per clip."""

from __future__ import annotations

import json

import pandas as pd
from PIL import Image
from test_annotation_formats import gappy_avi
from test_readers import frames, video, write
from typer.testing import CliRunner

from tgdfer.check import check_clips, status_counts
from tgdfer.cli import app
from tgdfer.readers import read_list

runner = CliRunner()


def make_dataset(root):
    """One clip per verdict, in a 'path n_frames label' list (a few with 'path label' counts elsewhere)."""
    frames(root / "good", 4)
    bad = frames(root / "corrupt", 4)
    (bad / "corrupt_00003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "empty").mkdir()
    odd = frames(root / "odd", 3)
    Image.new("RGB", (8, 4)).save(odd / "odd_00002.jpg")  # one frame of another size: read at the first's (ok)
    video(root / "ok.mp4", 6)
    video(root / "short.mp4", 5)
    cut = video(root / "cut.mp4", 12)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    gappy_avi(root / "old.avi", n=20, keep_every=2)  # header claims 20, holds 10: noted, not an error
    return write(root / "test.txt", "good 4 0\ncorrupt 4 1\nempty 3 2\nok.mp4 6 3\nshort.mp4 9 4\n"
                                    "cut.mp4 12 5\nold.avi 10 6\nmissing 2 0\nodd 3 1\n")


def test_check_clips_gives_one_verdict_per_clip(tmp_path):
    lst = make_dataset(tmp_path / "data")
    results = check_clips(read_list(lst, missing="skip", frame_cache="none"), workers=0, decode=True)
    verdict = dict(zip(results["clip_id"], results["status"]))
    assert verdict == {"missing": "missing", "empty": "empty", "corrupt": "unreadable", "cut": "unreadable",
                       "short": "short", "good": "ok", "ok": "ok", "old": "ok", "odd": "ok"}
    why = dict(zip(results["clip_id"], results["reason"]))
    assert "corrupt_00003.jpg" in why["corrupt"] and "5 frames decode, 9 declared" == why["short"]
    old = results.set_index("clip_id").loc["old"]
    assert (old["decoded"], old["claimed"]) == (10, 20)
    assert results["status"].tolist()[:2] == ["missing", "empty"]  # problems first
    assert status_counts(results) == {"ok": 4, "missing": 1, "empty": 1, "unreadable": 2, "short": 1, "misread": 0,
                                     "label": 0, "large": 0}


def test_check_without_decoding_stats_frames_and_reads_headers(tmp_path):
    lst = make_dataset(tmp_path / "data")
    data = tmp_path / "data"
    (data / "good" / "good_00004.jpg").write_bytes(b"")  # a 0-byte frame: found by stat alone
    frames(data / "badtail", 3)
    (data / "badtail" / "badtail_00003.jpg").write_bytes(b"not an image")  # the last frame's header
    frames(data / "oddtail", 3)
    Image.new("RGB", (8, 4)).save(data / "oddtail" / "oddtail_00003.jpg")
    with open(lst, "a") as f:
        f.write("badtail 3 2\noddtail 3 3\n")
    results = check_clips(read_list(lst, missing="skip", frame_cache="none"), workers=0)
    verdict = dict(zip(results["clip_id"], results["status"]))
    # middle frames are not decoded: corrupt (a bad 3rd of 4 frame) passes; --decode finds it. A last frame of
    # another size is no fault (read at the first frame's size)
    assert verdict == {"missing": "missing", "empty": "empty", "cut": "unreadable", "good": "unreadable",
                       "badtail": "unreadable", "oddtail": "ok", "short": "short", "corrupt": "ok",
                       "ok": "ok", "old": "ok", "odd": "ok"}
    why = dict(zip(results["clip_id"], results["reason"]))
    assert why["good"] == "frame file good_00004.jpg holds 0 bytes"
    assert "badtail_00003.jpg is not a readable image" in why["badtail"]
    assert why["short"] == "5 frames in the file, 9 declared"
    old = results.set_index("clip_id").loc["old"]
    assert (old["decoded"], old["claimed"]) == (10, 20)  # packets counted, the header's claim noted
    parallel = check_clips(read_list(lst, missing="skip", frame_cache="none"), workers=2)
    pd.testing.assert_frame_equal(parallel, results)


def test_check_counts_and_lists_a_frame_folder_shorter_than_annotated(tmp_path):
    frames(tmp_path / "clips" / "a", 3)
    frames(tmp_path / "clips" / "b", 4)
    lst = write(tmp_path / "test.txt", "clips/a 144 0\nclips/b 4 1\n")
    clips = read_list(lst, frame_cache="none")
    assert clips.table["n_frames"].tolist() == [3, 4] and clips.declared == {"a": 144}  # sampling reads the 3
    for decode in (False, True):
        results = check_clips(clips, workers=0, decode=decode)
        assert results[["clip_id", "status", "declared", "decoded"]].values.tolist() == [["a", "short", 144, 3],
                                                                                          ["b", "ok", 4, 4]]
        assert results["reason"][0] == f"3 frames {'decode' if decode else 'in the folder'}, 144 declared"
    config = write(tmp_path / "p.toml", f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(lst))} }}\n')
    result = runner.invoke(app, ["check", str(config), "--workers", "0", "--csv", str(tmp_path / "r.csv")])
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    assert "1 ok, 1 short" in flat and "3 frames in the folder, 144 declared" in flat
    lst.write_text("clips/a 3 0\nclips/b 4 9\n")  # a label that is no class: the reader leaves the row out
    result = runner.invoke(app, ["check", str(config), "--workers", "0", "--csv", str(tmp_path / "r.csv")],
                           terminal_width=200)
    assert result.exit_code == 1 and "test.txt:2" in result.output, result.output  # the row to fix, as in the CSV


def test_check_cli_parallel_progress_csv_and_exit_code(tmp_path):
    lst = make_dataset(tmp_path / "data")
    config = write(tmp_path / "mine.toml", f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(lst))}, '
                                           f'frame_cache = {json.dumps(str(tmp_path / "counts.json"))} }}\n')
    out = tmp_path / "report.csv"
    result = runner.invoke(app, ["check", str(config), "--workers", "2", "--csv", str(out), "--decode"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    flat = " ".join(result.output.split())
    assert "4 ok, 1 missing, 1 empty, 2 unreadable, 1 short" in flat
    assert str(out) in "".join(result.output.split())  # rich may break a long path across lines
    assert "1 videos have a header claiming more frames" in flat
    report = pd.read_csv(out)
    assert len(report) == 9 and set(report["status"]) == {"ok", "missing", "empty", "unreadable", "short"}

    good = write(tmp_path / "data" / "good_test.txt", "good 4 0\nok.mp4 6 3\n")
    clean = write(tmp_path / "clean.toml", f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(good))} }}\n')
    result = runner.invoke(app, ["check", str(clean), "--workers", "0", "--csv", str(tmp_path / "clean.csv")])
    assert result.exit_code == 0, result.output
    assert "2 ok" in result.output


def test_check_reports_a_malformed_annotation_with_file_and_line(tmp_path):
    lst = write(tmp_path / "test.txt", "a 3 0\nb three 1\n")
    config = write(tmp_path / "p.toml", f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(lst))} }}\n')
    result = runner.invoke(app, ["check", str(config), "--csv", str(tmp_path / "r.csv")])
    assert result.exit_code == 2
    assert f"{lst}:2" in " ".join(result.output.split()).replace(" ", "") or f"{lst}:2" in result.output
    assert "Traceback" not in result.output


def test_check_imports_neither_torch_nor_the_model_code(tmp_path):
    """check reads [classes] and [data] only (dataconfig): torch alone costs about 0.8 GB and seconds."""
    import subprocess
    import sys

    frames(tmp_path / "clips" / "a", 2)
    write(tmp_path / "test.txt", "clips/a 2 0\n")
    write(tmp_path / "p.toml", '[data]\nkind = "list"\nargs = { files = "test.txt" }\n[extract]\nviews = 2\n')
    code = ("import sys\nfrom tgdfer.cli import app\ntry:\n    app(['check', 'p.toml', '--workers', '0'])\n"
            "except SystemExit as e:\n    print('exit', e.code, sorted(m for m in ('torch', 'tgdfer.pipeline', "
            "'tgdfer.encoders') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("exit 0 []"), out.stdout + out.stderr


def test_check_takes_its_config_as_argument_or_with_c(tmp_path):
    """issue 21 item 8: `check -c FILE` like the other commands, the positional form kept."""
    frames(tmp_path / "clips" / "b", 4)
    lst = write(tmp_path / "test.txt", "clips/b 4 1\n")
    config = write(tmp_path / "p.toml", f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(lst))} }}\n')
    for args in ([str(config)], ["-c", str(config)], ["--config", str(config)]):
        result = runner.invoke(app, ["check", *args, "--workers", "0", "--csv", str(tmp_path / "r.csv")])
        assert result.exit_code == 0 and "1 ok" in result.output, (args, result.output)
    result = runner.invoke(app, ["check", "--workers", "0"])
    assert result.exit_code == 2 and "-c FILE" in result.output, result.output


def test_a_csv_without_fold_or_split_is_named_by_check_the_reader_and_train_head(tmp_path, caplog):
    """issue 21 item 2: "10 ok" from check, then train-head failing without naming test_list."""
    import numpy as np
    import pytest

    from tgdfer.errors import ConfigError
    from tgdfer.readers import fold_split, read_csv

    frames(tmp_path / "clips" / "a", 4)
    frames(tmp_path / "clips" / "b", 4)
    table = write(tmp_path / "clips.csv", "path,label\nclips/a,happy\nclips/b,sad\n")
    config = write(tmp_path / "p.toml", f'[data]\nkind = "csv"\nargs = {{ csv_file = {json.dumps(str(table))} }}\n')
    result = runner.invoke(app, ["check", str(config), "--workers", "0", "--csv", str(tmp_path / "r.csv")],
                           terminal_width=400)
    assert result.exit_code == 0 and "2 ok" in result.output, result.output
    flat = " ".join(result.output.split())
    assert "no row has a fold or a split" in flat
    for name in ("test_list", "fold_col", "split_col"):
        assert name in flat
    clips = read_csv(table, frame_cache="none")
    assert clips.unsplit and "no row has a fold or a split" in caplog.text and str(table) in caplog.text
    with pytest.raises(ConfigError, match="test_list") as e:
        fold_split(clips.table, None)  # what train-head meets
    assert "fold_col" in str(e.value) and "split_col" in str(e.value)
    caplog.clear()
    tested = write(tmp_path / "test.txt", "clips/b\n")  # the fix the message names
    clips = read_csv(table, test_list=tested, frame_cache="none")
    assert not clips.unsplit and "no row has a fold" not in caplog.text
    train, test = fold_split(clips.table, None)
    np.testing.assert_array_equal(clips.table["clip_id"].to_numpy()[test], ["b"])
