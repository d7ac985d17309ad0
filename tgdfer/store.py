"""Feature store: frozen CLIP features of every clip on disk, resumable and shardable.

One store per (dataset, encoder, sampling, views). Shape legend: ``N`` clips, ``V`` views,
``T`` frames, ``D`` feature width, ``P`` prompts, ``L`` tokens per prompt, ``B`` block size.

Zarr layout (extraction always writes this; an HDF5 export holds the same names)::

    <store>/zarr.json                 root group; attrs "tgdfer_store" (layout) and "fingerprint"
    <store>/feats/                    [N, V, T, D] float16, chunk (1, V, T, D), optional shard (B, V, T, D)
                                      (NaN = not written)
    <store>/frame_index/              [N, V, T] int32, chunk (B, V, T); -1 = not written
    <store>/boxes/                    [N, V, T, 4] float32, chunk (B, V, T, 4): square face crop box of every
                                      sampled frame (x0, y0, x1, y1, source pixels); NaN = whole frame
                                      (no face stage) or not written. Stores made before the face
                                      stage lack it and read as NaN.
    <store>/face_source/              [N, V, T] int8, chunk (B, V, T): where each frame's face box came from
                                      (facetrack.FACE_SOURCES: 0 detected, 1 interpolated, 2 carried over
                                      from another frame, 3 centre square: no face found, on_missing =
                                      "center"); -1 = no face stage or not written (older stores: all -1)
    <store>/checksum/                 [N] uint64, chunk (B,): per-clip checksum of the row, clip id, feats and
                                      frame_index bytes (``clip_checksums``); 0 = not written. Stores made
                                      before checksums lack it (integrity cannot be verified, with a warning).
    <store>/done/                     [N] bool, chunk (B,)
    <store>/text/<name>/              group per prompt set: tokens [P, L] int32, emb [P, D] float32, attrs "prompts"
    <store>/clips.csv                 the clip table; column dtypes in attrs "tgdfer_store" -> "clip_columns"
    <store>/failures/writer_<k>.json  clips writer k could not read, with the reason
    <store>/failures/unplaced.json    annotation rows the reader skipped that have no row (a label that
                                      is no class), with the reason; written by writer 0
    <store>/.tmp/                     files being written (renamed into place when complete)
    <store>/.locks/writer_<k>.lock    flock held by the live process acting as writer k

Crash safety. Every file of the store is written whole to ``.tmp/`` and then ``os.replace``d
onto its key, so a reader (or a resumed run) sees a chunk's old bytes or its new bytes, never a
torn file; ``fsync=True`` also flushes each file and its directory (for power loss; a SIGKILL
alone cannot lose page-cache data). ``write_clips`` returns only after zarr has stored every
feats / frame_index / checksum chunk of the batch, and only then sets ``done`` for those rows, so
``done`` never covers data that is not on disk. A killed run leaves at most some rows written but not
done; the rerun recomputes them and rewrites the same bytes. Temporary files of dead processes
(same host, pid gone) are removed when the store is next opened for writing. The store is created
whole in a hidden sibling directory and renamed into place, so it exists completely or not at all.

Integrity. Every clip's checksum is written by its writer in the same ``write_clips`` as its
chunk, over the row index, clip id and the exact feats / frame_index bytes stored, so a flipped
bit, a truncated or missing chunk (it reads as the fill value) and a chunk swapped for another
clip's all show as a mismatch. ``verify`` checks every done clip (and that its features are
finite); ``read_feats_verified`` does the same for what training loads; ``content_hash`` sums up
the checksums, the clip table and the text sets so that a resumed run can see that its store changed.

Concurrency. Rows are grouped in blocks (``row // block_size``); block ``b`` belongs to writer
``b % num_writers``. Every file a row touches -- its feats chunk, the zarr shard holding it
(shard = one block), its frame_index, checksum and done chunks (one block each) and ``failures/writer_k``
-- is therefore written by exactly one writer, and ``write_clips`` refuses rows the writer does
not own. A partial write into a shard or block chunk is a read-modify-write by its owner alone,
made atomic by the rename, so writers never lose each other's data and the batch size need not
match the block. A process acting as writer ``k`` holds an flock on ``.locks/writer_k.lock``
(released by the kernel when it dies), which refuses a second live writer ``k`` and a live
writer that disagrees on ``num_writers``. Creation is a race any number of processes may run:
each builds the skeleton privately and renames it into place; the first rename wins, the others
discard theirs and open the winner's store after checking it matches what they were asked for.
The metadata is never rewritten after creation. Text sets are written by one process (writer 0):
each is built aside and swapped in whole. Leases and stale-file cleanup assume that processes
on one host share a pid namespace and that the file system supports flock (without it the lease
check is skipped with a warning; block ownership still applies).

HDF5. HDF5 files are neither crash- nor multi-writer-safe, so HDF5 is an export format: extract
into the Zarr store at ``hdf5_staging_path(h5)`` (which resumes like any Zarr store), then
``export_hdf5`` writes a temporary file beside the target and renames it into place.
``FeatureStore.open`` reads both with the same API.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import zarr
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from .errors import TgdferError
from .limits import LimitError, check_depth, check_frame_count, load_json

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_TMP_DIR = ".tmp"
_LOCK_DIR = ".locks"
_FAILURE_DIR = "failures"
_CLIPS_FILE = "clips.csv"
_UNPLACED_FILE = "unplaced.json"  # in failures/
_NA_TOKEN = "<NA>"  # how a missing value is spelled in clips.csv ("" stays an empty string)
_TEXT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_HDF5_SUFFIXES = (".h5", ".hdf5")


# ---------------------------------------------------------------------------------------------
# Ownership and fingerprints (pure functions)
# ---------------------------------------------------------------------------------------------


def _check_writer(writer: int, num_writers: int) -> None:
    if num_writers < 1 or not 0 <= writer < num_writers:
        raise TgdferError(
            f"shard id {writer} of {num_writers} shards: need num_shards >= 1 and "
            "0 <= shard_id < num_shards"
        )


def owned_rows(n: int, shard_id: int, num_shards: int, block_size: int = 64) -> np.ndarray:
    """Rows (ascending int64) that writer ``shard_id`` of ``num_shards`` owns in a store of ``n`` clips.

    Block ``b`` (rows ``b * block_size`` .. ``(b + 1) * block_size - 1``) belongs to writer
    ``b % num_shards``; the writers' rows are disjoint and together cover ``0..n-1``.
    """
    _check_writer(shard_id, num_shards)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    rows = np.arange(n, dtype=np.int64)
    return rows[(rows // block_size) % num_shards == shard_id]


def _json_normalise(value: Any, what: str) -> Any:
    """``value`` as it reads back from JSON (tuples become lists); a clear error if it cannot."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TgdferError(f"{what} must be JSON-serialisable (str, numbers, bools, lists, dicts): {e}") from e


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def diff_fingerprint(stored: dict, wanted: dict, ignore: Sequence[str] = ()) -> list[str]:
    """Human-readable differences between two fingerprints, one line per dotted key.

    ``ignore`` lists dotted keys (or prefixes of them) to skip, e.g. ``("tgdfer_version",)``.
    An empty list means they match.
    """
    a = _flatten(_json_normalise(stored, "stored fingerprint"))
    b = _flatten(_json_normalise(wanted, "requested fingerprint"))
    lines = []
    for key in sorted(set(a) | set(b)):
        if any(key == p or key.startswith(p + ".") for p in ignore):
            continue
        if key not in a:
            lines.append(f"{key}: not in the store, requested {b[key]!r}")
        elif key not in b:
            lines.append(f"{key}: stored {a[key]!r}, not requested")
        elif not _same(a[key], b[key]):
            lines.append(f"{key}: stored {a[key]!r}, requested {b[key]!r}")
    return lines


def hdf5_staging_path(h5_path: str | Path) -> Path:
    """The Zarr store an HDF5 extraction writes (and resumes) before ``export_hdf5``: ``<h5>.staging.zarr``."""
    h5_path = Path(h5_path)
    return h5_path.with_name(h5_path.name + ".staging.zarr")


