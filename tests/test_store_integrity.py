"""Parts of a feature store beside the features that a user's disk can damage: the face boxes and
sources, the text sets, the clip table, and the HDF5 file's own objects. Each is damaged here below
the store's API, as a lost or garbled file would, and must be named by `verify` / `info --verify`
(or refused with one line naming the file), never read back as zeros or a bare traceback."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_store import BLOCK, D, N, T, V, content, is_bad, make_clips
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.errors import TgdferError
from tgdfer.store import FeatureStore, StoreDamaged, export_hdf5
from tgdfer.storeformat import StoreReadError
from tgdfer.storeintegrity import BEFORE_2026_11_24, annotation_digest

runner = CliRunner()
ROW = 5  # a clip the tests damage: block 1 (rows 4..7)
FP = {"encoder": {"model": "ViT-B-32"}, "faces": {"detector": "test"},
      "annotations": {"reader": "test", "clips": N, "sha256": annotation_digest(make_clips())}}


def flat(text: str) -> str:
    return " ".join(text.split())


def boxes_of(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic face boxes [n, V, T, 4] float32 and face sources [n, V, T] int8 of ``rows``."""
    boxes = (np.asarray(rows)[:, None, None, None] + np.arange(V * T * 4).reshape(V, T, 4)).astype(np.float32)
    source = ((np.asarray(rows)[:, None, None] + np.arange(V * T).reshape(V, T)) % 4).astype(np.int8)
    return boxes, source


@pytest.fixture(scope="module")
def face_store(tmp_path_factory) -> Path:
    """A store as an extraction with a face stage writes it: features, boxes, face sources, two text sets."""
    path = tmp_path_factory.mktemp("faces") / "store.zarr"
    rows = np.arange(N)[~is_bad(np.arange(N))]
    with FeatureStore.create(path, clips=make_clips(), views=V, frames=T, dim=D, fingerprint=FP,
                             block_size=BLOCK) as s:
        s.write_clips(rows, *content(rows), boxes=boxes_of(rows)[0], face_source=boxes_of(rows)[1])
        s.record_failures(np.arange(N)[is_bad(np.arange(N))], "cannot decode")
        s.write_text("class_names", ["happy", "sad"], np.full((2, 77), 3), np.full((2, D), 0.25))
        s.write_text("descriptors", ["smile", "frown", "tears"], np.full((3, 77), 4), np.full((3, D), 0.5))
    return path


@pytest.fixture(params=["zarr", "hdf5"])
def copy(request, face_store, tmp_path) -> Path:
    if request.param == "hdf5":
        return export_hdf5(face_store, tmp_path / "store.h5")
    shutil.copytree(face_store, tmp_path / "store.zarr")
    return tmp_path / "store.zarr"


def zero_h5_chunk(path: Path, name: str, coord: tuple[int, ...]) -> None:
    """Zero the bytes of one chunk of dataset ``name`` in the file (a page of the disk lost)."""
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info_by_coord(coord)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset)
        f.write(b"\0" * info.size)


def zero_h5_data(path: Path, name: str) -> None:
    """Zero the data of the contiguous dataset ``name``."""
    with h5py.File(path, "r") as f:
        offset, size = f[name].id.get_offset(), f[name].id.get_storage_size()
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\0" * size)


def zero_h5_header(path: Path, name: str) -> None:
    """Zero the start of the object header of ``name``: h5py then raises KeyError when it opens it."""
    with h5py.File(path, "r") as f:
        address = h5py.h5o.get_info(f[name].id).addr
    with open(path, "r+b") as f:
        f.seek(address)
        f.write(b"\0" * 64)


def info_verify(path: Path, *extra: str):
    return runner.invoke(app, ["info", str(path), "--verify", *extra])


# -- face boxes and face sources ---------------------------------------------------------------------


