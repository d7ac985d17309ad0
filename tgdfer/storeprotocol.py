"""The feature store's writer protocol: block ownership, atomic files, writer leases.

How many processes write one Zarr store at once without losing or tearing data; what they write
(the arrays and files) is tgdfer.storeformat, the store that uses both is tgdfer.store.FeatureStore.

Crash safety. Every file of the store is written whole to ``.tmp/`` and then ``os.replace``d
onto its key, so a reader (or a resumed run) sees a chunk's old bytes or its new bytes, never a
torn file; ``fsync=True`` also flushes each file and its directory (for power loss; a SIGKILL
alone cannot lose page-cache data). ``write_clips`` returns only after zarr has stored every
feats / frame_index / boxes / checksum chunk of the batch, and only then sets ``done`` for those rows, so
``done`` never covers data that is not on disk. A killed run leaves at most some rows written but not
done; the rerun recomputes them and rewrites the same bytes. Temporary files of dead processes
(same host, pid gone) are removed when the store is next opened for writing. The store is created
whole in a hidden sibling directory and renamed into place, so it exists completely or not at all.

Concurrency. Rows are grouped in blocks (``row // block_size``); block ``b`` belongs to writer
``b % num_writers``. Every file a row touches -- its feats chunk, the zarr shard holding it
(shard = one block), its frame_index, boxes, face_source, checksum, box_checksum and done chunks (one
block each) and ``failures/writer_k``
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
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from .errors import TgdferError

logger = logging.getLogger(__name__)

TMP_DIR = ".tmp"
LOCK_DIR = ".locks"


# ---------------------------------------------------------------------------------------------
# Block ownership: which writer writes which rows
# ---------------------------------------------------------------------------------------------


def check_writer(writer: int, num_writers: int) -> None:
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
    check_writer(shard_id, num_shards)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    rows = np.arange(n, dtype=np.int64)
    return rows[(rows // block_size) % num_shards == shard_id]


# ---------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------


def tmp_name(label: str) -> str:
    """``<label>~<pid>@<host>~<random>``: the owner is in the name so stale files can be found."""
    return f"{label}~{os.getpid()}@{socket.gethostname()}~{uuid.uuid4().hex}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(name: str) -> bool:
    """True for a temporary name made by a process of this host that no longer runs."""
    parts = name.split("~")
    if len(parts) < 3 or "@" not in parts[-2]:
        return False
    pid, _, host = parts[-2].partition("@")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def remove_stale(folder: Path, prefix: str = "") -> None:
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(prefix) and is_stale(entry.name):
            logger.info("removing %s, left by a process that died", entry)
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: Any, tmp_dir: Path, fsync: bool, label: str = "file") -> None:
    """Write ``data`` (bytes-like) to ``path`` whole or not at all: temp file in ``tmp_dir``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / tmp_name(label.replace("/", "."))
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
        fsync_dir(path.parent)


class AtomicLocalStore(LocalStore):
    """zarr LocalStore whose every write goes through ``write_atomic`` (temp file + rename)."""

    def __init__(self, root: Path | str, *, read_only: bool = False, fsync: bool = False):
        super().__init__(root, read_only=read_only)
        self.fsync = fsync

    def with_read_only(self, read_only: bool = False) -> AtomicLocalStore:
        return type(self)(self.root, read_only=read_only, fsync=self.fsync)

    def _put(self, key: str, value: Buffer) -> None:
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(f"value must be a zarr Buffer, got {type(value)}")
        write_atomic(self.root / key, value.as_buffer_like(), self.root / TMP_DIR, self.fsync, key)

    async def set(self, key: str, value: Buffer) -> None:
        if not self._is_open:
            await self._open()
        await asyncio.to_thread(self._put, key, value)

    def set_sync(self, key: str, value: Buffer) -> None:
        self._ensure_open_sync()
        self._put(key, value)


def publish_dir(tmp: Path, dest: Path, old_parking: Path | None = None, fsync: bool = False) -> bool:
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
        fsync_dir(dest.parent)
    return True


# ---------------------------------------------------------------------------------------------
# Writer leases (flock): one live process per writer id, all agreeing on num_writers
# ---------------------------------------------------------------------------------------------


def read_lease(path: Path) -> dict | None:
    for _ in range(50):  # the holder writes its record just after locking
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.01)
    return None


def live_lease(path: Path) -> dict | None:
    """The record of the live process holding ``path``'s lock, or None if nobody holds it."""
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_lease(path) or {}
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None


def check_no_live_writer(store: Path, doing: str) -> None:
    """TgdferError naming the first live writer of the Zarr store at ``store`` (a lease held in its lock
    folder), before ``doing`` something that would pull the store from under it."""
    lock_dir = store / LOCK_DIR
    for path in sorted(lock_dir.glob("writer_*.lock")) if lock_dir.is_dir() else []:
        try:
            who = live_lease(path)
        except OSError:  # no flock here: nothing can be told
            continue
        if who is not None:
            raise TgdferError(f"{store}: an extraction is writing this store ({path.stem}, pid {who.get('pid')} on "
                              f"{who.get('host')}); {doing} would delete it under that process: let it finish or "
                              "stop it first")


def acquire_lease(lock_dir: Path, writer: int, num_writers: int):
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
                who = read_lease(path) or {}
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
        record = None if other == path else live_lease(other)
        if record and record.get("num_writers", num_writers) != num_writers:
            f.close()
            raise TgdferError(
                f"{other}: a live writer uses {record['num_writers']} shards, this one "
                f"{num_writers}; all concurrent writers must use the same number of shards"
            )
    return f

