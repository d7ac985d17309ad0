"""The feature store's layout and file format: Zarr and HDF5 arrays, the clip table, checksums.

What a store holds and how it is read back and checked; how several processes write it safely is
tgdfer.storeprotocol, how its contents are checksummed tgdfer.storeintegrity, the store that uses
them is tgdfer.store.FeatureStore.

Feature store: frozen CLIP features of every clip on disk, resumable and shardable.

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
    <store>/box_checksum/             [N] uint64, chunk (B,): per-clip checksum of the row, clip id, boxes and
                                      face_source bytes as stored (``box_checksums``; fill values included);
                                      0 = not written. Older stores lack it: their boxes are not checksummed.
    <store>/done/                     [N] bool, chunk (B,)
    <store>/text/<name>/              group per prompt set: tokens [P, L] int32, emb [P, D] float32, attrs "prompts"
                                      and "checksum" (``text_digest`` of all three; older stores lack it)
    <store>/clips.csv                 the clip table; column dtypes in attrs "tgdfer_store" -> "clip_columns"; its
                                      ids, labels, folds and splits are digested in the fingerprint
                                      ("annotations" -> "sha256", ``annotation_digest``)
    <store>/failures/writer_<k>.json  clips writer k could not read, with the reason
    <store>/failures/unplaced.json    annotation rows the reader skipped that have no row (a label that
                                      is no class), with the reason; written by writer 0
    <store>/.tmp/                     files being written (renamed into place when complete)
    <store>/.locks/writer_<k>.lock    flock held by the live process acting as writer k

Integrity (checksums, digests, what a damaged clip or text set is) is tgdfer.storeintegrity. An
HDF5 file whose pages are damaged makes h5py raise KeyError / OSError: every HDF5 read goes through
``H5Dataset``, which turns them into StoreReadError naming the file and the dataset.

HDF5. HDF5 files are neither crash- nor multi-writer-safe, so HDF5 is an export format: extract
into the Zarr store at ``hdf5_staging_path(h5)`` (which resumes like any Zarr store), then
``export_hdf5`` writes a temporary file beside the target and renames it into place.
``FeatureStore.open`` reads both with the same API.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import zarr

from .errors import TgdferError
from .limits import LimitError, check_frame_count, check_store_shape, load_json
from .storeintegrity import BOX_CHECKSUM, CHECKSUM
from .storeprotocol import LOCK_DIR, TMP_DIR, AtomicLocalStore, write_atomic

SCHEMA_VERSION = 1
FAILURE_DIR = "failures"
CLIPS_FILE = "clips.csv"
UNPLACED_FILE = "unplaced.json"  # in failures/
NA_TOKEN = "<NA>"  # how a missing value is spelled in clips.csv ("" stays an empty string)


# ---------------------------------------------------------------------------------------------
# Where things are
# ---------------------------------------------------------------------------------------------


def hdf5_staging_path(h5_path: str | Path) -> Path:
    """The Zarr store an HDF5 extraction writes (and resumes) before ``export_hdf5``: ``<h5>.staging.zarr``."""
    h5_path = Path(h5_path)
    return h5_path.with_name(h5_path.name + ".staging.zarr")


# ---------------------------------------------------------------------------------------------
# Clip table <-> CSV
# ---------------------------------------------------------------------------------------------


def column_meta(name: str, dtype: Any) -> dict:
    meta = {"name": name, "dtype": str(dtype)}
    if isinstance(dtype, pd.CategoricalDtype):
        meta.update(categories=dtype.categories.tolist(), categories_dtype=str(dtype.categories.dtype),
                    ordered=bool(dtype.ordered))
    return meta


def decode_clips(text: str, columns: list[dict]) -> pd.DataFrame:
    """Parse ``clips.csv`` back into the DataFrame it was written from (same dtypes, RangeIndex)."""
    read_as = {}
    for m in columns:
        if m["dtype"] == "category":
            read_as[m["name"]] = m["categories_dtype"]
        elif m["dtype"].startswith(("datetime", "timedelta")):
            read_as[m["name"]] = "str"
        else:
            read_as[m["name"]] = m["dtype"]
    df = pd.read_csv(io.StringIO(text), dtype=read_as, keep_default_na=False, na_values=[NA_TOKEN])
    for m in columns:
        if m["dtype"] == "category":
            cats = pd.Index(m["categories"], dtype=m["categories_dtype"])
            df[m["name"]] = df[m["name"]].astype(pd.CategoricalDtype(cats, ordered=m["ordered"]))
        elif read_as[m["name"]] != m["dtype"]:
            df[m["name"]] = df[m["name"]].astype(m["dtype"])
    return df


# What a clip *is*: where its files live (path) and how many frames the reader counted (n_frames)
# may change when a dataset is moved or a broken video repaired, without changing any feature.
CLIP_IDENTITY = ("clip_id", "label", "fold", "split")


def clip_identity_diff(stored: pd.DataFrame, wanted: pd.DataFrame) -> list[str]:
    """Differences in clip ids, labels, folds and splits between two clip tables (first few named)."""
    if len(stored) != len(wanted):
        return [f"clip table: stored {len(stored)} clips, requested {len(wanted)}"]
    problems = []
    for col in CLIP_IDENTITY:
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


def encode_clips(clips: pd.DataFrame) -> tuple[str, list[dict]]:
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
    columns = [column_meta(n, df[n].dtype) for n in names]
    text = df.to_csv(index=False, na_rep=NA_TOKEN, lineterminator="\n")
    back = decode_clips(text, columns)
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


class StoreReadError(TgdferError):
    """A part of a store cannot be read: a damaged page or object of an HDF5 file, a Zarr array's missing metadata."""


