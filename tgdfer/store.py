"""Feature store: frozen CLIP features of every clip on disk, resumable and shardable.

One store per (dataset, encoder, sampling, views). Shape legend: ``N`` clips, ``V`` views,
``T`` frames, ``D`` feature width, ``P`` prompts, ``L`` tokens per prompt, ``B`` block size.

`FeatureStore` opens, creates, reads, writes and verifies a store; `export_hdf5` writes its HDF5
export. Its three parts live beside it: tgdfer.storeformat (the layout: Zarr / HDF5 arrays, the
clip table, how a file is checked before it is read), tgdfer.storeintegrity (per-clip checksums,
the text sets' and clip table's digests, damage reports) and tgdfer.storeprotocol (the writer
protocol: block ownership, atomic files, writer leases). Their docstrings describe the layout,
crash safety, integrity, concurrency and the HDF5 export.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import zarr

from .errors import StoreMismatchError, TgdferError
from .limits import check_depth, load_json
from .storeformat import (FAILURE_DIR, SCHEMA_VERSION, UNPLACED_FILE, H5Files, StoreReadError, ZarrFiles, build_skeleton,
                          check_layout, clip_identity_diff, decode_clips, encode_clips, hdf5_staging_path, open_files,
                          read_rows, store_layout)
from .storeintegrity import (ANNOTATION_COLUMNS, BEFORE_2026_11_24, BOX_CHECKSUM, CHECKSUM, NO_CHECKSUMS, Damage,
                             StoreDamaged, annotation_digest, box_checksums, box_damage, clip_checksums, digest, find_damage,
                             text_digest)
from .storeprotocol import (LOCK_DIR, TMP_DIR, AtomicLocalStore, acquire_lease, check_writer, owned_rows, publish_dir,
                            remove_stale, tmp_name, write_atomic)

logger = logging.getLogger(__name__)

_TEXT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_HDF5_SUFFIXES = (".h5", ".hdf5")


# ---------------------------------------------------------------------------------------------
# Fingerprints (pure functions)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


# codecs (zstd, blosc) on damaged bytes; StoreReadError: h5py's, turned into one naming the file and dataset
_DECODE_ERRORS = (RuntimeError, ValueError, OSError, EOFError, StoreReadError)


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

    def __init__(self, path: Path, files: ZarrFiles | H5Files, mode: str):
        self.path = path
        self.mode = mode
        self._files = files
        self._texts: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}  # read mode: sets read once
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
            check_layout(path, layout, files)
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
        try:
            self._check_clip_table()
        except TgdferError:
            files.close()
            raise
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
        clips_csv, columns = encode_clips(clips)
        layout = store_layout(len(clips), views, frames, dim, block_size, zarr_shards, columns)
        fingerprint = _json_normalise(fingerprint, "fingerprint")
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(path.parent, prefix=f".{path.name}~")
            tmp = path.parent / tmp_name(f".{path.name}")
            try:
                build_skeleton(tmp, layout, fingerprint, clips_csv, fsync)
                if publish_dir(tmp, path, fsync=fsync):
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
            store = cls(path, open_files(path, mode, fsync), mode)
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            raise TgdferError(f"{path}: cannot be read as a tgdfer feature store ({str(e)[:300]})") from e
        if mode == "r+":
            remove_stale(path / TMP_DIR)
        return store

    def _check_matches(self, layout: dict, fingerprint: dict, clips_csv: str) -> None:
        wanted = decode_clips(clips_csv, layout["clip_columns"])
        problems = [f"{k}: stored {self._layout.get(k)!r}, requested {v!r}"
                    for k, v in layout.items() if k != "clip_columns" and self._layout.get(k) != v]
        requested = self._older_digest(fingerprint, wanted)
        problems += [f"fingerprint.{line}" for line in diff_fingerprint(self.fingerprint, requested)]
        problems += clip_identity_diff(self.clips, wanted)
        if problems:
            self.close()
            raise StoreMismatchError(
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
                self._clips = decode_clips(self._files.clips_csv(), self._layout["clip_columns"])
            except (ValueError, TypeError, KeyError) as e:  # a damaged clips.csv: pandas' parse errors
                raise TgdferError(f"{self.path}: its clip table cannot be read ({str(e)[:200]})") from None
        return self._clips.copy()

    @property
    def clip_table_digest(self) -> str | None:
        """The digest of the clip ids, labels, folds and splits the store was extracted with (its fingerprint's
        annotations.sha256, ``annotation_digest``), or None for a store made without one (not checksummed)."""
        recorded = self.fingerprint.get("annotations") if isinstance(self.fingerprint, dict) else None
        recorded = recorded.get("sha256") if isinstance(recorded, dict) else None
        return recorded if isinstance(recorded, str) else None

    def _older_digest(self, fingerprint: dict, wanted: pd.DataFrame) -> dict:
        """`fingerprint` (a resumed extraction's) with this store's annotations.sha256 where the store holds the
        digest extracted before 2026-11-24 (with n_frames) of the very same annotations: such a store resumes,
        as it opens (`_check_clip_table`), keeping its own digest."""
        annotations = fingerprint.get("annotations")
        requested = annotations.get("sha256") if isinstance(annotations, dict) else None
        recorded = self.clip_table_digest
        if recorded is None or requested is None or recorded == requested:
            return fingerprint
        with contextlib.suppress(KeyError):
            if annotation_digest(wanted, BEFORE_2026_11_24) == recorded:
                return {**fingerprint, "annotations": {**fingerprint["annotations"], "sha256": recorded}}
        return fingerprint

    def _check_clip_table(self) -> None:
        """TgdferError naming clips.csv when its ids, labels, folds or splits are not those the features were
        extracted for (a hand-edited label or fold would train and score silently); paths and frame counts
        may change (a moved dataset)."""
        recorded = self.clip_table_digest
        if recorded is None:
            return
        for columns in (ANNOTATION_COLUMNS, BEFORE_2026_11_24):  # stores extracted until then digested n_frames too
            with contextlib.suppress(KeyError):  # a column it reads is not in the table (or was removed)
                if annotation_digest(self._clips, columns) == recorded:
                    return  # the older digest only computed where the current one differs (every open)
        raise TgdferError(
            f"{self._files.clips_where()}: its clip ids, labels, folds or splits are not those the store was "
            "extracted with (the fingerprint's annotations.sha256): the clip table was edited. Restore it, or "
            "to change labels or folds re-extract with the new annotations (`tgdfer extract --overwrite`): "
            "a store is bound to the annotations it was made from")

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
                return read_rows(array, None, views)
            unique, inverse = np.unique(rows, return_inverse=True)
            if not len(rows):  # h5py refuses empty selections
                return read_rows(array, np.arange(min(1, self.n_clips)), views)[:0]
            return read_rows(array, unique, views)[inverse]
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

    @property
    def has_box_checksums(self) -> bool:
        """False for stores written before tgdfer stored per-clip checksums of the face boxes and sources."""
        return self._files.has("box_checksum")

    def read_box_checksums(self) -> np.ndarray | None:
        """``[N]`` uint64 per-clip checksums of boxes and face_source (0 = not written), or None for an older store."""
        return self._read_whole("box_checksum").astype(np.uint64) if self.has_box_checksums else None

    def not_checksummed(self) -> list[str]:
        """The parts of the store without a checksum (written by an older tgdfer): their integrity cannot be verified."""
        parts = [] if self.has_checksums else ["features"]
        parts += [] if self.has_box_checksums else ["face boxes"]
        parts += [f"text set {name!r}" for name in self.text_sets if self._files.read_text(name, self.dim)[3] is None]
        return parts + ([] if self.clip_table_digest else ["clip table"])

    def _undecodable(self, rows: np.ndarray) -> list[Damage]:
        """Rows among ``rows`` whose feats or frame_index chunk cannot be decoded (read one clip at a time)."""
        return self._read_clips(rows)[1]

    def _read_clips(self, rows: np.ndarray, names: Sequence[str] = ("feats", "frame_index")
                    ) -> tuple[list[np.ndarray], list[Damage]]:
        """The arrays ``names`` of sorted unique ``rows`` (feats [n, V, T, D], frame_index [n, V, T], boxes
        [n, V, T, 4], face_source [n, V, T]) and the rows that cannot be decoded (they read as the fill value).
        One bulk read each; clip by clip only when it fails."""
        arrays = [self._files.array(name) for name in names]
        try:
            return [read_rows(a, rows, None) for a in arrays], []
        except _DECODE_ERRORS:
            if self.backend == "zarr":
                _settle_zarr()
        n, v, t, d = len(rows), self.views, self.frames, self.dim
        fill = {"feats": ((v, t, d), np.float16, np.nan), "frame_index": ((v, t), np.int32, -1),
                "boxes": ((v, t, 4), np.float32, np.nan), "face_source": ((v, t), np.int8, -1)}
        out = [np.full((n, *fill[name][0]), fill[name][2], fill[name][1]) for name in names]
        damage = []
        for i, row in enumerate(rows.tolist()):
            for what, array, into in zip(names, arrays, out):
                try:
                    into[i] = array[row]
                except _DECODE_ERRORS as e:
                    if self.backend == "zarr":
                        _settle_zarr()
                    damage.append(Damage(row, str(self.clip_ids[row]), f"its {what} chunk cannot be decoded ({e})"))
                    break
        return out, damage

    def _scan(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, list[Damage]]]:
        """(rows, feats, damage) for sorted done ``rows``, about 64 MB at a time: every clip checked
        against its checksums (when the store has them: feats and frame_index, boxes and face sources)
        and for non-finite values."""
        checksums, box_checks = self.read_checksums(), self.read_box_checksums()
        names = ("feats", "frame_index") + (() if box_checks is None else ("boxes", "face_source"))
        step = self.block_size * max(1, (64 << 20) // (self.block_size * self.views * self.frames * self.dim * 2))
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            arrays, damage = self._read_clips(part, names)
            ok = slice(None) if not damage else ~np.isin(part, [dmg.row for dmg in damage])  # no copy when intact
            boxes, source = (None, None) if box_checks is None else (arrays[2][ok], arrays[3][ok])
            damage += find_damage(part[ok], self.clip_ids, arrays[0][ok], arrays[1][ok],
                                  None if checksums is None else checksums[part[ok]], boxes, source,
                                  None if box_checks is None else box_checks[part[ok]])
            yield part, arrays[0], sorted(damage, key=lambda dmg: dmg.row)

    def verify(self, rows: Any = None) -> list[Damage]:
        """Damaged clips among the done ``rows`` (default all): chunks that do not match their checksum
        (flipped bits, another clip's chunk, missing or truncated), cannot be decoded, or hold NaN / inf;
        for the whole store (``rows`` None) also the text sets that do not match theirs (``row`` None)."""
        done = self.done
        whole = rows is None
        rows = np.flatnonzero(done) if rows is None else np.unique(self._rows(rows))
        rows = rows[done[rows]]
        damage = [dmg for _, _, found in self._scan(rows) for dmg in found]
        return damage + (self._text_damage() if whole else [])

    def _text_damage(self) -> list[Damage]:
        out = []
        for name in self.text_sets:
            try:
                self.text(name)
            except StoreDamaged as e:
                out += e.damage
        return out

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
        store without checksums), ``annotations`` (the clip table's ids, labels, folds and splits,
        ``annotation_digest``: not its paths nor frame counts, which a moved dataset changes), and each
        ``text`` set. ``clip_table`` (the whole file's bytes) is what checkpoints before the annotations part
        recorded; `run.content_diff` compares it only with such a checkpoint. Cheap: reads no features."""
        done = self.done
        checksums = self.read_checksums()
        clips = None if checksums is None else digest(done.tobytes(), np.where(done, checksums, 0).astype("<u8").tobytes())
        text = {name: text_digest(*self.text(name)) for name in self.text_sets}
        annotations = None
        with contextlib.suppress(KeyError):  # a hand-made table without a split column: not compared
            annotations = annotation_digest(self._clips)
        return {"clips": clips, "annotations": annotations,
                "clip_table": digest(self._files.clips_csv().encode("utf-8")), "text": text}

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

    def read_boxes_verified(self) -> np.ndarray:
        """``read_boxes()`` of the whole store ``[N, V, T, 4]``, every done clip's boxes and face sources checked
        against its box checksum (when the store has them); StoreDamaged names the damaged clips."""
        boxes, checks = self.read_boxes(), self.read_box_checksums()
        rows = np.flatnonzero(self.done)
        damage = box_damage(rows, self.clip_ids, boxes[rows], self.read_face_source(rows), checks[rows]) \
            if checks is not None else []
        if damage:
            raise StoreDamaged(self.path, damage)
        return boxes

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
        """Prompt set ``name``: (prompts, tokens ``[P, L]`` int32, embeddings ``[P, D]`` float32), checked against
        its checksum when the store has one (StoreDamaged if it does not match)."""
        if name in self._texts:  # a store opened to read keeps what it read (13 ms a set from Zarr)
            prompts, tokens, emb = self._texts[name]
            return list(prompts), tokens.copy(), emb.copy()
        if name not in self.text_sets:
            raise TgdferError(f"{self.path}: no text set {name!r}; stored sets: {self.text_sets}")
        *text, recorded = self._files.read_text(name, self.dim)
        if recorded is not None and recorded != text_digest(*text):  # a chunk changed, or missing (reads as 0)
            raise StoreDamaged(self.path, [Damage(None, "", "its prompts, tokens or embeddings do not match its "
                                                  "checksum (changed bytes, or a missing chunk read as the fill value)",
                                                  part=f"text set {name!r}")])
        if self.mode == "r":
            self._texts[name] = (list(text[0]), text[1].copy(), text[2].copy())
        return tuple(text)

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
        check_writer(writer, num_writers)
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
            self._leases[writer] = (num_writers, acquire_lease(self.path / LOCK_DIR, writer, num_writers))
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
        Returns after the data and each clip's checksums are on disk; ``done`` is set only then.
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
        if self.has_box_checksums:  # over what the rows now hold: the fill values where nothing was given
            stored_boxes = np.full((n, v, t, 4), np.nan, np.float32) if boxes is None else boxes[order]
            stored_source = np.full((n, v, t), -1, np.int8) if face_source is None else face_source[order]
            self._set_rows(self._files.array("box_checksum"), rows,
                           box_checksums(rows, self.clip_ids[rows], stored_boxes, stored_source))
        self._set_rows(self._files.array("done"), rows, True)  # only after the data above is stored
        failures = self._own_failures(writer)
        written = set(rows.tolist())
        if written & failures.keys():
            self._save_failures(writer, {r: f for r, f in failures.items() if r not in written})

    def _own_failures(self, writer: int) -> dict[int, dict]:
        path = self.path / FAILURE_DIR / f"writer_{writer}.json"
        if not path.exists():
            return {}
        content = load_json(path.read_bytes(), str(path))
        try:
            return {r["row"]: r for r in content["failures"]}
        except (TypeError, KeyError) as e:
            raise TgdferError(f"{path}: not a failure table (expected writer and failures: [...]): {e!r}") from None

    def _save_failures(self, writer: int, failures: dict[int, dict]) -> None:
        path = self.path / FAILURE_DIR / f"writer_{writer}.json"
        if not failures:
            path.unlink(missing_ok=True)
            return
        content = {"writer": writer, "failures": [failures[r] for r in sorted(failures)]}
        data = json.dumps(content, indent=1, ensure_ascii=False).encode("utf-8")
        write_atomic(path, data, self.path / TMP_DIR, self._files.zstore.fsync, path.name)

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
        path = self.path / FAILURE_DIR / UNPLACED_FILE
        if not records:
            path.unlink(missing_ok=True)
            return
        data = json.dumps(records, indent=1, ensure_ascii=False).encode("utf-8")
        write_atomic(path, data, self.path / TMP_DIR, self._files.zstore.fsync, path.name)

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
        tmp = self.path / TMP_DIR / tmp_name(f"text-{name}")
        attributes = {"prompts": prompts, "checksum": text_digest(prompts, tokens, emb)}  # checked on every read
        g = zarr.create_group(store=AtomicLocalStore(tmp, fsync=fsync), attributes=attributes)
        g.create_array("tokens", shape=tokens.shape, dtype="int32", chunks=tokens.shape)[:] = tokens
        g.create_array("emb", shape=emb.shape, dtype="float32", chunks=emb.shape)[:] = emb
        shutil.rmtree(tmp / TMP_DIR, ignore_errors=True)
        old = self.path / TMP_DIR / tmp_name(f"old-{name}")
        publish_dir(tmp, self.path / "text" / name, old_parking=old, fsync=fsync)


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
    for name, algorithm, values in (("checksum", CHECKSUM, src.read_checksums()),
                                    ("box_checksum", BOX_CHECKSUM, src.read_box_checksums())):
        if values is not None:  # a store made before them stays without them
            f.create_dataset(name, data=values, chunks=(min(n, src.block_size),))
            f[name].attrs["algorithm"] = algorithm
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
        prompts, tokens, emb = src.text(name)  # checked against its checksum
        g = group.create_group(name)
        if src._files.read_text(name, src.dim)[3] is not None:  # a set made before checksums stays without one
            g.attrs["checksum"] = text_digest(prompts, tokens, emb)
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
        remove_stale(h5_path.parent, prefix=f".{h5_path.name}~")
        tmp = h5_path.parent / tmp_name(f".{h5_path.name}")
        try:
            with h5py.File(tmp, "w") as f:
                _write_h5(f, src)
            os.replace(tmp, h5_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    logger.info("exported %s to %s", zarr_path, h5_path)
    return h5_path
