"""Feature store: round trips (Zarr, HDF5), ownership, SIGKILL-resume and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import tgdfer.storeprotocol as protocol_mod
from tgdfer.errors import StoreMismatchError, TgdferError
from tgdfer.store import FeatureStore, diff_fingerprint, export_hdf5, hdf5_staging_path, owned_rows

N, V, T, D = 50, 2, 16, 32
BLOCK = 4  # small blocks so that writers' blocks interleave often
FP = {"schema_version": 1, "encoder": {"model": "ViT-B-32", "pretrained": "openai", "quick_gelu": True},
      "sampling": {"frames": T, "views": V, "seed": 0}, "annotations": "sha256:abc", "tgdfer_version": "0.1.0"}
FORK = mp.get_context("fork")


def make_clips(n: int = N) -> pd.DataFrame:
    """A clip table with the contract's columns (and dtypes, NAs included) plus extra columns."""
    return pd.DataFrame({
        "clip_id": [f"{i:05d}" for i in range(1, n + 1)],
        "path": [f"/data/clip, {i}/frames" for i in range(n)],
        "label": np.arange(n, dtype=np.int64) % 7,
        "fold": pd.array([None if i % 9 == 0 else 1 + i % 5 for i in range(n)], dtype="Int64"),
        "split": pd.array([None if i % 3 == 0 else ("train" if i % 2 else "test") for i in range(n)], dtype="string"),
        "n_frames": pd.array([None if i == 4 else 10 + i for i in range(n)], dtype="Int64"),
        "weight": (np.arange(n) / 3).astype(np.float32),
        "short": np.arange(n) % 4 == 0,
        "source": pd.Categorical(["dfew" if i % 2 else "synth" for i in range(n)], categories=["synth", "dfew"]),
        "note": ["" if i % 5 else "empty frames" for i in range(n)],
    })