READ_ERRORS = (KeyError, OSError, RuntimeError)  # what h5py and zarr raise on a damaged file or a missing node


@contextlib.contextmanager
def reading(where: str) -> Iterator[None]:
    """Turn what h5py or zarr raise on a damaged file (READ_ERRORS) into one StoreReadError naming ``where``
    (the file and the dataset): the one place a store read's low-level error becomes the user's."""
    try:
        yield
    except StoreReadError:
        raise
    except READ_ERRORS as e:
        raise StoreReadError(f"{where} cannot be read ({type(e).__name__}: {str(e)[:200]}): the store is damaged; "
                             "copy it again, or rebuild it (`tgdfer extract`; an HDF5 store is exported again from "
                             "its Zarr store)") from None


def read_rows(array: Any, rows: np.ndarray | None, views: Any) -> np.ndarray:
    """``array[rows][:, views]`` for a zarr Array or an H5Dataset; ``rows`` sorted unique or None."""
    if isinstance(array, zarr.Array):
        if rows is not None and len(rows) and rows[-1] - rows[0] + 1 == len(rows):
            rows = slice(int(rows[0]), int(rows[-1]) + 1)  # a run of rows: zarr reads a slice faster
        sel = (slice(None) if rows is None else rows,) + (() if views is None else (views,))
        return array.get_orthogonal_selection(sel)
    data = array[:] if rows is None else array[rows]  # h5py: one increasing index list per read
    return data if views is None else data[:, views]


