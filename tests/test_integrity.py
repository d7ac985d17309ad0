"""Store integrity: per-clip checksums find flipped, swapped, truncated and missing chunks on disk,
non-finite features and undecodable bytes; train-head refuses such a store, a resumed run refuses a
changed one, and a re-run of extract repairs the damage."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import tgdfer.extraction as extract_mod
from tgdfer.augment import AugmentConfig
from tgdfer.cli import app
from tgdfer.errors import TgdferError
from tgdfer.extraction import NON_FINITE, extract
from tgdfer.head import HeadConfig
from tgdfer.store import NO_CHECKSUMS, FeatureStore, StoreDamaged, clip_checksums, export_hdf5
from tgdfer.training import TrainConfig, train

from smallhead import small_head
from test_store_integrity import edit_clip_table, set_annotation_digest, zero_h5_header

runner = CliRunner()


def flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())
ROW, OTHER = 5, 9  # the clips the tests damage (reference store: 20 clips, blocks of 4)


@pytest.fixture
def zarr_copy(reference_store, tmp_path) -> Path:
    path = tmp_path / "store.zarr"
    shutil.copytree(reference_store, path)
    return path


@pytest.fixture
def h5_copy(reference_store, tmp_path) -> Path:
    return export_hdf5(reference_store, tmp_path / "store.h5")


def clip_id(path: Path, row: int) -> str:
    with FeatureStore.open(path) as s:
        return str(s.clip_ids[row])


# -- damage done on disk, below the store's API -----------------------------------------------------


def zarr_chunk(path: Path, row: int) -> Path:
    return path / "feats" / "c" / str(row) / "0" / "0" / "0"


def flip_zarr(path: Path) -> list[int]:
    chunk = zarr_chunk(path, ROW)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x80  # one bit of the compressed chunk
    chunk.write_bytes(bytes(data))
    return [ROW]


def swap_zarr(path: Path) -> list[int]:
    a, b = zarr_chunk(path, ROW), zarr_chunk(path, OTHER)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    return [ROW, OTHER]


def truncate_zarr(path: Path) -> list[int]:
    chunk = zarr_chunk(path, ROW)
    chunk.write_bytes(chunk.read_bytes()[:40])
    return [ROW]


def delete_zarr(path: Path) -> list[int]:
    zarr_chunk(path, ROW).unlink()  # reads back as the fill value
    return [ROW]


def h5_chunk(path: Path, row: int) -> tuple[int, int]:
    """(byte offset, size) of feats row `row`'s chunk in the HDF5 file."""
    with h5py.File(path, "r") as f:
        info = f["feats"].id.get_chunk_info_by_coord((row, 0, 0, 0))
        return info.byte_offset, info.size


def flip_h5(path: Path) -> list[int]:
    offset, size = h5_chunk(path, ROW)
    with open(path, "r+b") as f:
        f.seek(offset + size // 2 + 1)  # the high byte of a float16: its sign bit
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 0x80]))
    return [ROW]


def swap_h5(path: Path) -> list[int]:
    (oa, size), (ob, _) = h5_chunk(path, ROW), h5_chunk(path, OTHER)
    with open(path, "r+b") as f:
        f.seek(oa)
        a = f.read(size)
        f.seek(ob)
        b = f.read(size)
        f.seek(oa)
        f.write(b)
        f.seek(ob)
        f.write(a)
    return [ROW, OTHER]


DAMAGE = {"zarr-flip": flip_zarr, "zarr-swap": swap_zarr, "zarr-truncate": truncate_zarr,
          "zarr-delete": delete_zarr, "hdf5-flip": flip_h5, "hdf5-swap": swap_h5}


def train_head_cli(store: Path, out: Path, encoder_cfg, *extra: str):
    return runner.invoke(app, ["train-head", "--set", f"train.store='{store}'", "--set", f"train.out='{out}'",
                               "--set", f"encoder.model='{encoder_cfg.model}'",
                               "--set", f"encoder.pretrained='{encoder_cfg.pretrained}'",
                               "--fold", "1", "--epochs", "1", "--device", "cpu", "--set", "train.batch_size=8",
                               *extra])


