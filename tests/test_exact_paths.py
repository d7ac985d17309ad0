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


def test_every_skipped_row_is_in_the_stores_failure_table(tmp_path):
    """A row whose label is no class has no row in the store, yet `info` lists it with the missing ones."""
    data = tmp_path / "data"
    video(data / " ok.mp4", 4)
    video(data / "joy.mp4", 4)
    with open(data / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"], [" ok.mp4", "Happiness"], ["gone.mp4", "Sadness"],
                                 ["joy.mp4", "Joy"]])
    store = tmp_path / "s.zarr"
    config = write(tmp_path / "x.toml", f"""
[data]
kind = "csv"
args = {{ csv_file = {json.dumps(str(data / "test.csv"))}, frame_cache = "none", missing = "skip" }}
[encoder]
model = "tgdfer-tiny-vit"
pretrained = "none"
[extract]
store = {json.dumps(str(store))}
device = "cpu"
workers = 0
views = 1
frames = 4
""")
    for _ in range(2):  # a re-run records the same, once
        result = runner.invoke(app, ["extract", "-c", str(config)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    result = runner.invoke(app, ["info", str(store), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    failures = {f["clip_id"]: f for f in info["failures"]}
    assert set(failures) == {"gone", "joy"} and info["skipped_at_read"] == 2
    assert failures["joy"]["row"] is None and "'Joy' is not an emotion" in failures["joy"]["reason"]
    assert failures["gone"]["row"] is not None and "nothing at" in failures["gone"]["reason"]
    assert info["coverage"] == {"clips": 2, "done": 1, "failed": 1, "pending": 0}  # rows of the store
    from tgdfer.store import export_hdf5, FeatureStore

    h5 = export_hdf5(store, tmp_path / "s.h5")
    with FeatureStore.open(h5) as s:
        assert s.unplaced.to_dict("records") == [{"clip_id": "joy", "reason": failures["joy"]["reason"]}]