class ZarrFiles:
    backend = "zarr"

    def __init__(self, root: Path, writable: bool, fsync: bool):
        self.root = root
        self.zstore = AtomicLocalStore(root, read_only=not writable, fsync=fsync)
        self.group = zarr.open_group(store=self.zstore, mode="r+" if writable else "r")
        self._arrays: dict[str, zarr.Array] = {}

    def attrs(self) -> dict:
        return self.group.attrs.asdict()

    def array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            with reading(str(self.root / name)):
                self._arrays[name] = self.group[name]
        return self._arrays[name]

    def has(self, name: str) -> bool:
        return name in self._arrays or (self.root / name / "zarr.json").is_file()

    def clips_where(self) -> str:
        return str(self.root / CLIPS_FILE)

    def clips_csv(self) -> str:
        return (self.root / CLIPS_FILE).read_text(encoding="utf-8")

    def failure_records(self) -> list[dict]:
        records = []
        for path in sorted((self.root / FAILURE_DIR).glob("writer_*.json")):
            content = load_json(path.read_bytes(), str(path))
            try:
                records += [dict(r, writer=content["writer"]) for r in content["failures"]]
            except (TypeError, KeyError, ValueError) as e:
                raise TgdferError(f"{path}: not a failure table (expected writer and failures: [...]): {e!r}") from None
        return records

    def unplaced_records(self) -> list[dict]:
        path = self.root / FAILURE_DIR / UNPLACED_FILE
        return check_unplaced(load_json(path.read_bytes(), str(path)), path) if path.is_file() else []

    def text_names(self) -> list[str]:
        return sorted(p.name for p in (self.root / "text").iterdir() if (p / "zarr.json").is_file())

    def read_text(self, name: str, dim: int) -> tuple[list[str], np.ndarray, np.ndarray, str | None]:
        """Prompt set ``name``: prompts, tokens [P, L], emb [P, D] and its recorded checksum (None: an older store)."""
        with reading(str(self.root / "text" / name)):
            g = zarr.open_group(store=self.zstore, path=f"text/{name}", mode="r")
            prompts, tokens, emb = g.attrs["prompts"], g["tokens"], g["emb"]
            check_text_shapes(self.root / "text" / name, prompts, tokens.shape, emb.shape, dim)
            return list(prompts), tokens[:], emb[:], g.attrs.get("checksum")

    def size(self) -> int:
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(self.root) for f in files)

    def close(self) -> None:
        pass


class H5Dataset:
    """One dataset of an HDF5 store whose every read goes through ``reading``: h5py's KeyError / OSError on a
    damaged page or object become a StoreReadError naming the file and the dataset. H5Files reads only so."""

    def __init__(self, file: h5py.File, path: Path, name: str):
        self._file, self.name, self.where = file, name, f"{path}: HDF5 dataset {name!r}"
        self._node: h5py.Dataset | None = None

    def node(self) -> h5py.Dataset:
        if self._node is None:
            with reading(self.where):
                self._node = self._file[self.name]
        return self._node

    @property
    def shape(self) -> tuple:
        with reading(self.where):
            return self.node().shape

    @property
    def attrs(self) -> dict:
        with reading(self.where):
            return dict(self.node().attrs)

    def __getitem__(self, sel: Any) -> np.ndarray:
        with reading(self.where):
            return self.node()[sel]

    def text(self, sel: Any = ()) -> Any:
        """A string dataset's value (``()``: a scalar) as str."""
        with reading(self.where):
            return self.node().asstr()[sel]


class H5Files:
    backend = "hdf5"

    def __init__(self, path: Path):
        self.path = path
        self.file = h5py.File(path, "r")
        self._arrays: dict[str, H5Dataset] = {}

    def attrs(self) -> dict:
        with reading(f"{self.path}: the root attributes"):
            return {k: load_json(self.file.attrs[k], f"{self.path}: attribute {k}")
                    for k in ("tgdfer_store", "fingerprint") if k in self.file.attrs}

    def array(self, name: str) -> H5Dataset:
        if name not in self._arrays:
            self._arrays[name] = H5Dataset(self.file, self.path, name)
        return self._arrays[name]

    def has(self, name: str) -> bool:
        with reading(f"{self.path}: HDF5 dataset {name!r}"):
            return name in self.file

    def clips_where(self) -> str:
        return f"{self.path}: HDF5 dataset 'clips_csv'"

    def clips_csv(self) -> str:
        return self.array("clips_csv").text()

    def failure_records(self) -> list[dict]:
        return load_json(self.array("failures_json").text(), f"{self.path}: failures_json")

    def unplaced_records(self) -> list[dict]:
        if not self.has("unplaced_json"):
            return []
        return check_unplaced(load_json(self.array("unplaced_json").text(), f"{self.path}: unplaced_json"), self.path)

    def text_names(self) -> list[str]:
        with reading(f"{self.path}: HDF5 group 'text'"):
            return sorted(self.file["text"].keys())

    def read_text(self, name: str, dim: int) -> tuple[list[str], np.ndarray, np.ndarray, str | None]:
        """Prompt set ``name``: prompts, tokens [P, L], emb [P, D] and its recorded checksum (None: an older store)."""
        with reading(f"{self.path}: HDF5 group 'text/{name}'"):
            checksum = self.file["text"][name].attrs.get("checksum")
        prompts = [str(p) for p in self.array(f"text/{name}/prompts").text(slice(None))]
        tokens, emb = self.array(f"text/{name}/tokens"), self.array(f"text/{name}/emb")
        check_text_shapes(f"{self.path}: text/{name}", prompts, tokens.shape, emb.shape, dim)
        return prompts, tokens[:], emb[:], None if checksum is None else str(checksum)

    def size(self) -> int:
        return os.path.getsize(self.path)

    def close(self) -> None:
        self.file.close()