# -- tests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_intact_store_passes_every_check(backend, zarr_copy, h5_copy, ref):
    path = zarr_copy if backend == "zarr" else h5_copy
    with FeatureStore.open(path) as s:
        assert s.has_checksums and s.verify() == []
        checksums = s.read_checksums()
        assert (checksums != 0).sum() == ref["done"].sum()  # every done clip has one, written with it
        expect = clip_checksums(np.arange(s.n_clips), s.clip_ids, ref["feats"], ref["frame_index"])
        assert np.array_equal(checksums[ref["done"]], expect[ref["done"]])
        assert s.read_feats_verified().tobytes() == ref["feats"].tobytes()
    result = runner.invoke(app, ["info", str(path), "--verify"])
    assert result.exit_code == 0, result.output
    assert "matches its checksum" in flat(result.output)


def test_checksum_names_the_row_and_clip_it_was_written_for(ref):
    ids = np.array(["a", "b"], dtype=object)
    feats, index = ref["feats"][:2], ref["frame_index"][:2]
    base = clip_checksums(np.arange(2), ids, feats, index)
    assert base[0] != base[1]
    assert clip_checksums(np.array([1, 0]), ids[::-1], feats, index).tolist() != base.tolist()  # rows swapped
    changed = feats.copy()
    changed.view(np.uint16)[0, 0, 0, 0] ^= 0x8000  # one sign bit
    assert clip_checksums(np.arange(2), ids, changed, index)[0] != base[0]
    assert clip_checksums(np.arange(2), ids, changed, index)[1] == base[1]


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_chunk_is_named_by_verify_and_refused_by_train_head(case, zarr_copy, h5_copy, encoder_cfg, tmp_path):
    path = zarr_copy if case.startswith("zarr") else h5_copy
    rows = DAMAGE[case](path)
    ids = [clip_id(path, r) for r in rows]
    with FeatureStore.open(path) as s:
        damage = s.verify()
    assert [d.row for d in damage] == rows and [d.clip_id for d in damage] == ids
    if case == "zarr-delete":
        assert "missing" in damage[0].problem

    info = runner.invoke(app, ["info", str(path), "--verify"])
    assert info.exit_code == 1 and all(i in info.output for i in ids), info.output
    assert "Traceback" not in info.output
    as_json = runner.invoke(app, ["info", str(path), "--verify", "--json"])
    assert as_json.exit_code == 1 and [d["row"] for d in json.loads(as_json.stdout)["damage"]] == rows

    result = train_head_cli(path, tmp_path / "run", encoder_cfg)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.startswith("error:")
    assert all(f"'{i}'" in result.output for i in ids) and "damaged" in result.output, result.output
    assert "re-run `tgdfer extract`" in flat(result.output)  # how to repair
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_train_head_refuses_a_store_whose_extraction_did_not_finish(zarr_copy, encoder_cfg, tmp_path):
    import zarr

    done = zarr.open_array(str(zarr_copy / "done"), mode="r+")
    done[3:7] = False  # as an interrupted extraction leaves them: neither done nor failed
    with FeatureStore.open(zarr_copy) as s:
        coverage = s.coverage()
    assert coverage["pending"] == 4
    result = train_head_cli(zarr_copy, tmp_path / "run", encoder_cfg)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"4 of {coverage['clips']} clips are not extracted yet" in flat(result.output)
    assert "run `tgdfer extract` with the same settings to finish it" in flat(result.output)
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_undecodable_chunk_is_one_error_naming_the_clip(zarr_copy):
    truncate_zarr(zarr_copy)
    with FeatureStore.open(zarr_copy) as s:
        with pytest.raises(StoreDamaged, match=rf"clip '{s.clip_ids[ROW]}' \(row {ROW}\): its feats chunk cannot be "
                                               "decoded"):
            s.read_feats()
        assert s.read_feats([ROW - 1]).shape == (1, s.views, s.frames, s.dim)  # the other clips still read