# ---------------------------------------------------------------------------------------------
# Integrity (pure functions)
# ---------------------------------------------------------------------------------------------

CHECKSUM = "sha256-64(row, clip_id, feats, frame_index)"  # recorded in the checksum array's attributes
NO_CHECKSUMS = "written by an older tgdfer, no checksums; integrity cannot be verified"


def clip_checksums(rows: np.ndarray, clip_ids: Sequence[str], feats: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
    """``[n]`` uint64 checksums of clips as stored: the first 8 bytes of the sha256 of each row's index,
    clip id, feats ``[n, V, T, D]`` float16 bytes and frame_index ``[n, V, T]`` int32 bytes (little-endian).

    The row and id are hashed with the data, so a chunk swapped for another clip's does not match.
    sha256 rather than blake2b: OpenSSL's runs on the CPU's SHA instructions, faster than blake2b
    where they exist (benchmarks/checksum.py measures both).
    """
    feats = np.ascontiguousarray(feats, dtype="<f2")
    frame_index = np.ascontiguousarray(frame_index, dtype="<i4")
    out = np.empty(len(rows), dtype=np.uint64)
    for i, (row, clip_id) in enumerate(zip(rows, clip_ids)):
        h = hashlib.sha256(int(row).to_bytes(8, "little") + str(clip_id).encode("utf-8") + b"\0")
        h.update(feats[i].data)
        h.update(frame_index[i].data)
        out[i] = np.uint64(int.from_bytes(h.digest()[:8], "little"))
    return out


def finite_rows(feats: np.ndarray) -> np.ndarray:
    """``[n]`` bool: clips of float16 ``feats [n, ...]`` free of NaN and inf (all-ones exponent bits;
    numpy's float16 isfinite is 2-3x slower)."""
    bits = np.ascontiguousarray(feats, dtype=np.float16).view(np.uint16).reshape(len(feats), -1)
    return ((bits & 0x7C00) != 0x7C00).all(axis=1)


@dataclass(frozen=True)
class Damage:
    """One damaged clip of a store: its row, id and what is wrong."""

    row: int
    clip_id: str
    problem: str
    repairable: bool = True  # re-extracting the clip rewrites it (False: the encoder made these values)

    def __str__(self) -> str:
        return f"clip {self.clip_id!r} (row {self.row}): {self.problem}"


class StoreDamaged(TgdferError):
    """A store's data does not match its checksums, cannot be decoded, or is not finite."""

    def __init__(self, path: str | Path, damage: Sequence[Damage], shown: int = 3):
        self.path, self.damage = str(path), list(damage)
        listed = "; ".join(str(d) for d in self.damage[:shown])
        more = f"; and {len(self.damage) - shown} more" if len(self.damage) > shown else ""
        fix = ("re-run `tgdfer extract` with the store's pipeline: it re-extracts damaged clips"
               if any(d.repairable for d in self.damage) else
               "the encoder wrote these values: re-extract into a new store (`tgdfer extract --overwrite`, "
               "which records such clips as failures), e.g. with encoder.precision = \"fp32\"")
        super().__init__(f"{path}: {len(self.damage)} damaged clip(s): {listed}{more}; {fix} "
                         f"(`tgdfer info --verify {path}` lists them all)")


def _damage(rows: np.ndarray, clip_ids: np.ndarray, feats: np.ndarray, frame_index: np.ndarray,
            checksums: np.ndarray | None) -> list[Damage]:
    """Damaged clips among ``rows`` (all done) given what was read: feats [n, V, T, D], frame_index [n, V, T]."""
    if not len(rows):
        return []
    out = []
    ids = clip_ids[rows]
    got = None if checksums is None else clip_checksums(rows, ids, feats, frame_index)
    finite = finite_rows(feats)
    for i, row in enumerate(rows.tolist()):
        if got is not None and checksums[i] == 0:
            out.append(Damage(row, str(ids[i]), "done but its checksum is missing"))
        elif got is not None and got[i] != checksums[i]:
            empty = np.isnan(feats[i]).all() or (frame_index[i] == -1).all()
            why = ("its chunk is missing (reads as the fill value)" if empty else
                   "data does not match its checksum (changed bytes or another clip's chunk)")
            out.append(Damage(row, str(ids[i]), why))
        elif not finite[i]:
            out.append(Damage(row, str(ids[i]), "features are not finite (NaN or inf) though stored intact",
                              repairable=False))
    return out


# ---------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------


def _tmp_name(label: str) -> str:
    """``<label>~<pid>@<host>~<random>``: the owner is in the name so stale files can be found."""
    return f"{label}~{os.getpid()}@{socket.gethostname()}~{uuid.uuid4().hex}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(name: str) -> bool:
    """True for a temporary name made by a process of this host that no longer runs."""
    parts = name.split("~")
    if len(parts) < 3 or "@" not in parts[-2]:
        return False
    pid, _, host = parts[-2].partition("@")
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def _remove_stale(folder: Path, prefix: str = "") -> None:
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(prefix) and _is_stale(entry.name):
            logger.info("removing %s, left by a process that died", entry)
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: Any, tmp_dir: Path, fsync: bool, label: str = "file") -> None:
    """Write ``data`` (bytes-like) to ``path`` whole or not at all: temp file in ``tmp_dir``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / _tmp_name(label.replace("/", "."))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


class _AtomicLocalStore(LocalStore):
    """zarr LocalStore whose every write goes through ``_write_atomic`` (temp file + rename)."""

    def __init__(self, root: Path | str, *, read_only: bool = False, fsync: bool = False):
        super().__init__(root, read_only=read_only)
        self.fsync = fsync

    def with_read_only(self, read_only: bool = False) -> _AtomicLocalStore:
        return type(self)(self.root, read_only=read_only, fsync=self.fsync)

    def _put(self, key: str, value: Buffer) -> None:
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(f"value must be a zarr Buffer, got {type(value)}")
        _write_atomic(self.root / key, value.as_buffer_like(), self.root / _TMP_DIR, self.fsync, key)

    async def set(self, key: str, value: Buffer) -> None:
        if not self._is_open:
            await self._open()
        await asyncio.to_thread(self._put, key, value)

    def set_sync(self, key: str, value: Buffer) -> None:
        self._ensure_open_sync()
        self._put(key, value)


def _publish_dir(tmp: Path, dest: Path, old_parking: Path | None = None, fsync: bool = False) -> bool:
    """Rename directory ``tmp`` to ``dest``. If ``dest`` exists: replace it when ``old_parking`` is given
    (swap via that path), else discard ``tmp`` and return False."""
    try:
        os.rename(tmp, dest)
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        if old_parking is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        os.rename(dest, old_parking)
        os.rename(tmp, dest)
        shutil.rmtree(old_parking, ignore_errors=True)
    if fsync:
        _fsync_dir(dest.parent)
    return True


# ---------------------------------------------------------------------------------------------
# Writer leases (flock): one live process per writer id, all agreeing on num_writers
# ---------------------------------------------------------------------------------------------


def _read_lease(path: Path) -> dict | None:
    for _ in range(50):  # the holder writes its record just after locking
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.01)
    return None


def _live_lease(path: Path) -> dict | None:
    """The record of the live process holding ``path``'s lock, or None if nobody holds it."""
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_lease(path) or {}
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None


def _acquire_lease(lock_dir: Path, writer: int, num_writers: int):
    """Lock ``writer_<k>.lock`` for this process; the open file is the lease (closing releases it)."""
    lock_dir.mkdir(exist_ok=True)
    path = lock_dir / f"writer_{writer}.lock"
    f = open(path, "a+")
    for attempt in range(10):  # another process may be probing the lock for an instant
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 9:
                f.close()
                who = _read_lease(path) or {}
                raise TgdferError(
                    f"{path}: writer {writer} is already running (pid {who.get('pid')} on "
                    f"{who.get('host')}); give each process its own shard id"
                ) from None
            time.sleep(0.01)
        except OSError as e:  # file system without flock: no guard, ownership rules still apply
            logger.warning("%s: cannot lock (%s); concurrent writers are not checked", path, e)
            return f
    f.truncate(0)
    f.write(json.dumps({"num_writers": num_writers, "pid": os.getpid(), "host": socket.gethostname()}))
    f.flush()
    for other in sorted(lock_dir.glob("writer_*.lock")):
        record = None if other == path else _live_lease(other)
        if record and record.get("num_writers", num_writers) != num_writers:
            f.close()
            raise TgdferError(
                f"{other}: a live writer uses {record['num_writers']} shards, this one "
                f"{num_writers}; all concurrent writers must use the same number of shards"
            )
    return f