def content(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic features [n, V, T, D] float16 and frame indices [n, V, T] of ``rows``."""
    feats = np.stack([np.random.default_rng(int(r)).standard_normal((V, T, D)) for r in rows]).astype(np.float16)
    frame_index = (np.asarray(rows)[:, None, None] * 7 + np.arange(V * T).reshape(V, T)) % 97
    return feats, frame_index


def is_bad(rows: np.ndarray) -> np.ndarray:
    return rows % 11 == 3  # clips that "cannot be read"


def fill(store: FeatureStore, writer: int = 0, num_writers: int = 1, batch: int = 3) -> None:
    """What extraction does: the writer's pending rows in batches; unreadable clips recorded."""
    todo = store.todo_rows(writer, num_writers)
    for i in range(0, len(todo), batch):
        rows = todo[i:i + batch]
        good, bad = rows[~is_bad(rows)], rows[is_bad(rows)]
        if len(good):
            store.write_clips(good, *content(good), writer=writer, num_writers=num_writers)
        if len(bad):
            store.record_failures(bad, [f"cannot decode clip {r}" for r in bad], writer, num_writers)


def create(path: Path, **kw) -> FeatureStore:
    args = dict(clips=make_clips(), views=V, frames=T, dim=D, fingerprint=FP, block_size=BLOCK)
    return FeatureStore.create(path, **{**args, **kw})


def store_files(path: Path, under: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file of a Zarr store (except live lock files) -> its bytes."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_file() and not rel.startswith(".locks/") and (not under or rel.startswith(under)):
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[bool, Path]:
    """Uninterrupted single-writer stores, unsharded and sharded."""
    out = {}
    for shards in (False, True):
        path = tmp_path_factory.mktemp("ref") / "store.zarr"
        with create(path, zarr_shards=shards) as s:
            fill(s)
        out[shards] = path
    return out


# -------------------------------------------------------------------------------- round trips


def check_contents(s: FeatureStore) -> None:
    rows = np.arange(N)
    good = ~is_bad(rows)
    feats, frame_index = content(rows)
    got = s.read_feats()
    assert got.dtype == np.float16 and got.shape == (N, V, T, D)
    assert got[good].tobytes() == feats[good].tobytes()
    assert np.isnan(got[~good]).all()  # never written
    fi = s.read_frame_index()
    assert fi.dtype == np.int32 and np.array_equal(fi[good], frame_index[good]) and (fi[~good] == -1).all()
    assert np.array_equal(s.done, good)
    fail = s.failures
    assert fail["row"].tolist() == rows[~good].tolist()
    assert fail["clip_id"].tolist() == [f"{r + 1:05d}" for r in rows[~good]]
    assert fail["reason"].iloc[0] == "cannot decode clip 3"
    assert s.coverage() == {"clips": N, "done": int(good.sum()), "failed": int((~good).sum()), "pending": 0}
    pd.testing.assert_frame_equal(s.clips, make_clips(), check_exact=True)
    assert s.fingerprint == json.loads(json.dumps(FP))
    assert (s.n_clips, s.views, s.frames, s.dim) == (N, V, T, D)


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_round_trip(tmp_path, reference, backend):
    path = tmp_path / "store.zarr"
    sets = {"class_names": ["happy", "sad"], "class_sentences": ["a happy face", "a sad face"],
            "descriptors": ["smile", "frown", "tears"]}
    with create(path) as s:
        fill(s)
        for i, (name, prompts) in enumerate(sets.items()):
            s.write_text(name, prompts, np.full((len(prompts), 77), i), np.full((len(prompts), D), i / 3))
    if backend == "hdf5":
        path = export_hdf5(path, tmp_path / "store.h5")
        assert h5py.is_hdf5(path) and not list(tmp_path.glob(".store.h5~*"))
    with FeatureStore.open(path) as s:
        assert s.backend == backend
        check_contents(s)
        assert s.text_sets == sorted(sets)
        prompts, tokens, emb = s.text("descriptors")
        assert prompts == sets["descriptors"]
        assert tokens.dtype == np.int32 and tokens.shape == (3, 77) and (tokens == 2).all()
        assert emb.dtype == np.float32 and np.array_equal(emb, np.full((3, D), 2 / 3, np.float32))
        assert s.size_on_disk() > N * V * T * D  # most clips hold V*T*D float16 values


def test_sharded_round_trip(reference):
    with FeatureStore.open(reference[True]) as s:
        check_contents(s)
    # one shard file per block of BLOCK clips, not one file per clip
    assert len(list((reference[True] / "feats" / "c").iterdir())) == -(-N // BLOCK)


def test_read_selection_matches_numpy(tmp_path, reference):
    h5 = export_hdf5(reference[False], tmp_path / "s.h5")
    rows = np.array([7, 2, 7, 49, 0])
    for path in (reference[False], reference[True], h5):
        with FeatureStore.open(path) as s:
            full = s.read_feats()
            assert s.read_feats(rows).tobytes() == full[rows].tobytes()
            assert s.read_feats(rows, views=1).tobytes() == full[rows, 1].tobytes()
            assert s.read_feats(rows, views=[1, 0]).tobytes() == full[rows][:, [1, 0]].tobytes()
            assert np.array_equal(s.read_frame_index(rows), s.read_frame_index()[rows])
            with pytest.raises(ValueError, match="0..49"):
                s.read_feats([50])


def test_bulk_read_fetches_each_clip_chunk_once(reference, monkeypatch):
    fetched = []
    get = protocol_mod.AtomicLocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        fetched.append(key)
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(protocol_mod.AtomicLocalStore, "get", counting_get)
    with FeatureStore.open(reference[False]) as s:
        fetched.clear()
        s.read_feats()
    chunks = [k for k in fetched if k.startswith("feats/c/")]
    written = {f"feats/c/{r}/0/0/0" for r in np.flatnonzero(~is_bad(np.arange(N)))}
    assert len(chunks) == N and set(chunks) >= written and len(set(chunks)) == N


def test_text_set_is_replaced_whole_and_validated(tmp_path):
    with create(tmp_path / "s.zarr") as s:
        s.write_text("class_names", ["a", "b"], np.ones((2, 77), int), np.ones((2, D)))
        s.write_text("class_names", ["a", "b", "c"], np.zeros((3, 77), int), np.zeros((3, D)))
        prompts, tokens, emb = s.text("class_names")
        assert prompts == ["a", "b", "c"] and tokens.shape == (3, 77) and not emb.any()
        assert not list((tmp_path / "s.zarr" / ".tmp").iterdir())
        with pytest.raises(ValueError, match=r"emb \[2, 32\]"):
            s.write_text("x", ["a", "b"], np.ones((2, 77), int), np.ones((2, D + 1)))
        with pytest.raises(ValueError, match="name"):
            s.write_text("../x", ["a"], np.ones((1, 77), int), np.ones((1, D)))
        with pytest.raises(TgdferError, match="no text set 'descriptors'.*class_names"):
            s.text("descriptors")


def test_a_read_only_store_reads_a_text_set_once_and_hands_out_copies(tmp_path):
    with create(tmp_path / "s.zarr") as s:
        s.write_text("class_names", ["a", "b"], np.ones((2, 77), int), np.ones((2, D)))
    with FeatureStore.open(tmp_path / "s.zarr") as s:
        prompts, tokens, emb = s.text("class_names")
        prompts.append("c"), tokens.fill(5), emb.fill(7)  # a caller changing what it got
        shutil.rmtree(tmp_path / "s.zarr" / "text" / "class_names")  # read once: not from disk again
        again = s.text("class_names")
        assert again[0] == ["a", "b"] and (again[1] == 1).all() and (again[2] == 1).all()
    with FeatureStore.open(tmp_path / "s.zarr", mode="r+") as s:  # a writable store reads every time
        with pytest.raises(TgdferError, match="no text set 'class_names'"):
            s.text("class_names")


# -------------------------------------------------------------------------------- fingerprints


def test_diff_fingerprint_messages():
    wanted = json.loads(json.dumps(FP))
    assert diff_fingerprint(FP, wanted) == []
    wanted["encoder"]["model"] = "ViT-L-14"
    wanted["encoder"]["quick_gelu"] = 1  # a bool is not an int
    wanted["sampling"]["seed"] = 0.0  # but 0 == 0.0
    wanted["sampling"]["aug"] = {"rotation": 4}
    del wanted["annotations"]
    assert diff_fingerprint(FP, wanted) == [
        "annotations: stored 'sha256:abc', not requested",
        "encoder.model: stored 'ViT-B-32', requested 'ViT-L-14'",
        "encoder.quick_gelu: stored True, requested 1",
        "sampling.aug.rotation: not in the store, requested 4",
    ]
    assert diff_fingerprint(FP, wanted, ignore=("encoder", "annotations")) == [
        "sampling.aug.rotation: not in the store, requested 4"]
    assert diff_fingerprint({"size": (224, 224)}, {"size": [224, 224]}) == []
    with pytest.raises(TgdferError, match="JSON"):
        diff_fingerprint(FP, {"x": object()})


def test_create_resumes_matching_store_and_refuses_different_one(tmp_path):
    path = tmp_path / "s.zarr"
    with create(path) as s:
        s.write_clips([0], *content(np.array([0])))
    with create(path) as s:  # same request: resume
        assert s.done.sum() == 1
    other = json.loads(json.dumps(FP))
    other["encoder"]["model"] = "ViT-L-14"
    with pytest.raises(StoreMismatchError, match=r"fingerprint\.encoder\.model: stored 'ViT-B-32', requested 'ViT-L-14'"):
        create(path, fingerprint=other)
    with pytest.raises(StoreMismatchError, match="dim: stored 32, requested 64"):
        create(path, dim=64)
    clips = make_clips()
    clips.loc[3, "label"] = 6
    with pytest.raises(TgdferError, match="clip table"):
        create(path, clips=clips)


# -------------------------------------------------------------------------------- bad input


def test_open_refuses_what_is_not_a_store(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    import zarr
    zarr.create_group(str(tmp_path / "plain.zarr"))
    with pytest.raises(TgdferError, match="empty is not a tgdfer feature store"):
        FeatureStore.open(tmp_path / "empty")
    with pytest.raises(TgdferError, match="notes.txt is not a tgdfer feature store"):
        FeatureStore.open(tmp_path / "notes.txt")
    with pytest.raises(TgdferError, match="missing.zarr does not exist"):
        FeatureStore.open(tmp_path / "missing.zarr")
    with pytest.raises(TgdferError, match="plain.zarr is not a tgdfer feature store .no 'tgdfer_store'"):
        FeatureStore.open(tmp_path / "plain.zarr")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(TgdferError, match="other.h5 is not a tgdfer feature store"):
        FeatureStore.open(tmp_path / "other.h5")


def test_fsync_mode_writes_the_same_bytes(tmp_path, reference):
    with create(tmp_path / "s.zarr", fsync=True) as s:
        fill(s)
    assert store_files(tmp_path / "s.zarr") == store_files(reference[False])


def test_open_refuses_corrupt_metadata(tmp_path):
    path = tmp_path / "s.zarr"
    create(path).close()
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(TgdferError, match="s.zarr: cannot be read as a tgdfer feature store"):
        FeatureStore.open(path)


def test_open_refuses_other_schema_version(tmp_path):
    path = tmp_path / "s.zarr"
    create(path).close()
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["tgdfer_store"]["schema_version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(TgdferError, match="schema version 99, this tgdfer reads version 1; re-run `tgdfer extract`"):
        FeatureStore.open(path)


def test_hdf5_is_an_export(tmp_path):
    h5 = tmp_path / "dfew.h5"
    with pytest.raises(TgdferError, match="dfew.h5.staging.zarr"):
        create(h5)
    staging = hdf5_staging_path(h5)
    with create(staging) as s:
        fill(s, batch=N)
    with pytest.raises(TgdferError, match="unfinished extraction is staged in .*dfew.h5.staging.zarr"):
        FeatureStore.open(h5)
    export_hdf5(staging, h5)
    with pytest.raises(TgdferError, match="read-only export"):
        FeatureStore.open(h5, mode="r+")


def test_export_refuses_pending_clips(tmp_path):
    with create(tmp_path / "s.zarr") as s:
        s.write_clips([0, 1], *content(np.array([0, 1])))
    with pytest.raises(TgdferError, match="48 of 50 clips are not extracted yet"):
        export_hdf5(tmp_path / "s.zarr", tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()


def test_clip_table_that_cannot_round_trip_is_refused(tmp_path):
    clips = make_clips()
    clips["mixed"] = pd.Series([1, "a"] * (N // 2), dtype=object)
    with pytest.raises(TgdferError, match="column 'mixed'"):
        create(tmp_path / "a.zarr", clips=clips)
    clips = make_clips()
    clips.loc[7, "clip_id"] = "00001"
    with pytest.raises(TgdferError, match="clip_id '00001' appears more than once"):
        create(tmp_path / "b.zarr", clips=clips)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_write_validation(tmp_path, reference):
    with create(tmp_path / "s.zarr") as s:
        feats, frame_index = content(np.array([0, 1]))
        with pytest.raises(ValueError, match=r"expected feats \(2, 2, 16, 32\)"):
            s.write_clips([0, 1], feats[:, :1], frame_index)
        with pytest.raises(ValueError, match="repeat"):
            s.write_clips([0, 0], feats, frame_index)
        with pytest.raises(ValueError, match="reasons"):
            s.record_failures([0, 1], ["only one"])
        s.write_clips([], np.zeros((0, V, T, D)), np.zeros((0, V, T), int))  # an empty batch is a no-op
        assert not s.done.any()
        assert s.read_feats([]).shape == (0, V, T, D) and s.read_feats([], views=0).shape == (0, T, D)
    with FeatureStore.open(reference[False]) as s, pytest.raises(TgdferError, match="read-only"):
        s.write_clips([0], *content(np.array([0])))


# -------------------------------------------------------------------------------- ownership


@pytest.mark.parametrize("n,k,block", [(50, 2, 4), (50, 3, 4), (7, 4, 3), (100, 1, 64), (10, 5, 1)])
def test_owned_rows_partition_all_rows(n, k, block):
    parts = [owned_rows(n, i, k, block) for i in range(k)]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))  # disjoint and complete
    for i, rows in enumerate(parts):
        assert np.all(np.diff(rows) > 0)
        assert set((rows // block) % k) <= {i}  # whole blocks only
    with pytest.raises(TgdferError, match="shard id 2 of 2"):
        owned_rows(n, 2, 2, block)


def test_write_to_unowned_row_is_refused(tmp_path):
    with create(tmp_path / "s.zarr") as s:
        feats, frame_index = content(np.array([3, 4]))
        with pytest.raises(TgdferError, match="writer 0 of 2 may not write row 4: its block 1 belongs to writer 1"):
            s.write_clips([3, 4], feats, frame_index, writer=0, num_writers=2)
        with pytest.raises(TgdferError, match="may not write row 0"):
            s.record_failures([0], "x", writer=1, num_writers=2)
        assert not s.done.any() and s.failures.empty
        assert np.array_equal(s.todo_rows(1, 2), owned_rows(N, 1, 2, BLOCK))


def test_writer_lease_refuses_duplicate_writer_and_mismatched_shards(tmp_path):
    path = tmp_path / "s.zarr"
    with create(path) as a:
        a.write_clips([0], *content(np.array([0])), writer=0, num_writers=2)
        with FeatureStore.open(path, "r+") as b:
            with pytest.raises(TgdferError, match="writer 0 is already running"):
                b.write_clips([1], *content(np.array([1])), writer=0, num_writers=2)
            with pytest.raises(TgdferError, match="uses 2 shards, this one 3"):
                b.write_clips([4], *content(np.array([4])), writer=1, num_writers=3)
            b.write_clips([4], *content(np.array([4])), writer=1, num_writers=2)
    with FeatureStore.open(path, "r+") as b:  # the first store closed: its lease is free again
        b.write_clips([1], *content(np.array([1])), writer=0, num_writers=1)
        assert np.flatnonzero(b.done).tolist() == [0, 1, 4]


def test_overwrite_refuses_a_store_that_a_live_extraction_is_writing(tmp_path):
    from tgdfer.extraction import remove_store

    path = tmp_path / "s.zarr"
    with create(path) as a:
        a.write_clips([0], *content(np.array([0])), writer=0, num_writers=1)  # a writer holds its lease
        with pytest.raises(TgdferError, match=r"an extraction is writing this store \(writer_0, pid \d+ on .*"
                                              r"--overwrite would delete it under that process"):
            remove_store(path)
        assert path.is_dir()
    remove_store(path)  # the writer is gone: a stale lock file does not hold it
    assert not path.exists()


def test_failure_is_cleared_when_the_clip_is_later_written(tmp_path):
    with create(tmp_path / "s.zarr") as s:
        s.record_failures([3, 5], ["corrupt", "missing"])
        assert s.coverage() == {"clips": N, "done": 0, "failed": 2, "pending": N - 2}
        assert 3 not in s.todo_rows() and 3 in s.todo_rows(retry_failed=True)
        s.write_clips([3], *content(np.array([3])))
        assert s.failures["row"].tolist() == [5]
        assert json.loads((tmp_path / "s.zarr/failures/writer_0.json").read_text())["failures"][0]["row"] == 5


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    path = tmp_path / "s.zarr"
    create(path).close()
    host = socket.gethostname()
    names = [f"feats.c.0.0.0.0~999999999@{host}~ab", f"done.c.0~{os.getpid()}@{host}~cd",
             "done.c.0~999999999@elsewhere~ef"]
    for name in names:
        (path / ".tmp" / name).write_bytes(b"half")
    FeatureStore.open(path, "r+").close()
    assert sorted(p.name for p in (path / ".tmp").iterdir()) == sorted(names[1:])


# -------------------------------------------------------------------------------- crash safety


def _extract_child(path: str, slow_label: str, writer: int = 0, num_writers: int = 1,
                   zarr_shards: bool = False, barrier=None) -> None:
    """A forked extraction process; writes of files whose temp label starts with ``slow_label``
    stall halfway through their bytes, so the parent can kill it mid-write."""
    if slow_label:
        class HalfThenStall:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                data = memoryview(data).cast("B")
                self.f.write(data[: len(data) // 2])
                self.f.flush()
                time.sleep(0.2)
                return self.f.write(data[len(data) // 2:]) + len(data) // 2

            def __getattr__(self, name):
                return getattr(self.f, name)

        def stalling_open(file, mode="r", *args, **kwargs):
            f = open(file, mode, *args, **kwargs)
            return HalfThenStall(f) if Path(file).name.startswith(slow_label) else f

        protocol_mod.open = stalling_open  # only in this forked child (write_atomic opens there)
    if barrier is not None:
        barrier.wait()
    with create(Path(path), zarr_shards=zarr_shards) as s:
        fill(s, writer, num_writers)


def _wait_for_temp(path: Path, label: str, proc, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.is_alive():
        try:
            hits = [n for n in os.listdir(path / ".tmp") if n.startswith(label)]
        except FileNotFoundError:
            hits = []
        for name in hits:  # wait until the first half of its bytes is in
            if (path / ".tmp" / name).stat().st_size > 0:
                return name
        time.sleep(0.002)
    raise AssertionError(f"no temporary {label}* file appeared")


@pytest.mark.parametrize("zarr_shards", [False, True])
def test_sigkill_at_any_moment_then_resume_gives_identical_bytes(tmp_path, reference, zarr_shards):
    path = tmp_path / "store.zarr"
    rng = np.random.default_rng(1)
    torn = []
    # kill while a feats chunk, a done chunk or a failure file is half written
    for label in ("feats.c.", "done.c.", "writer_0.json"):
        proc = FORK.Process(target=_extract_child, args=(str(path), label, 0, 1, zarr_shards))
        proc.start()
        name = _wait_for_temp(path, label, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        torn.append((path / ".tmp" / name).stat().st_size)
    assert all(size > 0 for size in torn)  # really killed mid-file: partial temp files left behind
    with FeatureStore.open(path) as s:
        assert 0 < s.coverage()["pending"] < N  # some progress, not finished
    # then at random moments (creation, writes, between data and done, ...)
    for delay in rng.uniform(0.0, 0.15, size=4):
        proc = FORK.Process(target=_extract_child, args=(str(path), "", 0, 1, zarr_shards))
        proc.start()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    with create(path, zarr_shards=zarr_shards) as s:  # resume in this process
        fill(s)
        check_contents(s)
    assert not list((path / ".tmp").iterdir())  # stale temp files of the killed runs are gone
    assert store_files(path) == store_files(reference[zarr_shards])


@pytest.mark.parametrize("zarr_shards", [False, True])
def test_two_concurrent_writers_equal_one_writer(tmp_path, reference, zarr_shards):
    path = tmp_path / "store.zarr"
    barrier = FORK.Barrier(2)  # both race to create the store, then write interleaved blocks
    procs = [FORK.Process(target=_extract_child, args=(str(path), "", k, 2, zarr_shards, barrier)) for k in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert not [p for p in tmp_path.iterdir() if p.name != "store.zarr"]  # the losing skeleton was discarded
    arrays = ("feats/", "frame_index/", "done/", "text/", "zarr.json", "clips.csv")
    assert store_files(path, arrays) == store_files(reference[zarr_shards], arrays)
    with FeatureStore.open(path) as s:
        check_contents(s)
        assert sorted(set(s.failures["writer"])) == [0, 1]


@pytest.mark.parametrize("cap, value", [("feature_dim", D - 1), ("store_views", V - 1)])
def test_a_store_declaring_more_than_the_caps_is_refused_when_opened(tmp_path, cap, value):
    """A shared store saying dim = 2**30 ended info --verify and train-head in a bare MemoryError."""
    from tgdfer import limits

    create(tmp_path / "s.zarr").close()
    with limits.override(limits.parse([f"{cap}={value}"])):
        with pytest.raises(limits.LimitError, match=rf"s\.zarr: the store: .* over the {cap} limit of {value}"):
            FeatureStore.open(tmp_path / "s.zarr")
    FeatureStore.open(tmp_path / "s.zarr").close()  # within the default caps