# Codecs a tgdfer store may name (what zarr writes for it, and the usual compressors). A codec is code
# chosen by the file: one outside this list (numcodecs.pickle unpickles every chunk) is refused before
# zarr reads anything.
SAFE_CODECS = frozenset({"bytes", "zstd", "blosc", "gzip", "crc32c", "transpose", "sharding_indexed",
                         "vlen-utf8", "vlen-bytes"})


NOT_NODES = (TMP_DIR, LOCK_DIR, FAILURE_DIR)  # the store's own folders beside the zarr nodes


V2_METADATA = (".zarray", ".zgroup", ".zattrs", ".zmetadata")


def codec_names(meta: Any) -> list[str]:
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


def check_metadata(root: Path) -> None:
    """TgdferError for zarr metadata tgdfer would not write: too large or deep (limits), a codec outside
    SAFE_CODECS, or zarr v2 files (whose filters name codecs too). Reads the metadata as data only."""
    folders = [root]
    while folders:  # the root group, then every node under a group (an array's chunk folders are not nodes)
        folder = folders.pop()
        v2 = [n for n in V2_METADATA if (folder / n).exists()]
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
        bad = [n for n in codec_names(meta) if n not in SAFE_CODECS]
        if bad:
            raise TgdferError(f"{meta_path}: names the codec {bad[0]!r}, which tgdfer does not read (it reads "
                              f"{', '.join(sorted(SAFE_CODECS))}): refused, a codec can run code")
        if isinstance(meta, dict) and meta.get("node_type") == "group":
            folders += [d for d in folder.iterdir() if d.is_dir() and d.name not in NOT_NODES]


MAX_TOKENS = 2**16  # tokens per prompt a text set may declare (open_clip's context lengths: 64 to 256)


def check_text_shapes(where: Any, prompts: Any, tokens: tuple, emb: tuple, dim: int) -> None:
    """TgdferError unless a text set's declared shapes are [P, L] and [P, dim] for its P prompts: the shapes
    size what reading it allocates."""
    p = len(prompts) if isinstance(prompts, list) else -1
    if len(tokens) != 2 or tuple(emb) != (p, dim) or tokens[0] != p or not 0 < tokens[1] <= MAX_TOKENS:
        raise TgdferError(f"{where}: a text set of {p} prompts with tokens {tuple(tokens)} and embeddings "
                          f"{tuple(emb)}; expected [{p}, L <= {MAX_TOKENS}] and [{p}, {dim}]: a damaged store")


def check_unplaced(records: Any, where: Path) -> list[dict]:
    """The unplaced-clip records of a store, checked to be {clip_id, reason} strings."""
    if not isinstance(records, list) or not all(
            isinstance(r, dict) and isinstance(r.get("clip_id"), str) and isinstance(r.get("reason"), str)
            for r in records):
        raise TgdferError(f"{where}: not a list of {{clip_id, reason}} records: a damaged failure table")
    return [{"clip_id": r["clip_id"], "reason": r["reason"]} for r in records]


def open_files(path: Path, mode: str, fsync: bool) -> ZarrFiles | H5Files:
    """Detect the backend by content: a directory with zarr.json, or an HDF5 file."""
    if path.is_dir() and (path / "zarr.json").is_file():
        check_metadata(path)
        return ZarrFiles(path, writable=mode == "r+", fsync=fsync)
    if path.is_file() and h5py.is_hdf5(path):
        if mode != "r":
            raise TgdferError(
                f"{path}: an HDF5 store is a read-only export; resume or change the Zarr store "
                f"it was exported from (normally {hdf5_staging_path(path)}) and export again"
            )
        return H5Files(path)
    hint = ""
    if not path.exists() and hdf5_staging_path(path).is_dir():
        hint = f"; an unfinished extraction is staged in {hdf5_staging_path(path)}: re-run it to finish"
    what = "does not exist" if not path.exists() else "is not a tgdfer feature store"
    raise TgdferError(f"{path} {what} (expected a Zarr directory with zarr.json or an HDF5 file){hint}")