@pytest.mark.parametrize("array", ["boxes", "face_source"])
def test_a_lost_box_chunk_is_named_by_verify_and_refused_by_the_verified_read(copy, array):
    block = ROW // BLOCK
    if copy.suffix == ".zarr":  # a deleted chunk reads back as the fill value (NaN / -1)
        chunk = copy / array / "c" / str(block) / "0" / "0"
        (chunk / "0" if array == "boxes" else chunk).unlink()
    else:
        zero_h5_chunk(copy, array, (block * BLOCK, 0, 0) + ((0,) if array == "boxes" else ()))
    rows = [r for r in range(block * BLOCK, (block + 1) * BLOCK) if not is_bad(np.array(r))]
    with FeatureStore.open(copy) as s:
        damage = s.verify()
        assert [d.row for d in damage] == rows and all("face boxes" in d.problem for d in damage)
        with pytest.raises(StoreDamaged, match=rf"clip '{make_clips()['clip_id'][rows[0]]}' \(row {rows[0]}\): face "
                                               "boxes or face sources do not match their checksum"):
            s.read_feats_verified()
        with pytest.raises(StoreDamaged, match=rf"\(row {rows[0]}\): face boxes"):  # what end-to-end training crops by
            s.read_boxes_verified()
    result = info_verify(copy, "--json")
    assert result.exit_code == 1, result.output
    assert [d["row"] for d in json.loads(result.stdout)["damage"]] == rows


def test_intact_boxes_pass_and_survive_the_export(face_store, tmp_path):
    h5 = export_hdf5(face_store, tmp_path / "s.h5")
    for path in (face_store, h5):
        with FeatureStore.open(path) as s:
            assert s.has_box_checksums and s.verify() == [] and s.not_checksummed() == []
            done = s.done
            assert (s.read_box_checksums()[done] != 0).all() and (s.read_box_checksums()[~done] == 0).all()
            assert np.array_equal(s.read_boxes_verified()[done], boxes_of(np.flatnonzero(done))[0])


# -- text sets -----------------------------------------------------------------------------------------


def test_a_lost_text_chunk_is_named_not_read_as_zeros(copy):
    if copy.suffix == ".zarr":
        (copy / "text" / "descriptors" / "emb" / "c" / "0" / "0").unlink()  # reads back as zeros
    else:
        zero_h5_data(copy, "text/descriptors/emb")
    with FeatureStore.open(copy) as s:
        assert np.array_equal(s.text("class_names")[2], np.full((2, D), 0.25, np.float32))  # the other set reads
        with pytest.raises(StoreDamaged, match="text set 'descriptors': its prompts, tokens or embeddings do not "
                                               "match its checksum"):
            s.text("descriptors")
        damage = s.verify()
        assert [(d.row, d.part) for d in damage] == [(None, "text set 'descriptors'")]
        with pytest.raises(StoreDamaged, match="text set 'descriptors'"):
            s.content_hash()
    result = info_verify(copy)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "text set 'descriptors': its prompts, tokens or embeddings do not match" in flat(result.output)
    as_json = info_verify(copy, "--json")
    assert as_json.exit_code == 1 and [d["row"] for d in json.loads(as_json.stdout)["damage"]] == [None]


def test_a_store_without_the_new_checksums_opens_and_says_what_is_not_checksummed(face_store, tmp_path):
    """What a store written before these checksums looks like: no box_checksum, text sets without a checksum
    attribute, a fingerprint without an annotation digest."""
    old = tmp_path / "old.zarr"
    shutil.copytree(face_store, old)
    shutil.rmtree(old / "box_checksum")
    for name in ("class_names", "descriptors"):
        meta = old / "text" / name / "zarr.json"
        record = json.loads(meta.read_text())
        del record["attributes"]["checksum"]
        meta.write_text(json.dumps(record))
    root = json.loads((old / "zarr.json").read_text())
    del root["attributes"]["fingerprint"]["annotations"]
    (old / "zarr.json").write_text(json.dumps(root))
    (old / "text" / "descriptors" / "emb" / "c" / "0" / "0").unlink()  # cannot be told from zeros: not checked
    for path in (old, export_hdf5(old, tmp_path / "old.h5")):
        with FeatureStore.open(path) as s:
            assert s.not_checksummed() == ["face boxes", "text set 'class_names'", "text set 'descriptors'",
                                           "clip table"]
            assert s.verify() == [] and not s.text("descriptors")[2].any()
        result = info_verify(path)
        assert result.exit_code == 0, result.output
        assert ("not checksummed: face boxes, text set 'class_names', text set 'descriptors', clip table"
                in flat(result.output))
    with FeatureStore.open(old, mode="r+") as s:  # resuming it writes no box checksums, and no error
        s.write_clips([ROW], *content(np.array([ROW])))
        assert not s.has_box_checksums


