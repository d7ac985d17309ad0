"""Nothing dropped silently: clips skipped when reading the annotations end up in the store's failure table."""

from __future__ import annotations

import logging
import shutil

from test_extract import write_pipeline
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.info import describe
from tgdfer.readers import SKIPPED_AT_READ
from tgdfer.store import FeatureStore

runner = CliRunner()


def test_skipped_clips_are_failures_in_the_store_then_extracted_when_back(tmp_path, synth_dir, encoder_cfg, caplog):
    data = tmp_path / "data"
    shutil.copytree(synth_dir / "frames", data / "frames")
    shutil.copytree(synth_dir / "EmoLabel_DataSplit", data / "EmoLabel_DataSplit")
    ids = sorted(p.name for p in (data / "frames").iterdir())
    gone, emptied = ids[:7], ids[7]
    for clip_id in gone:
        shutil.move(data / "frames" / clip_id, tmp_path / clip_id)
    shutil.copytree(data / "frames" / emptied, tmp_path / emptied)
    for f in (data / "frames" / emptied).iterdir():
        f.unlink()
    store = tmp_path / "s.zarr"
    config = write_pipeline(tmp_path / "p.toml", dict(split_dir=data / "EmoLabel_DataSplit",
                                                     frames_dir=data / "frames", missing="skip"), store, encoder_cfg)

    with caplog.at_level(logging.WARNING, logger="tgdfer.readers"):
        result = runner.invoke(app, ["extract", "--config", str(config)])
    assert result.exit_code == 1, result.output  # something is missing: not a clean extraction
    assert "skipped 8 of 20 annotated clips (7 missing, 1 empty folder)" in caplog.text
    listed = [line for line in result.output.splitlines() if line.startswith("  skipped ")]
    assert len(listed) == 5 and "... and 3 more" in result.output  # not one line per clip
    assert "8 failed (8 skipped when reading the annotations)" in result.output.replace("\n", " ")
    assert "Traceback" not in result.output

    with FeatureStore.open(store) as s:
        clips, failures, done = s.clips, s.failures, s.done
    assert len(clips) == 20 and clips["clip_id"].tolist() == ids  # every annotated clip has its row
    assert sorted(failures["clip_id"]) == sorted(gone + [emptied])
    assert failures["reason"].str.startswith(SKIPPED_AT_READ).all()
    why = dict(zip(failures["clip_id"], failures["reason"]))
    assert "nothing at" in why[gone[0]] and "holds no images" in why[emptied] and "set_" in why[emptied]
    assert clips.loc[clips["clip_id"].isin(gone), "n_frames"].isna().all()
    assert done.sum() == 12
    d = describe(store)
    assert d.skipped_at_read == 8 and d.coverage["failed"] == 8
    info = runner.invoke(app, ["info", str(store)])
    assert info.exit_code == 0 and "failed: 8 clips, 8 of them skipped when reading the annotations" in info.output

    for clip_id in gone:  # the files come back: the same store takes them, nothing is redone
        shutil.move(tmp_path / clip_id, data / "frames" / clip_id)
    shutil.rmtree(data / "frames" / emptied)
    shutil.copytree(tmp_path / emptied, data / "frames" / emptied)
    again = runner.invoke(app, ["extract", "--config", str(config)])
    assert again.exit_code == 0, again.output
    assert "extract: 12 clips done before (kept), 8 to do" in again.output
    with FeatureStore.open(store) as s:
        assert s.done.all() and s.failures.empty


def test_ctrl_c_in_extract_says_what_is_kept_and_the_same_command_continues(tmp_path, synth_dir, encoder_cfg,
                                                                             monkeypatch):
    from tgdfer import progress

    store = tmp_path / "s.zarr"
    config = write_pipeline(tmp_path / "p.toml", dict(split_dir=synth_dir / "EmoLabel_DataSplit",
                                                     frames_dir=synth_dir / "frames"), store, encoder_cfg)
    written = progress.LineLogger.__call__

    def ctrl_c_after_two_blocks(self, event):  # blocks of 4 clips (write_pipeline's block_size)
        written(self, event)
        if event.stage == "extract" and event.done >= 8:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress.LineLogger, "__call__", ctrl_c_after_two_blocks)
    stopped = runner.invoke(app, ["extract", "--config", str(config)])
    assert stopped.exit_code == 130 and "Traceback" not in stopped.output
    flat = " ".join(stopped.output.split())
    assert f"extract: interrupted; the clips written before are kept in {store}: run the same command again" in flat
    with FeatureStore.open(store) as s:
        kept = int(s.done.sum())
    assert 8 <= kept < 20
    monkeypatch.setattr(progress.LineLogger, "__call__", written)
    again = runner.invoke(app, ["extract", "--config", str(config)])
    assert again.exit_code == 0, again.output
    assert f"extract: {kept} clips done before (kept), {20 - kept} to do" in again.output