# ---------------------------------------------------------------------------------------------
# Layout and skeleton of a new store
# ---------------------------------------------------------------------------------------------


def store_layout(n: int, views: int, frames: int, dim: int, block_size: int, zarr_shards: bool,
            clip_columns: list[dict]) -> dict:
    for name, value in (("views", views), ("frames", frames), ("dim", dim), ("block_size", block_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return {"schema_version": SCHEMA_VERSION, "n_clips": int(n), "views": int(views),
            "frames": int(frames), "dim": int(dim), "block_size": int(block_size),
            "zarr_shards": bool(zarr_shards), "clip_columns": clip_columns}


def check_layout(path: Path, layout: dict, files: ZarrFiles | H5Files) -> None:
    """TgdferError unless the layout's sizes are positive ints within the limits that agree with the arrays'
    real shapes, and its clip_columns are readable dtypes: numbers read from the file size allocations."""
    sizes = {k: layout.get(k) for k in ("n_clips", "views", "frames", "dim", "block_size")}
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TgdferError(f"{path}: the store's {name} is {value!r:.60}, not a positive integer")
    check_frame_count(f"{path}: the store's frames", sizes["frames"])
    check_store_shape(f"{path}: the store", sizes["views"], sizes["dim"])
    try:
        shape = tuple(files.array("feats").shape)
    except (KeyError, OSError, ValueError) as e:
        raise TgdferError(f"{path}: cannot read the feats array's shape ({e})") from e
    wanted = tuple(sizes[k] for k in ("n_clips", "views", "frames", "dim"))
    if shape != wanted:
        raise TgdferError(f"{path}: the store's attributes say {wanted} (clips, views, frames, dim) but its "
                          f"feats array is {shape}: a damaged or altered store")
    n, v, t = wanted[:3]
    for name, expect in (("frame_index", (n, v, t)), ("boxes", (n, v, t, 4)), ("face_source", (n, v, t)),
                         ("checksum", (n,)), ("box_checksum", (n,)), ("done", (n,))):
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


def build_skeleton(root: Path, layout: dict, fingerprint: dict, clips_csv: str, fsync: bool) -> None:
    """Write an empty store (metadata, clip table, no chunks) into the fresh directory ``root``."""
    n, v, t, d, b = (layout[k] for k in ("n_clips", "views", "frames", "dim", "block_size"))
    for sub in (TMP_DIR, LOCK_DIR, FAILURE_DIR):
        (root / sub).mkdir(parents=True)
    attributes = {"tgdfer_store": layout, "fingerprint": fingerprint}
    g = zarr.create_group(store=AtomicLocalStore(root, fsync=fsync), attributes=attributes)
    shards = (b, v, t, d) if layout["zarr_shards"] else None
    g.create_array("feats", shape=(n, v, t, d), chunks=(1, v, t, d), shards=shards, dtype="float16", fill_value=np.nan)
    g.create_array("frame_index", shape=(n, v, t), chunks=(b, v, t), dtype="int32", fill_value=-1)
    g.create_array("boxes", shape=(n, v, t, 4), chunks=(b, v, t, 4), dtype="float32", fill_value=np.nan)
    g.create_array("face_source", shape=(n, v, t), chunks=(b, v, t), dtype="int8", fill_value=-1)
    g.create_array("checksum", shape=(n,), chunks=(b,), dtype="uint64", fill_value=0,
                   attributes={"algorithm": CHECKSUM})
    g.create_array("box_checksum", shape=(n,), chunks=(b,), dtype="uint64", fill_value=0,
                   attributes={"algorithm": BOX_CHECKSUM})
    g.create_array("done", shape=(n,), chunks=(b,), dtype="bool", fill_value=False)
    g.create_group("text")
    write_atomic(root / CLIPS_FILE, clips_csv.encode("utf-8"), root / TMP_DIR, fsync)