# ---------------------------------------------------------------------------------------------
# Clip table <-> CSV
# ---------------------------------------------------------------------------------------------


def _column_meta(name: str, dtype: Any) -> dict:
    meta = {"name": name, "dtype": str(dtype)}
    if isinstance(dtype, pd.CategoricalDtype):
        meta.update(categories=dtype.categories.tolist(), categories_dtype=str(dtype.categories.dtype),
                    ordered=bool(dtype.ordered))
    return meta


def _decode_clips(text: str, columns: list[dict]) -> pd.DataFrame:
    """Parse ``clips.csv`` back into the DataFrame it was written from (same dtypes, RangeIndex)."""
    read_as = {}
    for m in columns:
        if m["dtype"] == "category":
            read_as[m["name"]] = m["categories_dtype"]
        elif m["dtype"].startswith(("datetime", "timedelta")):
            read_as[m["name"]] = "str"
        else:
            read_as[m["name"]] = m["dtype"]
    df = pd.read_csv(io.StringIO(text), dtype=read_as, keep_default_na=False, na_values=[_NA_TOKEN])
    for m in columns:
        if m["dtype"] == "category":
            cats = pd.Index(m["categories"], dtype=m["categories_dtype"])
            df[m["name"]] = df[m["name"]].astype(pd.CategoricalDtype(cats, ordered=m["ordered"]))
        elif read_as[m["name"]] != m["dtype"]:
            df[m["name"]] = df[m["name"]].astype(m["dtype"])
    return df


# What a clip *is*: where its files live (path) and how many frames the reader counted (n_frames)
# may change when a dataset is moved or a broken video repaired, without changing any feature.
_CLIP_IDENTITY = ("clip_id", "label", "fold", "split")


def _clip_identity_diff(stored: pd.DataFrame, wanted: pd.DataFrame) -> list[str]:
    """Differences in clip ids, labels, folds and splits between two clip tables (first few named)."""
    if len(stored) != len(wanted):
        return [f"clip table: stored {len(stored)} clips, requested {len(wanted)}"]
    problems = []
    for col in _CLIP_IDENTITY:
        if (col in stored) != (col in wanted):
            problems.append(f"clip table: column {col!r} is in only one of the stored and requested tables")
            continue
        if col not in stored:
            continue
        a, b = stored[col].astype("string"), wanted[col].astype("string")
        differ = (a.fillna("<NA>") != b.fillna("<NA>")).to_numpy()
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            problems.append(f"clip table: {col} of row {i} (clip {wanted['clip_id'].iat[i]!r}): stored "
                            f"{a.iat[i]!r}, requested {b.iat[i]!r} ({int(differ.sum())} rows differ)")
    return problems


def _encode_clips(clips: pd.DataFrame) -> tuple[str, list[dict]]:
    """The clip table as CSV text plus its column dtypes; refuses tables that would not read back equal."""
    if not isinstance(clips, pd.DataFrame):
        raise TypeError(f"clips must be a pandas DataFrame, got {type(clips).__name__}")
    names = list(clips.columns)
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise TgdferError(f"clip table: column names must be unique strings, got {names}")
    if "clip_id" not in names or len(clips) == 0:
        raise TgdferError("clip table: need at least one row and a 'clip_id' column")
    if not clips["clip_id"].is_unique:
        dup = clips["clip_id"][clips["clip_id"].duplicated()].iloc[0]
        raise TgdferError(f"clip table: clip_id {dup!r} appears more than once; clip ids must be unique")
    df = clips.reset_index(drop=True)
    columns = [_column_meta(n, df[n].dtype) for n in names]
    text = df.to_csv(index=False, na_rep=_NA_TOKEN, lineterminator="\n")
    back = _decode_clips(text, columns)
    for n in names:
        try:
            pd.testing.assert_series_equal(df[n], back[n], check_exact=True)
        except AssertionError as e:
            raise TgdferError(
                f"clip table: column {n!r} (dtype {df[n].dtype}) does not survive the CSV round "
                f"trip; convert it to a str, numeric, bool or category column ({e})"
            ) from None
    return text, columns


# ---------------------------------------------------------------------------------------------
# Backends (reading); writing happens only on Zarr, in FeatureStore
# ---------------------------------------------------------------------------------------------


def _read_rows(array: Any, rows: np.ndarray | None, views: Any) -> np.ndarray:
    """``array[rows][:, views]`` for a zarr Array or an h5py Dataset; ``rows`` sorted unique or None."""
    if isinstance(array, zarr.Array):
        if rows is not None and len(rows) and rows[-1] - rows[0] + 1 == len(rows):
            rows = slice(int(rows[0]), int(rows[-1]) + 1)  # a run of rows: zarr reads a slice faster
        sel = (slice(None) if rows is None else rows,) + (() if views is None else (views,))
        return array.get_orthogonal_selection(sel)
    data = array[:] if rows is None else array[rows]  # h5py: one increasing index list per read
    return data if views is None else data[:, views]


class _ZarrFiles:
    backend = "zarr"

    def __init__(self, root: Path, writable: bool, fsync: bool):
        self.root = root
        self.zstore = _AtomicLocalStore(root, read_only=not writable, fsync=fsync)
        self.group = zarr.open_group(store=self.zstore, mode="r+" if writable else "r")
        self._arrays: dict[str, zarr.Array] = {}

    def attrs(self) -> dict:
        return self.group.attrs.asdict()

    def array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            self._arrays[name] = self.group[name]
        return self._arrays[name]

    def has(self, name: str) -> bool:
        return name in self._arrays or (self.root / name / "zarr.json").is_file()

    def clips_csv(self) -> str:
        return (self.root / _CLIPS_FILE).read_text(encoding="utf-8")

    def failure_records(self) -> list[dict]:
        records = []
        for path in sorted((self.root / _FAILURE_DIR).glob("writer_*.json")):
            content = load_json(path.read_bytes(), str(path))
            try:
                records += [dict(r, writer=content["writer"]) for r in content["failures"]]
            except (TypeError, KeyError, ValueError) as e:
                raise TgdferError(f"{path}: not a failure table (expected writer and failures: [...]): {e!r}") from None
        return records

    def unplaced_records(self) -> list[dict]:
        path = self.root / _FAILURE_DIR / _UNPLACED_FILE
        return _unplaced(load_json(path.read_bytes(), str(path)), path) if path.is_file() else []

    def text_names(self) -> list[str]:
        return sorted(p.name for p in (self.root / "text").iterdir() if (p / "zarr.json").is_file())

    def read_text(self, name: str, dim: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        g = zarr.open_group(store=self.zstore, path=f"text/{name}", mode="r")
        prompts, tokens, emb = g.attrs["prompts"], g["tokens"], g["emb"]
        _check_text_shapes(self.root / "text" / name, prompts, tokens.shape, emb.shape, dim)
        return list(prompts), tokens[:], emb[:]

    def size(self) -> int:
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(self.root) for f in files)

    def close(self) -> None:
        pass