@pytest.mark.parametrize("array", ["done", "checksum"])
def test_undecodable_row_table_is_one_error(zarr_copy, array):
    (zarr_copy / array / "c" / "1").write_bytes(b"not zstd")  # rows 4-7
    result = runner.invoke(app, ["info", str(zarr_copy), "--verify"])
    assert result.exit_code == 2 and result.output.startswith("error:"), result.output
    assert f"'{array}' array cannot be decoded" in flat(result.output)


def test_extract_verify_reports_damage(zarr_copy, extract_config, tmp_path):
    delete_zarr(zarr_copy)
    cid = clip_id(zarr_copy, ROW)
    config = tmp_path / "p.toml"
    config.write_text(f'[extract]\nstore = "{zarr_copy}"\n')
    result = runner.invoke(app, ["extract", "--config", str(config), "--verify"])
    assert result.exit_code == 1 and cid in result.output and "damaged" in result.output, result.output


def test_rerun_of_extract_repairs_damaged_clips(zarr_copy, reference_store, clip_table, encoder_cfg, extract_config):
    swap_zarr(zarr_copy)
    result = extract(extract_config(zarr_copy), AugmentConfig(), encoder_cfg, clip_table, data_kind="dfew")
    assert result.ok and result.extracted == 2  # only the two damaged clips
    for row in (ROW, OTHER):
        assert zarr_chunk(zarr_copy, row).read_bytes() == zarr_chunk(reference_store, row).read_bytes()
    with FeatureStore.open(zarr_copy) as s, FeatureStore.open(reference_store) as r:
        assert s.verify() == [] and s.content_hash() == r.content_hash()


def test_extract_repairs_a_store_whose_annotation_digest_is_the_older_one(zarr_copy, clip_table, encoder_cfg,
                                                                          extract_config):
    """A store extracted before 2026-11-24 digested n_frames with the annotations; it opens (the clip table check
    accepts that digest), and re-running extract, the repair for its damaged clips, resumes it instead of
    refusing it as "a different feature store" over the digest alone."""
    from tgdfer.storeintegrity import BEFORE_2026_11_24, annotation_digest

    with FeatureStore.open(zarr_copy) as s:
        older = annotation_digest(s.clips, BEFORE_2026_11_24)
    set_annotation_digest(zarr_copy, older)
    swap_zarr(zarr_copy)
    result = extract(extract_config(zarr_copy), AugmentConfig(), encoder_cfg, clip_table, data_kind="dfew")
    assert result.ok and result.extracted == 2  # only the two damaged clips
    with FeatureStore.open(zarr_copy) as s:
        assert s.verify() == [] and s.fingerprint["annotations"]["sha256"] == older  # the store's own, kept
    clip_table = clip_table.copy()
    clip_table.loc[ROW, "label"] = (clip_table.loc[ROW, "label"] + 1) % 7  # other annotations: still refused
    with pytest.raises(TgdferError, match="annotations.sha256"):
        extract(extract_config(zarr_copy), AugmentConfig(), encoder_cfg, clip_table, data_kind="dfew")


def test_nan_written_raw_is_a_checksum_mismatch(zarr_copy):
    with FeatureStore.open(zarr_copy, mode="r+") as s:
        s._files.array("feats")[ROW, 0, 0, 0] = np.nan  # below write_clips: the checksum is not updated
    with FeatureStore.open(zarr_copy) as s:
        damage = s.verify()
    assert [d.row for d in damage] == [ROW] and "does not match its checksum" in damage[0].problem


