"""Paths reach the disk exactly as the annotation writes them: newlines, surrounding spaces, unicode."""

from __future__ import annotations

import csv
import json

import pandas as pd
from test_readers import video, write
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.readers import read_csv

runner = CliRunner()

NAMES = ["new\nline.mp4", " lead space.mp4", "trail space .mp4", "ünïcödé ç, comma.mp4", "plain.mp4"]


def dataset(root):
    """Five videos whose names need quoting or keep spaces, listed in a CSV written by the csv module."""
    for name in NAMES:
        video(root / name, 4)
    with open(root / "test.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for i, name in enumerate(NAMES):
            w.writerow([name, i])
    return root / "test.csv"


def test_csv_paths_are_read_exactly(tmp_path):
    clips = read_csv(dataset(tmp_path), frame_cache="none")
    assert clips.skipped.empty
    assert sorted(clips.table["path"]) == sorted(str(tmp_path / n) for n in NAMES)
    assert set(clips.table["clip_id"]) == {n.removesuffix(".mp4") for n in NAMES}
    assert clips.table.set_index("clip_id").loc[" lead space", "label"] == 1


def test_a_stripped_or_joined_name_is_not_found_in_its_place(tmp_path):
    """Only the exact file counts: "newline.mp4" or "lead space.mp4" on disk do not stand in for the others."""
    root = tmp_path / "d"
    video(root / "newline.mp4", 4)
    video(root / "lead space.mp4", 4)
    with open(root / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"], ["new\nline.mp4", 0], [" lead space.mp4", 1], ["newline.mp4", 2]])
    clips = read_csv(root / "test.csv", frame_cache="none", missing="skip")
    assert list(clips.table["clip_id"]) == ["newline"]
    assert sorted(clips.skipped["path"]) == sorted([str(root / " lead space.mp4"), str(root / "new\nline.mp4")])
    assert all(r.startswith("nothing at") for r in clips.skipped["reason"])


def test_check_decodes_every_exact_path(tmp_path):
    lst = dataset(tmp_path / "data")
    config = write(tmp_path / "c.toml", f'[data]\nkind = "csv"\nargs = {{ csv_file = {json.dumps(str(lst))}, '
                                        'frame_cache = "none" }\n')
    out = tmp_path / "check.csv"
    result = runner.invoke(app, ["check", str(config), "--workers", "0", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out, keep_default_na=False)
    assert sorted(rows["path"]) == sorted(str(tmp_path / "data" / n) for n in NAMES)
    assert set(rows["status"]) == {"ok"} and rows["decoded"].tolist() == [4] * 5