class _H5Files:
    backend = "hdf5"

    def __init__(self, path: Path):
        self.path = path
        self.file = h5py.File(path, "r")

    def attrs(self) -> dict:
        return {k: load_json(self.file.attrs[k], f"{self.path}: attribute {k}") for k in ("tgdfer_store", "fingerprint")
                if k in self.file.attrs}

    def array(self, name: str) -> h5py.Dataset:
        return self.file[name]

    def has(self, name: str) -> bool:
        return name in self.file

    def clips_csv(self) -> str:
        return self.file["clips_csv"].asstr()[()]

    def failure_records(self) -> list[dict]:
        return load_json(self.file["failures_json"].asstr()[()], f"{self.path}: failures_json")

    def unplaced_records(self) -> list[dict]:
        if "unplaced_json" not in self.file:
            return []
        return _unplaced(load_json(self.file["unplaced_json"].asstr()[()], f"{self.path}: unplaced_json"), self.path)

    def text_names(self) -> list[str]:
        return sorted(self.file["text"].keys())

    def read_text(self, name: str, dim: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        g = self.file["text"][name]
        prompts = [str(p) for p in g["prompts"].asstr()[:]]
        _check_text_shapes(f"{self.path}: text/{name}", prompts, g["tokens"].shape, g["emb"].shape, dim)
        return prompts, g["tokens"][:], g["emb"][:]

    def size(self) -> int:
        return os.path.getsize(self.path)

    def close(self) -> None:
        self.file.close()


# Codecs a tgdfer store may name (what zarr writes for it, and the usual compressors). A codec is code
# chosen by the file: one outside this list (numcodecs.pickle unpickles every chunk) is refused before
# zarr reads anything.
SAFE_CODECS = frozenset({"bytes", "zstd", "blosc", "gzip", "crc32c", "transpose", "sharding_indexed",
                         "vlen-utf8", "vlen-bytes"})
_NOT_NODES = (_TMP_DIR, _LOCK_DIR, _FAILURE_DIR)  # the store's own folders beside the zarr nodes
_V2_METADATA = (".zarray", ".zgroup", ".zattrs", ".zmetadata")


def _codec_names(meta: Any) -> list[str]:
    """Every codec name in a zarr metadata document (v3 `codecs` / `index_codecs`, nested ones included)."""
    names, stack = [], [meta]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in ("codecs", "index_codecs") and isinstance(value, list):
                    names += [c.get("name") if isinstance(c, dict) else c for c in value]
                stack.append(value)
    return names


def _check_metadata(root: Path) -> None:
    """TgdferError for zarr metadata tgdfer would not write: too large or deep (limits), a codec outside
    SAFE_CODECS, or zarr v2 files (whose filters name codecs too). Reads the metadata as data only."""
    folders = [root]
    while folders:  # the root group, then every node under a group (an array's chunk folders are not nodes)
        folder = folders.pop()
        v2 = [n for n in _V2_METADATA if (folder / n).exists()]
        if v2:
            raise TgdferError(f"{folder / v2[0]}: zarr v2 metadata in a tgdfer store (which writes zarr v3 only); "
                              "refused: its filters can name any codec")
        meta_path = folder / "zarr.json"
        if not meta_path.is_file():
            continue
        try:
            raw = meta_path.read_bytes()
        except OSError as e:
            raise TgdferError(f"{meta_path}: cannot read ({e.strerror})") from e
        try:
            meta = load_json(raw, str(meta_path))
        except LimitError:
            raise
        except TgdferError as e:
            raise TgdferError(f"{root}: cannot be read as a tgdfer feature store ({e})") from None
        bad = [n for n in _codec_names(meta) if n not in SAFE_CODECS]
        if bad:
            raise TgdferError(f"{meta_path}: names the codec {bad[0]!r}, which tgdfer does not read (it reads "
                              f"{', '.join(sorted(SAFE_CODECS))}): refused, a codec can run code")
        if isinstance(meta, dict) and meta.get("node_type") == "group":
            folders += [d for d in folder.iterdir() if d.is_dir() and d.name not in _NOT_NODES]


MAX_TOKENS = 2**16  # tokens per prompt a text set may declare (open_clip's context lengths: 64 to 256)


def _check_text_shapes(where: Any, prompts: Any, tokens: tuple, emb: tuple, dim: int) -> None:
    """TgdferError unless a text set's declared shapes are [P, L] and [P, dim] for its P prompts: the shapes
    size what reading it allocates."""
    p = len(prompts) if isinstance(prompts, list) else -1
    if len(tokens) != 2 or tuple(emb) != (p, dim) or tokens[0] != p or not 0 < tokens[1] <= MAX_TOKENS:
        raise TgdferError(f"{where}: a text set of {p} prompts with tokens {tuple(tokens)} and embeddings "
                          f"{tuple(emb)}; expected [{p}, L <= {MAX_TOKENS}] and [{p}, {dim}]: a damaged store")


def _unplaced(records: Any, where: Path) -> list[dict]:
    """The unplaced-clip records of a store, checked to be {clip_id, reason} strings."""
    if not isinstance(records, list) or not all(
            isinstance(r, dict) and isinstance(r.get("clip_id"), str) and isinstance(r.get("reason"), str)
            for r in records):
        raise TgdferError(f"{where}: not a list of {{clip_id, reason}} records: a damaged failure table")
    return [{"clip_id": r["clip_id"], "reason": r["reason"]} for r in records]


def _open_files(path: Path, mode: str, fsync: bool) -> _ZarrFiles | _H5Files:
    """Detect the backend by content: a directory with zarr.json, or an HDF5 file."""
    if path.is_dir() and (path / "zarr.json").is_file():
        _check_metadata(path)
        return _ZarrFiles(path, writable=mode == "r+", fsync=fsync)
    if path.is_file() and h5py.is_hdf5(path):
        if mode != "r":
            raise TgdferError(
                f"{path}: an HDF5 store is a read-only export; resume or change the Zarr store "
                f"it was exported from (normally {hdf5_staging_path(path)}) and export again"
            )
        return _H5Files(path)
    hint = ""
    if not path.exists() and hdf5_staging_path(path).is_dir():
        hint = f"; an unfinished extraction is staged in {hdf5_staging_path(path)}: re-run it to finish"
    what = "does not exist" if not path.exists() else "is not a tgdfer feature store"
    raise TgdferError(f"{path} {what} (expected a Zarr directory with zarr.json or an HDF5 file){hint}")


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


def _layout(n: int, views: int, frames: int, dim: int, block_size: int, zarr_shards: bool,
            clip_columns: list[dict]) -> dict:
    for name, value in (("views", views), ("frames", frames), ("dim", dim), ("block_size", block_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return {"schema_version": SCHEMA_VERSION, "n_clips": int(n), "views": int(views),
            "frames": int(frames), "dim": int(dim), "block_size": int(block_size),
            "zarr_shards": bool(zarr_shards), "clip_columns": clip_columns}


def _check_layout(path: Path, layout: dict, files: _ZarrFiles | _H5Files) -> None:
    """TgdferError unless the layout's sizes are positive ints within the limits that agree with the arrays'
    real shapes, and its clip_columns are readable dtypes: numbers read from the file size allocations."""
    sizes = {k: layout.get(k) for k in ("n_clips", "views", "frames", "dim", "block_size")}
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TgdferError(f"{path}: the store's {name} is {value!r:.60}, not a positive integer")
    check_frame_count(f"{path}: the store's frames", sizes["frames"])
    try:
        shape = tuple(files.array("feats").shape)
    except (KeyError, OSError, ValueError) as e:
        raise TgdferError(f"{path}: cannot read the feats array's shape ({e})") from e
    wanted = tuple(sizes[k] for k in ("n_clips", "views", "frames", "dim"))
    if shape != wanted:
        raise TgdferError(f"{path}: the store's attributes say {wanted} (clips, views, frames, dim) but its "
                          f"feats array is {shape}: a damaged or altered store")
    n, v, t = wanted[:3]
    for name, expect in (("frame_index", (n, v, t)), ("boxes", (n, v, t, 4)), ("done", (n,))):
        if files.has(name) and tuple(files.array(name).shape) != expect:
            raise TgdferError(f"{path}: its {name} array is {tuple(files.array(name).shape)}, the store's "
                              f"attributes say {expect}: a damaged or altered store")
    columns = layout.get("clip_columns")
    if not isinstance(columns, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                                and isinstance(c.get("dtype"), str) for c in columns):
        raise TgdferError(f"{path}: the store's clip_columns is not a list of {{name, dtype}} records")
    for c in columns:
        try:
            pd.api.types.pandas_dtype(c["dtype"])
            if c["dtype"] == "category":
                pd.api.types.pandas_dtype(c.get("categories_dtype"))
                if not isinstance(c.get("categories"), list):
                    raise TypeError("categories is not a list")
        except (TypeError, ValueError) as e:
            raise TgdferError(f"{path}: clip column {c['name']!r} has the dtype {c['dtype']!r}, which pandas "
                              f"cannot read ({e})") from None


def _build_skeleton(root: Path, layout: dict, fingerprint: dict, clips_csv: str, fsync: bool) -> None:
    """Write an empty store (metadata, clip table, no chunks) into the fresh directory ``root``."""
    n, v, t, d, b = (layout[k] for k in ("n_clips", "views", "frames", "dim", "block_size"))
    for sub in (_TMP_DIR, _LOCK_DIR, _FAILURE_DIR):
        (root / sub).mkdir(parents=True)
    attributes = {"tgdfer_store": layout, "fingerprint": fingerprint}
    g = zarr.create_group(store=_AtomicLocalStore(root, fsync=fsync), attributes=attributes)
    shards = (b, v, t, d) if layout["zarr_shards"] else None
    g.create_array("feats", shape=(n, v, t, d), chunks=(1, v, t, d), shards=shards, dtype="float16", fill_value=np.nan)
    g.create_array("frame_index", shape=(n, v, t), chunks=(b, v, t), dtype="int32", fill_value=-1)
    g.create_array("boxes", shape=(n, v, t, 4), chunks=(b, v, t, 4), dtype="float32", fill_value=np.nan)
    g.create_array("face_source", shape=(n, v, t), chunks=(b, v, t), dtype="int8", fill_value=-1)
    g.create_array("checksum", shape=(n,), chunks=(b,), dtype="uint64", fill_value=0,
                   attributes={"algorithm": CHECKSUM})
    g.create_array("done", shape=(n,), chunks=(b,), dtype="bool", fill_value=False)
    g.create_group("text")
    _write_atomic(root / _CLIPS_FILE, clips_csv.encode("utf-8"), root / _TMP_DIR, fsync)


_DECODE_ERRORS = (RuntimeError, ValueError, OSError, EOFError)  # codecs (zstd, blosc) and h5py on damaged bytes


def _settle_zarr() -> None:
    """Wait for the chunk reads a failed zarr read left running, so none is cut off at exit (asyncio noise)."""
    from zarr.core.sync import sync

    async def drain() -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)

    try:
        sync(drain(), timeout=10)
    except Exception:  # only tidiness is at stake here
        pass


def _digest(*parts: bytes) -> str:
    """Hex sha256 of ``parts``, each prefixed by its length (so that no two splits of the bytes collide)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs of sorted unique ``rows`` as (row start, row stop, position in rows)."""
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(rows)]])
    return [(int(rows[a]), int(rows[b - 1]) + 1, int(a)) for a, b in zip(starts, stops)]