def test_nan_from_a_bad_encoder_is_reported_as_non_finite_features_not_a_learning_rate(zarr_copy, ref, tmp_path):
    with FeatureStore.open(zarr_copy, mode="r+") as s:
        feats = ref["feats"][[ROW]].copy()
        feats[0, 1, 2, 3] = np.inf
        s.write_clips([ROW], feats, ref["frame_index"][[ROW]])  # checksum valid: the data is what was written
        cid = s.clip_ids[ROW]
    with FeatureStore.open(zarr_copy) as s:
        damage = s.verify()
    assert [d.row for d in damage] == [ROW] and "not finite" in damage[0].problem and not damage[0].repairable
    with pytest.raises(StoreDamaged, match=rf"clip '{cid}' \(row {ROW}\): features are not finite") as e:
        train(HeadConfig(learnable=False), TrainConfig(store=str(zarr_copy), fold=1, out=str(tmp_path / "run"),
                                                       epochs=1, batch_size=8))
    assert "lower lr" not in str(e.value)


def test_extract_records_non_finite_encoder_output_as_a_failure(tmp_path, clip_table, encoder_cfg, extract_config,
                                                                monkeypatch):
    table = clip_table.head(4)
    bad = str(table["clip_id"].iat[2])
    encode = extract_mod.encode_views

    def nan_for_the_third_clip(enc, pixels):
        feats = encode(enc, pixels)  # [B, V, T, D]: one batch of the 4 clips (batch_clips = 4)
        feats[2, 0, 0, 0] = np.nan
        return feats

    monkeypatch.setattr(extract_mod, "encode_views", nan_for_the_third_clip)
    path = tmp_path / "s.zarr"
    result = extract(extract_config(path), AugmentConfig(), encoder_cfg, table, data_kind="dfew")
    assert result.extracted == 3 and result.failures == [(bad, NON_FINITE)]
    with FeatureStore.open(path) as s:
        assert s.done.tolist() == [True, True, False, True] and s.verify() == []
        assert s.failures["clip_id"].tolist() == [bad]


def test_resume_refuses_a_store_whose_content_changed(zarr_copy, ref, tmp_path):
    head, out = small_head(learnable=False), tmp_path / "run"
    cfg = TrainConfig(store=str(zarr_copy), fold=1, out=str(out), epochs=1, batch_size=8)
    train(head, cfg)
    with FeatureStore.open(zarr_copy, mode="r+") as s:  # same fingerprint, other bytes: a valid rewrite of a clip
        s.write_clips([ROW], ref["feats"][[OTHER]], ref["frame_index"][[ROW]])
    more = TrainConfig(store=str(zarr_copy), fold=1, out=str(out), epochs=2, batch_size=8)
    with pytest.raises(TgdferError, match="changed since the run started .*the clips' features"):
        train(head, more, resume=True)
    with FeatureStore.open(zarr_copy, mode="r+") as s:  # put the clip back: the content is the run's again
        s.write_clips([ROW], ref["feats"][[ROW]], ref["frame_index"][[ROW]])
        name = s.text_sets[0]
        prompts, tokens, emb = s.text(name)
    train(head, more, resume=True)
    with FeatureStore.open(zarr_copy, mode="r+") as s:
        s.write_text(name, prompts, tokens, emb + 1)
    even_more = TrainConfig(store=str(zarr_copy), fold=1, out=str(out), epochs=3, batch_size=8)
    with pytest.raises(TgdferError, match=f"text set '{name}'"):
        train(head, even_more, resume=True)


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_a_moved_dataset_keeps_the_runs_evaluate_and_resume(backend, zarr_copy, h5_copy, tmp_path):
    """clips.csv's paths and frame counts may change (docs/extraction.md): the store opens, and a run trained on
    it still evaluates and resumes; the content hash compares what the annotations say, not the file's bytes."""
    from tgdfer.evaluation import rescore

    store = zarr_copy if backend == "zarr" else h5_copy
    head, out = small_head(learnable=False), tmp_path / "run"
    train(head, TrainConfig(store=str(store), fold=1, out=str(out), epochs=1, batch_size=8))
    before = rescore(out, device="cpu").test.war
    edit_clip_table(store, "path", "/elsewhere/clip.mp4")  # the dataset moved, a video was re-encoded
    edit_clip_table(store, "n_frames", "77")
    assert rescore(out, device="cpu").test.war == before
    resumed = train(head, TrainConfig(store=str(store), fold=1, out=str(out), epochs=2, batch_size=8), resume=True)
    assert len(resumed.history) == 2


