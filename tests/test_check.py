"""`tgdfer check`: every annotation row read, every frame decoded, one verdict per clip."""

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
    Image.new("RGB", (8, 4)).save(odd / "odd_00002.jpg")  # one frame of another size
    video(root / "ok.mp4", 6)
    video(root / "short.mp4", 5)
    cut = video(root / "cut.mp4", 12)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    gappy_avi(root / "old.avi", n=20, keep_every=2)  # header claims 20, holds 10: noted, not an error
    return write(root / "test.txt", "good 4 0\ncorrupt 4 1\nempty 3 2\nok.mp4 6 3\nshort.mp4 9 4\n"
                                    "cut.mp4 12 5\nold.avi 10 6\nmissing 2 0\nodd 3 1\n")


def test_check_clips_gives_one_verdict_per_clip(tmp_path):
    lst = make_dataset(tmp_path / "data")
    results = check_clips(read_list(lst, missing="skip", frame_cache="none"), workers=0)
    verdict = dict(zip(results["clip_id"], results["status"]))
    assert verdict == {"missing": "missing", "empty": "empty", "corrupt": "unreadable", "cut": "unreadable",
                       "short": "short", "good": "ok", "ok": "ok", "old": "ok", "odd": "unreadable"}
    why = dict(zip(results["clip_id"], results["reason"]))
    assert "odd_00002.jpg is 8x4" in why["odd"]
    assert "corrupt_00003.jpg" in why["corrupt"] and "5 frames decode, 9 declared" == why["short"]
    old = results.set_index("clip_id").loc["old"]
    assert (old["decoded"], old["claimed"]) == (10, 20)
    assert results["status"].tolist()[:2] == ["missing", "empty"]  # problems first
    assert status_counts(results) == {"ok": 3, "missing": 1, "empty": 1, "unreadable": 3, "short": 1, "misread": 0,
                                     "label": 0, "large": 0}


def test_check_cli_parallel_progress_csv_and_exit_code(tmp_path):
    lst = make_dataset(tmp_path / "data")
    config = write(tmp_path / "mine.toml", f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(lst))}, '
                                           f'frame_cache = {json.dumps(str(tmp_path / "counts.json"))} }}\n')
    out = tmp_path / "report.csv"
    result = runner.invoke(app, ["check", str(config), "--workers", "2", "--csv", str(out)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    flat = " ".join(result.output.split())
    assert "3 ok, 1 missing, 1 empty, 3 unreadable, 1 short" in flat
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