class FeatureStore:
    """Features, frame indices, text embeddings and the clip table of one extraction.

    Make one with ``create`` (Zarr; idempotent, so every writer process may call it) or open one
    with ``open`` (Zarr directory or HDF5 export). Use as a context manager or call ``close``.
    """

    def __init__(self, path: Path, files: _ZarrFiles | _H5Files, mode: str):
        self.path = path
        self.mode = mode
        self._files = files
        attrs = files.attrs()
        layout = attrs.get("tgdfer_store")
        if not isinstance(layout, dict) or "fingerprint" not in attrs:
            files.close()
            raise TgdferError(f"{path} is not a tgdfer feature store (no 'tgdfer_store' attribute)")
        if layout.get("schema_version") != SCHEMA_VERSION:
            files.close()
            raise TgdferError(
                f"{path}: store schema version {layout.get('schema_version')}, this tgdfer reads "
                f"version {SCHEMA_VERSION}; re-run `tgdfer extract` into a new store"
            )
        try:
            check_depth(str(path), attrs)
            _check_layout(path, layout, files)
        except TgdferError:
            files.close()
            raise
        self._layout = layout
        self.fingerprint: dict = attrs["fingerprint"]
        self._clips: pd.DataFrame | None = None
        self._clip_ids: np.ndarray | None = None
        self._warned_no_checksums = False
        try:
            rows = len(self.clips)
        except TgdferError:
            files.close()
            raise
        if rows != layout["n_clips"]:  # n_clips sizes every read: bound it to the rows on disk
            files.close()
            raise TgdferError(f"{path}: its clip table has {len(self._clips)} rows, its attributes say "
                              f"{layout['n_clips']} clips: a damaged or altered store")
        self._leases: dict[int, tuple[int, Any]] = {}

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, *, clips: pd.DataFrame, views: int, frames: int, dim: int,
               fingerprint: dict, block_size: int = 64, zarr_shards: bool = False,
               fsync: bool = False) -> FeatureStore:
        """Create the Zarr store at ``path`` and open it for writing, or open the one already there.

        Safe to call from many processes at once. An existing store must match the request
        (shape, block layout, fingerprint, clip table) or a TgdferError lists what differs.
        ``zarr_shards`` packs each block of ``block_size`` clips into one shard file.
        ``fsync`` flushes every write to the device (survives power loss, slower).
        """
        path = Path(path)
        if path.suffix.lower() in _HDF5_SUFFIXES:
            raise TgdferError(f"{path}: extraction writes Zarr; create {hdf5_staging_path(path)} and call "
                              "export_hdf5() on it when extraction is complete")
        clips_csv, columns = _encode_clips(clips)
        layout = _layout(len(clips), views, frames, dim, block_size, zarr_shards, columns)
        fingerprint = _json_normalise(fingerprint, "fingerprint")
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            path.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale(path.parent, prefix=f".{path.name}~")
            tmp = path.parent / _tmp_name(f".{path.name}")
            try:
                _build_skeleton(tmp, layout, fingerprint, clips_csv, fsync)
                if _publish_dir(tmp, path, fsync=fsync):
                    logger.info("created feature store %s (%d clips)", path, len(clips))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        store = cls.open(path, mode="r+", fsync=fsync)
        store._check_matches(layout, fingerprint, clips_csv)
        return store

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", *, fsync: bool = False) -> FeatureStore:
        """Open a store: a Zarr directory (``mode`` "r" or "r+") or an HDF5 export ("r" only)."""
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
        path = Path(path)
        try:
            store = cls(path, _open_files(path, mode, fsync), mode)
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            raise TgdferError(f"{path}: cannot be read as a tgdfer feature store ({str(e)[:300]})") from e
        if mode == "r+":
            _remove_stale(path / _TMP_DIR)
        return store

    def _check_matches(self, layout: dict, fingerprint: dict, clips_csv: str) -> None:
        problems = [f"{k}: stored {self._layout.get(k)!r}, requested {v!r}"
                    for k, v in layout.items() if k != "clip_columns" and self._layout.get(k) != v]
        problems += [f"fingerprint.{line}" for line in diff_fingerprint(self.fingerprint, fingerprint)]
        problems += _clip_identity_diff(self.clips, _decode_clips(clips_csv, layout["clip_columns"]))
        if problems:
            self.close()
            raise TgdferError(
                f"{self.path}: a different feature store already exists here:\n  - "
                + "\n  - ".join(problems)
                + "\nDelete it to start over, or pass the settings it was made with to resume it."
            )

    def close(self) -> None:
        """Release writer locks and file handles."""
        for _, lease in self._leases.values():
            lease.close()
        self._leases.clear()
        self._files.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}, backend={self.backend!r}, clips={self.n_clips}, "
                f"views={self.views}, frames={self.frames}, dim={self.dim})")

    # -- layout -----------------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """"zarr" or "hdf5"."""
        return self._files.backend

    @property
    def n_clips(self) -> int:
        return self._layout["n_clips"]

    @property
    def views(self) -> int:
        return self._layout["views"]

    @property
    def frames(self) -> int:
        return self._layout["frames"]

    @property
    def dim(self) -> int:
        return self._layout["dim"]

    @property
    def block_size(self) -> int:
        return self._layout["block_size"]

    @property
    def clips(self) -> pd.DataFrame:
        """The clip table as given to ``create`` (same columns and dtypes; index = row 0..N-1)."""
        if self._clips is None:
            try:
                self._clips = _decode_clips(self._files.clips_csv(), self._layout["clip_columns"])
            except (ValueError, TypeError, KeyError) as e:  # a damaged clips.csv: pandas' parse errors
                raise TgdferError(f"{self.path}: its clip table cannot be read ({str(e)[:200]})") from None
        return self._clips.copy()

    # -- reading ----------------------------------------------------------------------------------

    def _rows(self, rows: Any) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.ndim != 1 or not (rows.size == 0 or np.issubdtype(rows.dtype, np.integer)):
            raise ValueError(f"rows must be a 1-D array of ints, got shape {rows.shape} dtype {rows.dtype}")
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_clips):
            raise ValueError(f"rows must lie in 0..{self.n_clips - 1}, got {rows.min()}..{rows.max()}")
        return rows

    def _read(self, name: str, rows: Any, views: Any) -> np.ndarray:
        """``name``[rows][:, views]; a chunk that cannot be decoded is a StoreDamaged naming its clip."""
        array = self._files.array(name)
        rows = None if rows is None else self._rows(rows)
        try:
            if rows is None:
                return _read_rows(array, None, views)
            unique, inverse = np.unique(rows, return_inverse=True)
            if not len(rows):  # h5py refuses empty selections
                return _read_rows(array, np.arange(min(1, self.n_clips)), views)[:0]
            return _read_rows(array, unique, views)[inverse]
        except _DECODE_ERRORS as e:
            if self.backend == "zarr":
                _settle_zarr()
            damage = self._undecodable(np.arange(self.n_clips) if rows is None else np.unique(rows))
            if damage:
                raise StoreDamaged(self.path, damage) from None
            raise TgdferError(f"{self.path}: {name} cannot be read ({e})") from None

    @property
    def clip_ids(self) -> np.ndarray:
        """``[N]`` clip ids as str (object array), row order."""
        if self._clip_ids is None:
            self._clip_ids = np.array([str(c) for c in self.clips["clip_id"]], dtype=object)
        return self._clip_ids

    # -- integrity ----------------------------------------------------------------------------------

    @property
    def has_checksums(self) -> bool:
        """False for stores written before tgdfer stored per-clip checksums."""
        return self._files.has("checksum")

    def read_checksums(self) -> np.ndarray | None:
        """``[N]`` uint64 per-clip checksums (0 = not written), or None (with one warning) for an older store."""
        if not self.has_checksums:
            if not self._warned_no_checksums:
                logger.warning("%s: %s", self.path, NO_CHECKSUMS)
                self._warned_no_checksums = True
            return None
        return self._read_whole("checksum").astype(np.uint64)

    def _read_whole(self, name: str) -> np.ndarray:
        """A small per-row array (done, checksum) whole; a chunk that cannot be decoded is one TgdferError."""
        try:
            return np.asarray(self._files.array(name)[:])
        except _DECODE_ERRORS as e:
            if self.backend == "zarr":
                _settle_zarr()
            raise TgdferError(f"{self.path}: its {name!r} array cannot be decoded ({e}); the store is damaged "
                              "beyond a clip: rebuild it with `tgdfer extract --overwrite`") from None

    def _undecodable(self, rows: np.ndarray) -> list[Damage]:
        """Rows among ``rows`` whose feats or frame_index chunk cannot be decoded (read one clip at a time)."""
        return self._read_clips(rows)[2]

    def _read_clips(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Damage]]:
        """feats [n, V, T, D] and frame_index [n, V, T] of sorted unique ``rows``, and the rows that cannot be
        decoded (they read as NaN / -1). One bulk read; clip by clip only when it fails."""
        feats_a, index_a = self._files.array("feats"), self._files.array("frame_index")
        try:
            return _read_rows(feats_a, rows, None), _read_rows(index_a, rows, None), []
        except _DECODE_ERRORS:
            if self.backend == "zarr":
                _settle_zarr()
        n, v, t, d = len(rows), self.views, self.frames, self.dim
        feats, index = np.full((n, v, t, d), np.nan, np.float16), np.full((n, v, t), -1, np.int32)
        damage = []
        for i, row in enumerate(rows.tolist()):
            for what, array, out in (("feats", feats_a, feats), ("frame_index", index_a, index)):
                try:
                    out[i] = array[row]
                except _DECODE_ERRORS as e:
                    if self.backend == "zarr":
                        _settle_zarr()
                    damage.append(Damage(row, str(self.clip_ids[row]), f"its {what} chunk cannot be decoded ({e})"))
                    break
        return feats, index, damage

    def _scan(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, list[Damage]]]:
        """(rows, feats, damage) for sorted done ``rows``, about 64 MB at a time: every clip checked
        against its checksum (when the store has them) and for non-finite values."""
        checksums = self.read_checksums()
        step = self.block_size * max(1, (64 << 20) // (self.block_size * self.views * self.frames * self.dim * 2))
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            feats, index, damage = self._read_clips(part)
            ok = slice(None) if not damage else ~np.isin(part, [dmg.row for dmg in damage])  # no copy when intact
            damage += _damage(part[ok], self.clip_ids, feats[ok], index[ok],
                              None if checksums is None else checksums[part[ok]])
            yield part, feats, sorted(damage, key=lambda dmg: dmg.row)

    def verify(self, rows: Any = None) -> list[Damage]:
        """Damaged clips among the done ``rows`` (default all): chunks that do not match their checksum
        (flipped bits, another clip's chunk, missing or truncated), cannot be decoded, or hold NaN / inf."""
        done = self.done
        rows = np.flatnonzero(done) if rows is None else np.unique(self._rows(rows))
        rows = rows[done[rows]]
        return [dmg for _, _, damage in self._scan(rows) for dmg in damage]

    def read_feats_verified(self) -> np.ndarray:
        """``read_feats()`` of the whole store, with every done clip checked as ``verify`` does;
        StoreDamaged names the damaged clips. Rows not done read as NaN."""
        out = np.full((self.n_clips, self.views, self.frames, self.dim), np.nan, np.float16)  # [N, V, T, D]
        damage: list[Damage] = []
        for part, feats, bad in self._scan(np.flatnonzero(self.done)):
            out[part] = feats
            damage += bad
        if damage:
            raise StoreDamaged(self.path, damage)
        return out

    def content_hash(self) -> dict[str, Any]:
        """Hashes of what training reads: ``clips`` (the done flags and checksums of done clips; None for a
        store without checksums), ``clip_table`` and each ``text`` set. Cheap: reads no features."""
        done = self.done
        checksums = self.read_checksums()
        clips = None if checksums is None else _digest(done.tobytes(), np.where(done, checksums, 0).astype("<u8").tobytes())
        text = {}
        for name in self.text_sets:
            prompts, tokens, emb = self.text(name)
            text[name] = _digest(json.dumps(prompts).encode("utf-8"), np.ascontiguousarray(tokens, "<i4").tobytes(),
                                np.ascontiguousarray(emb, "<f4").tobytes())
        return {"clips": clips, "clip_table": _digest(self._files.clips_csv().encode("utf-8")), "text": text}

    def read_feats(self, rows: Any = None, views: int | Sequence[int] | None = None) -> np.ndarray:
        """Features ``[n, V, T, D]`` float16 of ``rows`` (default all, in one bulk read), in the order given.

        ``views`` selects views (an int drops the view axis: ``[n, T, D]``). Rows never written
        read as NaN; use ``done`` to select finished clips.
        """
        return self._read("feats", rows, views)

    def read_frame_index(self, rows: Any = None) -> np.ndarray:
        """Source frame numbers ``[n, V, T]`` int32 each view used (-1 where never written)."""
        return self._read("frame_index", rows, None)

    def read_boxes(self, rows: Any = None) -> np.ndarray:
        """Face crop boxes ``[n, V, T, 4]`` float32 (x0, y0, x1, y1) each sampled frame was cropped to;
        NaN where the whole frame was used (no face stage), never written, or the store predates boxes."""
        if not self._files.has("boxes"):
            n = self.n_clips if rows is None else len(self._rows(rows))
            return np.full((n, self.views, self.frames, 4), np.nan, np.float32)
        return self._read("boxes", rows, None)

    def read_face_source(self, rows: Any = None) -> np.ndarray:
        """Where each sampled frame's face box came from ``[n, V, T]`` int8 (facetrack.FACE_SOURCES:
        0 detected, 1 interpolated, 2 carried over, 3 centre fallback); -1 without a face stage, never
        written, or in a store made before it was recorded."""
        if not self._files.has("face_source"):
            n = self.n_clips if rows is None else len(self._rows(rows))
            return np.full((n, self.views, self.frames), -1, np.int8)
        return self._read("face_source", rows, None)

    def face_fallbacks(self) -> pd.DataFrame:
        """Done clips whose crops are a fallback, not a face: row, clip_id, kind ("center": no face was
        found and ``faces.on_missing = "center"`` cropped the centre square)."""
        center = (self.read_face_source() == 3).any(axis=(1, 2)) & self.done  # facetrack.CENTER
        rows = np.flatnonzero(center)
        return pd.DataFrame({"row": rows.astype(np.int64), "clip_id": self.clips["clip_id"].astype(str).to_numpy()[rows],
                             "kind": "center"})

    @property
    def done(self) -> np.ndarray:
        """``[N]`` bool: clips whose features are written (read fresh: other writers update it)."""
        return self._read_whole("done").astype(bool)

    @property
    def failures(self) -> pd.DataFrame:
        """Clips that could not be extracted and are not done: row, clip_id, reason, writer."""
        raw = self._files.failure_records()
        for r in raw:
            row, writer = r.get("row"), r.get("writer")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (row, writer)) \
                    or not 0 <= row < self.n_clips:
                raise TgdferError(f"{self.path}: a failure record names row {row!r:.40} (writer {writer!r:.20}), not a "
                                  f"row of the store (0..{self.n_clips - 1}): a damaged failure table")
        records = pd.DataFrame(raw, columns=["row", "clip_id", "reason", "writer"])
        records = records.astype({"row": "int64", "clip_id": "str", "reason": "str", "writer": "int64"})
        records = records[~self.done[records["row"].to_numpy()]]
        records = records.drop_duplicates("row", keep="last").sort_values("row", kind="stable")
        return records.reset_index(drop=True)

    @property
    def unplaced(self) -> pd.DataFrame:
        """Annotation rows the reader skipped that have no row in the store (their label is no class, so the
        clip table cannot hold them): clip_id, reason. Not counted in `coverage`, which counts rows."""
        return pd.DataFrame(self._files.unplaced_records(), columns=["clip_id", "reason"], dtype="str")

    def coverage(self) -> dict[str, int]:
        """Counts for ``verify``: clips, done, failed, pending (neither done nor failed)."""
        done = int(self.done.sum())
        failed = len(self.failures)
        return {"clips": self.n_clips, "done": done, "failed": failed, "pending": self.n_clips - done - failed}

    def todo_rows(self, writer: int = 0, num_writers: int = 1, retry_failed: bool = False) -> np.ndarray:
        """Rows writer ``writer`` of ``num_writers`` still has to extract (ascending)."""
        rows = owned_rows(self.n_clips, writer, num_writers, self.block_size)
        skip = self.done
        if not retry_failed:
            skip[self.failures["row"].to_numpy()] = True
        return rows[~skip[rows]]

    @property
    def text_sets(self) -> list[str]:
        """Names of the stored prompt sets."""
        return self._files.text_names()

    def text(self, name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Prompt set ``name``: (prompts, tokens ``[P, L]`` int32, embeddings ``[P, D]`` float32)."""
        if name not in self.text_sets:
            raise TgdferError(f"{self.path}: no text set {name!r}; stored sets: {self.text_sets}")
        return self._files.read_text(name, self.dim)

    def size_on_disk(self) -> int:
        """Bytes the store takes on disk (all files of the Zarr directory, or the HDF5 file)."""
        return self._files.size()

    # -- writing (Zarr, mode "r+") ------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.backend != "zarr" or self.mode != "r+":
            raise TgdferError(f"{self.path}: opened read-only ({self.backend}); open the Zarr store with mode='r+'")

    def _owned(self, rows: Any, writer: int, num_writers: int) -> np.ndarray:
        """Validated rows of a write by ``writer``; refuses rows another writer owns; takes the lease."""
        self._check_writable()
        _check_writer(writer, num_writers)
        rows = self._rows(rows)
        if len(np.unique(rows)) != len(rows):
            raise ValueError("rows must not repeat within one write")
        owner = (rows // self.block_size) % num_writers
        if np.any(owner != writer):
            bad = int(rows[np.argmax(owner != writer)])
            raise TgdferError(
                f"{self.path}: writer {writer} of {num_writers} may not write row {bad}: its block "
                f"{bad // self.block_size} belongs to writer {(bad // self.block_size) % num_writers}; "
                "iterate store.todo_rows(writer, num_writers) or owned_rows(...)"
            )
        held = self._leases.get(writer)
        if held is None or held[0] != num_writers:
            if held is not None:
                held[1].close()
            self._leases[writer] = (num_writers, _acquire_lease(self.path / _LOCK_DIR, writer, num_writers))
        return rows

    @staticmethod
    def _set_rows(array: zarr.Array, rows: np.ndarray, values: Any) -> None:
        """``array[rows] = values`` for sorted unique rows (sharded arrays by contiguous runs: zarr #2834)."""
        if array.shards is None:
            array.oindex[rows] = values
            return
        for start, stop, at in _runs(rows):
            array[start:stop] = values[at:at + stop - start] if isinstance(values, np.ndarray) else values

    def write_clips(self, rows: Any, feats: np.ndarray, frame_index: np.ndarray,
                    writer: int = 0, num_writers: int = 1, boxes: np.ndarray | None = None,
                    face_source: np.ndarray | None = None) -> None:
        """Store finished clips, then mark them done.

        rows         # [n] clip rows, all owned by ``writer`` of ``num_writers``
        feats        # [n, V, T, D], cast to float16
        frame_index  # [n, V, T] integer source frame numbers
        boxes        # [n, V, T, 4] face crop boxes, or None (whole frames: stays NaN)
        face_source  # [n, V, T] where each face box came from (FACE_SOURCES codes), or None (stays -1)
        Returns after the data and each clip's checksum are on disk; ``done`` is set only then.
        Clears failures of these rows.
        """
        rows = self._owned(rows, writer, num_writers)
        n, v, t, d = len(rows), self.views, self.frames, self.dim
        if n == 0:
            return
        feats, frame_index = np.asarray(feats), np.asarray(frame_index)
        if feats.shape != (n, v, t, d) or frame_index.shape != (n, v, t):
            raise ValueError(f"expected feats {(n, v, t, d)} and frame_index {(n, v, t)}, "
                             f"got {feats.shape} and {frame_index.shape}")
        if not np.issubdtype(frame_index.dtype, np.integer):
            raise ValueError(f"frame_index must be integers, got {frame_index.dtype}")
        if boxes is not None:
            boxes = np.asarray(boxes, np.float32)
            if boxes.shape != (n, v, t, 4):
                raise ValueError(f"expected boxes {(n, v, t, 4)}, got {boxes.shape}")
            if np.isnan(boxes).all():
                boxes = None
            elif not self._files.has("boxes"):
                raise TgdferError(f"{self.path}: made before face crop boxes were stored; extract into a new store")
        if face_source is not None:
            face_source = np.asarray(face_source, np.int8)
            if face_source.shape != (n, v, t):
                raise ValueError(f"expected face_source {(n, v, t)}, got {face_source.shape}")
            if (face_source < 0).all():
                face_source = None
            elif not self._files.has("face_source"):
                raise TgdferError(f"{self.path}: made before face sources were stored; extract into a new store")
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        feats, frame_index = feats[order].astype(np.float16), frame_index[order].astype(np.int32)
        self._set_rows(self._files.array("feats"), rows, feats)
        self._set_rows(self._files.array("frame_index"), rows, frame_index)
        if boxes is not None:
            self._set_rows(self._files.array("boxes"), rows, boxes[order])
        if face_source is not None:
            self._set_rows(self._files.array("face_source"), rows, face_source[order])
        if self.has_checksums:  # a store made before checksums stays without them
            self._set_rows(self._files.array("checksum"), rows, clip_checksums(rows, self.clip_ids[rows], feats, frame_index))
        self._set_rows(self._files.array("done"), rows, True)  # only after the data above is stored
        failures = self._own_failures(writer)
        written = set(rows.tolist())
        if written & failures.keys():
            self._save_failures(writer, {r: f for r, f in failures.items() if r not in written})

    def _own_failures(self, writer: int) -> dict[int, dict]:
        path = self.path / _FAILURE_DIR / f"writer_{writer}.json"
        if not path.exists():
            return {}
        content = load_json(path.read_bytes(), str(path))
        try:
            return {r["row"]: r for r in content["failures"]}
        except (TypeError, KeyError) as e:
            raise TgdferError(f"{path}: not a failure table (expected writer and failures: [...]): {e!r}") from None

    def _save_failures(self, writer: int, failures: dict[int, dict]) -> None:
        path = self.path / _FAILURE_DIR / f"writer_{writer}.json"
        if not failures:
            path.unlink(missing_ok=True)
            return
        content = {"writer": writer, "failures": [failures[r] for r in sorted(failures)]}
        data = json.dumps(content, indent=1, ensure_ascii=False).encode("utf-8")
        _write_atomic(path, data, self.path / _TMP_DIR, self._files.zstore.fsync, path.name)

    def record_failures(self, rows: Any, reasons: str | Sequence[str], writer: int = 0,
                        num_writers: int = 1) -> None:
        """Record clips that could not be extracted (one reason each, or one for all); they are skipped."""
        rows = self._owned(rows, writer, num_writers)
        reasons = [reasons] * len(rows) if isinstance(reasons, str) else [str(r) for r in reasons]
        if len(reasons) != len(rows):
            raise ValueError(f"got {len(rows)} rows but {len(reasons)} reasons")
        failures = self._own_failures(writer)
        clip_ids = self.clips["clip_id"]
        for row, reason in zip(rows.tolist(), reasons):
            failures[row] = {"row": row, "clip_id": str(clip_ids[row]), "reason": reason}
        self._save_failures(writer, failures)

    def record_unplaced(self, reasons: dict[str, str]) -> None:
        """Record the annotation rows without a row here, {clip_id: reason}, replacing the previous record
        (each extraction reads the annotations afresh). Call it from one process (writer 0)."""
        self._check_writable()
        records = [{"clip_id": str(c), "reason": str(r)} for c, r in sorted(reasons.items())]
        if records == self._files.unplaced_records():
            return
        path = self.path / _FAILURE_DIR / _UNPLACED_FILE
        if not records:
            path.unlink(missing_ok=True)
            return
        data = json.dumps(records, indent=1, ensure_ascii=False).encode("utf-8")
        _write_atomic(path, data, self.path / _TMP_DIR, self._files.zstore.fsync, path.name)

    def write_text(self, name: str, prompts: Sequence[str], tokens: np.ndarray, emb: np.ndarray) -> None:
        """Store prompt set ``name`` whole (replacing an older one): prompts, tokens [P, L], emb [P, D].

        Call it from one process (writer 0): the set is built aside and swapped in.
        """
        self._check_writable()
        if not _TEXT_NAME.match(name):
            raise ValueError(f"text set name {name!r}: use letters, digits, '_', '-' or '.'")
        prompts = [str(p) for p in prompts]
        tokens, emb = np.asarray(tokens), np.asarray(emb)
        p = len(prompts)
        if p == 0 or tokens.ndim != 2 or tokens.shape[0] != p or emb.shape != (p, self.dim):
            raise ValueError(f"text set {name!r}: expected {p} prompts, tokens [{p}, L] and emb "
                             f"[{p}, {self.dim}], got tokens {tokens.shape} and emb {emb.shape}")
        if not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"text set {name!r}: tokens must be integers, got {tokens.dtype}")
        fsync = self._files.zstore.fsync
        tmp = self.path / _TMP_DIR / _tmp_name(f"text-{name}")
        g = zarr.create_group(store=_AtomicLocalStore(tmp, fsync=fsync), attributes={"prompts": prompts})
        g.create_array("tokens", shape=tokens.shape, dtype="int32", chunks=tokens.shape)[:] = tokens
        g.create_array("emb", shape=emb.shape, dtype="float32", chunks=emb.shape)[:] = emb
        shutil.rmtree(tmp / _TMP_DIR, ignore_errors=True)
        old = self.path / _TMP_DIR / _tmp_name(f"old-{name}")
        _publish_dir(tmp, self.path / "text" / name, old_parking=old, fsync=fsync)


# ---------------------------------------------------------------------------------------------
# HDF5 export
# ---------------------------------------------------------------------------------------------


def _write_h5(f: h5py.File, src: FeatureStore) -> None:
    n, v, t, d = src.n_clips, src.views, src.frames, src.dim
    f.attrs["tgdfer_store"] = json.dumps(src._layout)
    f.attrs["fingerprint"] = json.dumps(src.fingerprint)
    feats = f.create_dataset("feats", shape=(n, v, t, d), dtype="float16", chunks=(1, v, t, d),
                             fillvalue=np.float16(np.nan))
    step = max(1, (64 << 20) // (v * t * d * 2))  # copy ~64 MB at a time
    for start in range(0, n, step):
        feats[start:start + step] = src._files.array("feats")[start:start + step]
    f.create_dataset("frame_index", data=src.read_frame_index(), chunks=(min(n, src.block_size), v, t))
    f.create_dataset("boxes", data=src.read_boxes(), chunks=(min(n, src.block_size), v, t, 4))
    f.create_dataset("face_source", data=src.read_face_source(), chunks=(min(n, src.block_size), v, t))
    if src.has_checksums:
        f.create_dataset("checksum", data=src.read_checksums(), chunks=(min(n, src.block_size),))
        f["checksum"].attrs["algorithm"] = CHECKSUM
    f.create_dataset("done", data=src.done)
    text = h5py.string_dtype()
    f.create_dataset("clips_csv", data=src._files.clips_csv(), dtype=text)
    failures = [{"row": int(r.row), "clip_id": str(r.clip_id), "reason": str(r.reason), "writer": int(r.writer)}
                for r in src.failures.itertuples()]
    f.create_dataset("failures_json", data=json.dumps(failures, ensure_ascii=False), dtype=text)
    unplaced = src.unplaced.to_dict(orient="records")
    if unplaced:
        f.create_dataset("unplaced_json", data=json.dumps(unplaced, ensure_ascii=False), dtype=text)
    group = f.create_group("text")
    for name in src.text_sets:
        prompts, tokens, emb = src.text(name)
        g = group.create_group(name)
        g.create_dataset("prompts", data=np.array(prompts, dtype=object), dtype=text)
        g.create_dataset("tokens", data=tokens)
        g.create_dataset("emb", data=emb)


def export_hdf5(zarr_path: str | Path, h5_path: str | Path, *, allow_pending: bool = False) -> Path:
    """Write the Zarr store ``zarr_path`` as one HDF5 file ``h5_path`` (same schema), atomically.

    Refuses a store with pending clips unless ``allow_pending``. The file is written beside the
    target under a hidden temporary name and renamed into place when complete.
    """
    h5_path = Path(h5_path)
    with FeatureStore.open(zarr_path) as src:
        if src.backend != "zarr":
            raise TgdferError(f"{zarr_path}: export_hdf5 reads a Zarr store, this is {src.backend}")
        pending = src.coverage()["pending"]
        if pending and not allow_pending:
            raise TgdferError(f"{zarr_path}: {pending} of {src.n_clips} clips are not extracted yet; "
                              "re-run extraction to finish them, or pass allow_pending=True")
        h5_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(h5_path.parent, prefix=f".{h5_path.name}~")
        tmp = h5_path.parent / _tmp_name(f".{h5_path.name}")
        try:
            with h5py.File(tmp, "w") as f:
                _write_h5(f, src)
            os.replace(tmp, h5_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    logger.info("exported %s to %s", zarr_path, h5_path)
    return h5_path