def test_zarr_and_hdf5_export_have_the_same_content_hash(zarr_copy, h5_copy):
    with FeatureStore.open(zarr_copy) as z, FeatureStore.open(h5_copy) as h:
        assert z.content_hash() == h.content_hash()
        assert z.content_hash()["clips"] is not None


def test_store_without_checksums_warns_once_and_keeps_working(zarr_copy, caplog, ref):
    shutil.rmtree(zarr_copy / "checksum")  # what a store written before checksums looks like
    with caplog.at_level(logging.WARNING, logger="tgdfer.store"), FeatureStore.open(zarr_copy) as s:
        assert not s.has_checksums
        assert s.verify() == [] and s.read_feats_verified().tobytes() == ref["feats"].tobytes()
        assert s.content_hash()["clips"] is None
    assert [r.getMessage() for r in caplog.records].count(f"{zarr_copy}: {NO_CHECKSUMS}") == 1
    result = runner.invoke(app, ["info", str(zarr_copy)])
    assert result.exit_code == 0 and "checksums: none" in flat(result.output), result.output
    with FeatureStore.open(zarr_copy, mode="r+") as s:  # resuming it writes no checksums, and no error
        s.write_clips([ROW], ref["feats"][[ROW]], ref["frame_index"][[ROW]])
        assert not s.has_checksums


# -- the parts beside the features: text sets, clip table, HDF5 objects (tests/test_store_integrity.py) --------


def test_train_head_refuses_a_lost_text_chunk_and_extract_writes_the_set_again(zarr_copy, reference_store, clip_table,
                                                                               encoder_cfg, extract_config, tmp_path):
    (zarr_copy / "text" / "class_names" / "emb" / "c" / "0" / "0").unlink()  # read back as zeros before
    frozen = ("--set", "head.learnable=false")  # no text encoder runs: the stored embeddings are the prompts
    result = train_head_cli(zarr_copy, tmp_path / "run", encoder_cfg, *frozen)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "text set 'class_names': its prompts, tokens or embeddings do not match its checksum" in flat(result.output)
    assert not (tmp_path / "run" / "last.safetensors").exists()
    repaired = extract(extract_config(zarr_copy), AugmentConfig(), encoder_cfg, clip_table, data_kind="dfew")
    assert repaired.ok and repaired.extracted == 0  # no clip: only the text set is written again
    with FeatureStore.open(zarr_copy) as s, FeatureStore.open(reference_store) as r:
        assert s.verify() == [] and s.content_hash() == r.content_hash()


def test_train_head_refuses_a_hand_edited_label_naming_the_clip_table(zarr_copy, encoder_cfg, tmp_path):
    csv = zarr_copy / "clips.csv"
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    table.loc[ROW, "label"] = str((int(table.loc[ROW, "label"]) + 1) % 7)
    table.to_csv(csv, index=False, lineterminator="\n")
    result = train_head_cli(zarr_copy, tmp_path / "run", encoder_cfg)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert str(csv) in "".join(result.output.split()) and "the clip table was edited" in flat(result.output)
    assert "tgdfer extract --overwrite" in flat(result.output)  # how to change labels
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_train_head_on_an_hdf5_store_with_a_damaged_object_is_one_error(h5_copy, encoder_cfg, tmp_path):
    zero_h5_header(h5_copy, "text/class_names/emb")  # h5py: KeyError (bad object header version number)
    result = train_head_cli(h5_copy, tmp_path / "run", encoder_cfg)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "HDF5 dataset 'text/class_names/emb' cannot be read" in flat(result.output)
    assert str(h5_copy) in "".join(result.output.split())