# -- the clip table ------------------------------------------------------------------------------------


def edit_clip_table(path: Path, column: str, value: str) -> None:
    """Set ``column`` of clip ROW in the store's clip table, as a hand edit of the CSV would."""
    if path.suffix == ".zarr":
        text = (path / "clips.csv").read_text(encoding="utf-8")
    else:
        with h5py.File(path, "r") as f:
            text = f["clips_csv"].asstr()[()]
    rows = list(csv.reader(io.StringIO(text)))
    rows[1 + ROW][rows[0].index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    if path.suffix == ".zarr":
        (path / "clips.csv").write_text(out.getvalue(), encoding="utf-8")
    else:
        with h5py.File(path, "r+") as f:
            del f["clips_csv"]
            f.create_dataset("clips_csv", data=out.getvalue(), dtype=h5py.string_dtype())


def set_annotation_digest(path: Path, digest: str) -> None:
    """Record ``digest`` as the store's annotations.sha256, as an older tgdfer wrote it."""
    if path.suffix == ".zarr":
        root = json.loads((path / "zarr.json").read_text())
        root["attributes"]["fingerprint"]["annotations"]["sha256"] = digest
        (path / "zarr.json").write_text(json.dumps(root))
        return
    with h5py.File(path, "r+") as f:
        fingerprint = json.loads(f.attrs["fingerprint"])
        fingerprint["annotations"]["sha256"] = digest
        f.attrs["fingerprint"] = json.dumps(fingerprint)


@pytest.mark.parametrize("column, value", [("label", "6"), ("fold", "4")])
def test_an_edited_label_or_fold_in_the_clip_table_is_refused_naming_the_file(copy, column, value):
    edit_clip_table(copy, "path", "/elsewhere/clip")  # a moved dataset: paths are not what a store is bound to
    with FeatureStore.open(copy) as s:
        assert s.clips["path"][ROW] == "/elsewhere/clip"
    set_annotation_digest(copy, annotation_digest(make_clips(), BEFORE_2026_11_24))  # with n_frames: still read
    with FeatureStore.open(copy) as s:
        assert s.clip_table_digest == annotation_digest(make_clips(), BEFORE_2026_11_24)
    edit_clip_table(copy, column, value)
    where = str(copy / "clips.csv") if copy.suffix == ".zarr" else f"{copy}: HDF5 dataset 'clips_csv'"
    with pytest.raises(TgdferError) as e:
        FeatureStore.open(copy)
    assert str(e.value).startswith(where) and "the clip table was edited" in str(e.value)
    assert "tgdfer extract --overwrite" in str(e.value)
    result = info_verify(copy)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "".join(where.split()) in "".join(result.output.split())  # rich may wrap the path anywhere


# -- an HDF5 file's damaged objects --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["text/descriptors/emb", "checksum", "box_checksum", "face_source"])
def test_a_damaged_hdf5_object_is_one_error_naming_the_file_and_dataset(face_store, tmp_path, name):
    h5 = export_hdf5(face_store, tmp_path / "store.h5")
    zero_h5_header(h5, name)
    with pytest.raises(StoreReadError) as e:
        with FeatureStore.open(h5) as s:
            s.verify()
    assert str(e.value).startswith(f"{h5}: HDF5 dataset '{name}' cannot be read (KeyError")
    result = info_verify(h5)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"HDF5 dataset '{name}' cannot be read" in flat(result.output)
