"""Stage 1 (`tgdfer extract`): frozen open_clip encoders over a clip table -> feature store.

Data flow per clip (shape legend: V views, T frames, S image side, D embedding width):
    frame source -> view_indices (view 0 test-time, 1..V-1 train-time)  # [V, T] frame numbers
    -> [faces] face track on the clip's detection frames -> square crop box per frame  # [V, T, 4]
       and where its face box came from (detected / interpolated / carried / center)  # [V, T]
    -> decode each distinct frame once (-> face crops) -> ClipTransform.pixels per view (one augmentation draw
       per view, on uint8) -> pixels  # [V, T, 3, S, S] uint8  (DataLoader workers)
    -> collated in the worker into one shared-memory batch  # [B, V, T, 3, S, S] uint8 (pinned on CUDA)
    -> to the encoder's device (non_blocking) -> ClipTransform.to_float there, the whole batch at once
    -> encode_images on the batch's B*V*T images (main process, inference_mode, autocast)
    -> feats  # [B, V, T, D] float16 (+ boxes [B, V, T, 4], face_source [B, V, T]) -> FeatureStore.write_clips

Everything a view shows depends only on (seed, clip_id, view), so a resumed or sharded run
computes the same bytes as one uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from . import __version__
from .augment import AugmentConfig, ClipTransform
from .encoders import EncoderConfig, LoadedEncoder, encode_images, encode_texts, load_encoder, named_device
from .errors import ConfigError, FrameReadError, StoreMismatchError, TgdferError, os_error
from .clipinput import read_views, view_index
from .extractconfig import ExtractConfig
from .facetrack import CENTER, FaceStage, FacesConfig
from .fixedsettings import settings_fingerprint
from .frames import FolderSource, open_frames
from .jpegs import batch_pixels, read_clip_jpegs
from .labels import DEFAULT, ClassSet, check_same_classes, classes_record, stored_classes
from .limits import load_json
from .prompts import build_prompt_sets
from .sampling import view_seed
from .progress import ProgressCallback, Stage, as_callback
from .store import FeatureStore, export_hdf5
from .storeformat import hdf5_staging_path
from .storeintegrity import StoreDamaged, annotation_digest
from .storeprotocol import check_no_live_writer, owned_rows

log = logging.getLogger(__name__)

@dataclass
class ExtractResult:
    """What one `extract` call did (this writer's share) and where the store stands."""

    store: str  # path of the finished store (the .h5 file when exported)
    shard_id: int
    num_shards: int
    extracted: int  # clips encoded by this call
    failed: int  # clips this call could not read (recorded in the failure table)
    skipped: int  # clips of this shard already done before the call
    frames: int  # images through the encoder in this call
    seconds: float
    coverage: dict[str, int] = field(default_factory=dict)  # whole store: clips, done, failed, pending
    failures: list[tuple[str, str]] = field(default_factory=list)  # (clip_id, reason) of this call
    fallbacks: list[str] = field(default_factory=list)  # clips of this call cropped to the centre square (no face)
    fallback_clips: int = 0  # whole store: done clips whose crops are the centre fallback

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.coverage.get("failed", 0) == 0


def default_shard() -> tuple[int, int]:
    """(shard_id, num_shards) from torchrun (RANK/WORLD_SIZE) or Slurm (SLURM_PROCID/SLURM_NTASKS)."""
    for rank, world in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank in os.environ and world in os.environ:
            return int(os.environ[rank]), int(os.environ[world])
    return 0, 1


def resolve_device(name: str) -> torch.device:
    """`auto` = this process's GPU (LOCAL_RANK under torchrun, SLURM_LOCALID under srun) when CUDA
    is available, else CPU."""
    if name != "auto":
        return named_device(name)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))
        return torch.device("cuda", local % torch.cuda.device_count())
    return torch.device("cpu")


def build_fingerprint(cfg: ExtractConfig, augment: AugmentConfig, enc: LoadedEncoder, table: pd.DataFrame,
                      data_kind: str, classes: ClassSet = DEFAULT, faces: Optional[FacesConfig] = None) -> dict:
    """Everything the stored features depend on; a store refuses a run whose fingerprint differs.

    A class set other than the default 7 emotions adds "classes": {"names": [...]} (labels.classes_record);
    without that entry a store is for the default set, so older stores keep their fingerprint.
    "faces" (the face stage's config) is there only when a detector crops the frames, so stores of
    pre-cropped datasets keep the fingerprint they had before the face stage existed.
    The pipeline's own settings enter through `fixedsettings.settings_fingerprint` only (`fixed_settings`
    reads them back).
    """
    own = settings_fingerprint(cfg, augment, faces)
    fp = {
        "tgdfer_version": __version__,
        "encoder": dict(enc.fingerprint),
        "preprocessing": {"size": enc.image_size, **own.pop("preprocessing"),
                          "mean": list(enc.mean), "std": list(enc.std)},
        "sampling": own.pop("sampling"),
        **({"test_views": own.pop("test_views")} if "test_views" in own else {}),  # absent: every clip has V views
        "annotations": {"reader": data_kind, "clips": len(table), "sha256": annotation_digest(table)},
    }
    record = classes_record(classes)
    if record is not None:
        fp["classes"] = record
    fp.update(own)  # "faces"
    return fp


def check_labels(table: pd.DataFrame, classes: ClassSet) -> None:
    """TgdferError when a clip's label is not a class of `classes` (labels are 0-based indices)."""
    labels = table["label"].to_numpy()
    bad = (labels < 0) | (labels >= len(classes))
    if bad.any():
        row = int(np.argmax(bad))
        raise TgdferError(f"clip {table['clip_id'].iat[row]} has label {int(labels[row])}, but the class set has "
                          f"{classes.describe()}: labels must lie in 0..{len(classes) - 1}; declare the dataset's "
                          "classes in [classes] names")


class ClipViews(Dataset):
    """Item k: the V views of clip `rows[k]` as encoder input, or the reason it cannot be read.

    Returns dict(row, pixels [V, T, 3, S, S] uint8 | None, index [V, T] int64 | None,
    boxes [V, T, 4] float32 | None, source [V, T] int8 | None, error str | None, jpegs ClipJpegs | None).
    The pixels are the encoder input before `to_float` (a quarter of its bytes through the
    DataLoader queue). With `jpegs` (the device decodes JPEG frames: `tgdfer.jpegs`), a clip of
    RGB JPEG frames comes as its files' bytes instead (pixels None), to be decoded by `jpegs.batch_pixels`.
    """

    def __init__(self, table: pd.DataFrame, rows: np.ndarray, cfg: ExtractConfig, augment: AugmentConfig,
                 size: int, mean: tuple[float, ...], std: tuple[float, ...], faces: Optional[FacesConfig] = None,
                 jpegs: bool = False):
        self.paths = table["path"].to_numpy()
        self.clip_ids = table["clip_id"].to_numpy()
        self.rows = np.asarray(rows, dtype=np.int64)
        self.cfg = cfg
        kw = dict(size=size, config=augment, normalize=cfg.normalize, mean=mean, std=std)
        self.test_tf, self.train_tf = ClipTransform(train=False, **kw), ClipTransform(train=True, **kw)
        self.faces = FaceStage(faces) if faces is not None and faces.enabled else None
        self.jpegs = jpegs and self.faces is None  # the face stage detects on decoded frames, in the worker

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> dict:
        row, cfg = int(self.rows[k]), self.cfg
        path, clip_id = self.paths[row], str(self.clip_ids[row])
        item = dict(row=row, pixels=None, index=None, boxes=None, source=None, error=None, jpegs=None)
        try:
            with open_frames(path, backend=cfg.frame_backend) as src:
                if self.jpegs and isinstance(src, FolderSource):
                    index = view_index(len(src), clip_id, range(cfg.views), cfg.seed, cfg.frames)  # [V, T]
                    seeds = [view_seed(cfg.seed, clip_id, v) if v else None for v in range(cfg.views)]
                    item["jpegs"] = read_clip_jpegs(src, index, seeds)  # None: not all RGB JPEGs
                if item["jpegs"] is None:
                    views = read_views(src, clip_id, views=cfg.views, frames=cfg.frames, seed=cfg.seed,
                                       backend=cfg.frame_backend, test_tf=self.test_tf, train_tf=self.train_tf,
                                       faces=self.faces, uint8=True)
                else:  # decoded and transformed in the main process (jpegs.batch_pixels)
                    views = (None, index, np.full((*index.shape, 4), np.nan, np.float32), np.full(index.shape, -1, np.int8))
        except (FrameReadError, ValueError) as e:
            return {**item, "error": str(e)}
        return {**item, **dict(zip(("pixels", "index", "boxes", "source"), views))}

    def to_float(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels [..., 3, S, S] of `__getitem__` -> encoder input, float32 on their device."""
        return self.test_tf.to_float(pixels)


def encode_views(enc: LoadedEncoder, pixels: torch.Tensor) -> np.ndarray:
    """Encoder features of views: pixels [B, V, T, 3, S, S] -> [B, V, T, D] float16 (as the store keeps them)."""
    b, v, t = pixels.shape[:3]
    feats = encode_images(enc, pixels.flatten(0, 2))  # [B*V*T, D]
    return feats.view(b, v, t, -1).cpu().numpy().astype(np.float16)


def collate_views(items: list[dict]) -> dict:
    """Items of `ClipViews` -> dict(items: the items without pixels, pixels: [B', V, T, 3, S, S] uint8 of the
    B' readable ones in order, or None). In a worker the batch is stacked straight into shared memory
    (as torch's default_collate does), so it crosses to the main process without another copy."""
    tensors = [it["pixels"] for it in items if it["pixels"] is not None]
    rest = [{k: v for k, v in it.items() if k != "pixels"} for it in items]
    if not tensors:
        return {"items": rest, "pixels": None}
    out = None
    if torch.utils.data.get_worker_info() is not None:
        storage = tensors[0]._typed_storage()._new_shared(sum(t.numel() for t in tensors), device="cpu")
        out = tensors[0].new(storage).resize_(len(tensors), *tensors[0].shape)
    return {"items": rest, "pixels": torch.stack(tensors, out=out)}


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding workers must not fight the encoder for cores


def _loader(dataset: ClipViews, cfg: ExtractConfig, device: torch.device) -> DataLoader:
    """Batches of `collate_views`; pinned (page-locked) when the encoder is on a GPU, so that the copy
    there can run asynchronously (`non_blocking`)."""
    return DataLoader(dataset, batch_size=cfg.batch_clips, shuffle=False, num_workers=cfg.workers,
                      collate_fn=collate_views, worker_init_fn=_worker_init if cfg.workers else None,
                      prefetch_factor=4 if cfg.workers else None, persistent_workers=False,
                      pin_memory=device.type == "cuda")


def is_feature_store(path: Path) -> bool:
    """True for a tgdfer store: a Zarr directory or an HDF5 file whose root has the 'tgdfer_store' attribute."""
    try:
        if path.is_dir():
            meta = load_json((path / "zarr.json").read_bytes(), str(path / "zarr.json"))  # size, depth capped
            return isinstance(meta, dict) and "tgdfer_store" in meta.get("attributes", {})
        if path.is_file() and h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return "tgdfer_store" in f.attrs
    except (OSError, ValueError, AttributeError, TgdferError):
        return False
    return False


def remove_store(path: Path) -> None:
    """Delete the store at `path` (for overwrite); refuses to delete anything that is not a tgdfer store."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if not is_feature_store(path):
        raise TgdferError(f"{path} exists and is not a tgdfer feature store; --overwrite only replaces "
                          "feature stores: move it away or choose another store path")
    if path.is_dir():
        check_no_live_writer(path, "--overwrite")
        shutil.rmtree(path)
    else:
        path.unlink()


def open_or_create_store(cfg: ExtractConfig, table: pd.DataFrame, fingerprint: dict, dim: int,
                         overwrite: bool) -> FeatureStore:
    """The Zarr store extraction writes (the staging store for hdf5); refuses a different one."""
    target = Path(cfg.store)
    zpath = hdf5_staging_path(target) if cfg.backend == "hdf5" else target
    if overwrite:
        for p in dict.fromkeys((target, zpath)):
            remove_store(p)
    elif cfg.backend == "hdf5" and target.exists() and not zpath.exists():
        if is_feature_store(target):
            raise TgdferError(f"{target} already exists (a finished HDF5 store); pass --overwrite to rebuild it")
        raise TgdferError(f"{target} exists and is not a tgdfer feature store; move it away or choose another "
                          "store path")
    existed = is_feature_store(zpath)
    try:
        return FeatureStore.create(zpath, clips=table, views=cfg.views, frames=cfg.frames, dim=dim,
                                   fingerprint=fingerprint, block_size=cfg.block_size,
                                   zarr_shards=cfg.zarr_shards)
    except TgdferError as e:
        if not existed:  # nothing to rebuild: the hint would only invite deleting something else
            raise
        with FeatureStore.open(zpath) as old:  # another class set: say so in words, naming both sets
            check_same_classes(stored_classes(old.fingerprint), stored_classes(fingerprint), str(zpath))
        kind = StoreMismatchError if isinstance(e, StoreMismatchError) else TgdferError
        raise kind(f"{e}\n(or pass --overwrite to rebuild it with the new settings)") from None
    except OSError as e:  # a read-only folder, a full disk, a path through a file
        raise os_error(zpath, e, "create the feature store") from e


def write_text_features(store: FeatureStore, enc: LoadedEncoder, descriptors: Optional[str],
                        classes: ClassSet = DEFAULT) -> None:
    """Tokens and frozen embeddings of every prompt set (class names, sentences, descriptors) of `classes`
    that the store lacks or holds with other prompts: a run killed between two sets wrote only some of
    them, and a new prompts file replaces that set (the encoder and class names are in the fingerprint,
    the prompts are not)."""
    for name, prompts in build_prompt_sets(descriptors, classes=classes).items():
        if name in store.text_sets:
            try:
                if store.text(name)[0] == prompts:
                    continue
                log.info("%s: replacing text set %r with the requested prompts", store.path, name)
            except StoreDamaged as e:  # the repair of a damaged set is writing it again
                log.warning("%s; writing it again", e.damage[0])
        tokens, emb = encode_texts(enc, prompts)  # [P, L], [P, D]
        store.write_text(name, prompts, tokens.numpy(), emb.cpu().numpy())


ProgressFn = Callable[[int, int], None]  # (clips finished in this call, images encoded in this call)


def extract(cfg: ExtractConfig, augment: AugmentConfig, encoder: EncoderConfig, table: pd.DataFrame, *,
            data_kind: str = "unknown", shard_id: Optional[int] = None, num_shards: Optional[int] = None,
            overwrite: bool = False, on_start: Optional[Callable[[int, int], None]] = None,
            on_progress: Optional[ProgressFn] = None, classes: ClassSet = DEFAULT,
            unreadable: Optional[dict[str, str]] = None, faces: Optional[FacesConfig] = None,
            progress: Optional[ProgressCallback] = None) -> ExtractResult:
    """Fill the store at `cfg.store` with this shard's clips; re-running skips finished clips.

    `classes`: the class set the table's labels index (recorded in the fingerprint unless the
    default 7 emotions; its prompts are the store's text sets).
    `faces`: the face stage (detector "none" or absent: frames are used whole, as pre-cropped datasets
    need); its config is part of the store fingerprint and the crop boxes are stored per frame.

    on_start(todo_clips, already_done) and on_progress(clips, images) report progress (the CLI
    draws a rich bar with them). `progress` (tgdfer.progress: a callable, a tqdm bar, a rich
    Progress) gets an event per batch, marked for the log at each finished block of clips.
    Clips that cannot be read are recorded and skipped.
    `unreadable` {clip_id: reason} names clips the reader skipped (`ClipTable.skip_reasons()`): those
    of `table` (missing or empty, `ClipTable.with_skipped()`) are recorded as failures without decoding,
    the others (a label that is no class) in the store's `unplaced` table.
    """
    t0 = time.perf_counter()
    if shard_id is None or num_shards is None:
        env_id, env_n = default_shard()
        shard_id = env_id if shard_id is None else shard_id
        num_shards = env_n if num_shards is None else num_shards
    if not 0 <= shard_id < num_shards:
        raise ConfigError("shard_id", f"must be in 0..{num_shards - 1}, got {shard_id}")
    if num_shards > 1 and overwrite:
        raise ConfigError("overwrite", "cannot rebuild a store from several shards at once; "
                          "delete it once, then start the shards")
    if len(table) == 0:
        raise TgdferError("the clip table is empty: nothing to extract")
    check_labels(table, classes)
    if not cfg.augment_test and table["fold"].notna().any():
        raise ConfigError("augment_test", "is false, but this dataset has folds: every clip trains in the folds "
                          "it is not tested in, so every clip needs its augmented views")
    device = resolve_device(cfg.device)
    enc = load_encoder(encoder, device=device)
    faces = faces if faces is not None and faces.enabled else None
    if faces is not None:
        FaceStage(faces).detector  # a detector that cannot load stops the run before any clip
    fingerprint = build_fingerprint(cfg, augment, enc, table, data_kind, classes, faces)
    store = open_or_create_store(cfg, table, fingerprint, enc.embed_dim, overwrite)
    try:
        if shard_id == 0:
            write_text_features(store, enc, cfg.descriptors, classes)
        todo = np.union1d(store.todo_rows(shard_id, num_shards, retry_failed=True),
                          damaged_rows(store, shard_id, num_shards))
        mine = len(owned_rows(store.n_clips, shard_id, num_shards, store.block_size))
        skipped = mine - len(todo)
        todo, not_read = _record_unreadable(store, table, todo, unreadable or {}, shard_id, num_shards)
        if shard_id == 0:  # skipped rows the clip table cannot hold (no class) are failures too
            placed = set(table["clip_id"].astype(str))
            unplaced = {c: r for c, r in (unreadable or {}).items() if c not in placed}
            store.record_unplaced(unplaced)
            not_read += list(unplaced.items())
        if on_start:
            on_start(len(todo), skipped)
        stage = Stage(as_callback(progress), "extract", len(todo), "clips",
                      detail=f"shard {shard_id + 1}/{num_shards}" if num_shards > 1 else "")
        extracted, images, failures, fallbacks = _run_rows(store, enc, table, todo, cfg, augment, shard_id,
                                                           num_shards, on_progress, faces, stage)
        failures = not_read + failures
        coverage = store.coverage()
        fallback_clips = len(store.face_fallbacks())
    finally:
        store.close()
    final = _maybe_export(cfg, coverage)
    return ExtractResult(store=str(final), shard_id=shard_id, num_shards=num_shards, extracted=extracted,
                         failed=len(failures), skipped=skipped, frames=images,
                         seconds=time.perf_counter() - t0, coverage=coverage, failures=failures,
                         fallbacks=fallbacks, fallback_clips=fallback_clips)


def damaged_rows(store: FeatureStore, shard_id: int, num_shards: int) -> np.ndarray:
    """This shard's done clips whose stored data does not match its checksum (or cannot be decoded):
    extracted again, so that re-running extract repairs a damaged store."""
    owned = owned_rows(store.n_clips, shard_id, num_shards, store.block_size)
    damage = [d for d in store.verify(owned) if d.repairable]
    for d in damage[:5]:
        log.warning("%s: %s; extracting it again", store.path, d)
    if len(damage) > 5:
        log.warning("%s: and %d more damaged clips; extracting them again", store.path, len(damage) - 5)
    return np.array([d.row for d in damage], dtype=np.int64)


NON_FINITE = "the encoder produced NaN or inf features (try encoder.precision = \"fp32\")"


def _record_unreadable(store: FeatureStore, table: pd.DataFrame, todo: np.ndarray, unreadable: dict[str, str],
                       shard_id: int, num_shards: int) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Record the rows the reader found unreadable as failures; returns (rows left to decode, failures)."""
    ids = table["clip_id"].to_numpy()
    gone = np.array([str(ids[r]) in unreadable for r in todo], dtype=bool)
    if not gone.any():
        return todo, []
    failures = [(str(ids[r]), unreadable[str(ids[r])]) for r in todo[gone]]
    store.record_failures(todo[gone], [reason for _, reason in failures], shard_id, num_shards)
    return todo[~gone], failures


def _run_rows(store: FeatureStore, enc: LoadedEncoder, table: pd.DataFrame, rows: np.ndarray,
              cfg: ExtractConfig, augment: AugmentConfig, shard_id: int, num_shards: int,
              on_progress: Optional[ProgressFn], faces: Optional[FacesConfig] = None,
              stage: Optional[Stage] = None,
              ) -> tuple[int, int, list[tuple[str, str]], list[str]]:
    """Decode (workers) -> encode (here) -> write, batch by batch. Returns (clips, images, failures,
    clips cropped to the centre fallback). With `augment_test` false, the test split's clips are
    read and encoded at view 0 only and written with it repeated in every view."""
    if cfg.augment_test:
        return _encode_rows(store, enc, table, rows, cfg, augment, shard_id, num_shards, on_progress, faces, stage)
    test = (table["split"].to_numpy()[rows] == "test")
    a = _encode_rows(store, enc, table, rows[~test], cfg, augment, shard_id, num_shards, on_progress, faces, stage)
    b = _encode_rows(store, enc, table, rows[test], replace(cfg, views=1), augment, shard_id, num_shards,
                     on_progress, faces, stage, repeat=cfg.views, offset=(a[0] + len(a[2]), a[1]))
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]


def _encode_rows(store: FeatureStore, enc: LoadedEncoder, table: pd.DataFrame, rows: np.ndarray,
                 cfg: ExtractConfig, augment: AugmentConfig, shard_id: int, num_shards: int,
                 on_progress: Optional[ProgressFn], faces: Optional[FacesConfig] = None,
                 stage: Optional[Stage] = None, repeat: int = 1, offset: tuple[int, int] = (0, 0),
                 ) -> tuple[int, int, list[tuple[str, str]], list[str]]:
    """`_run_rows` for clips read at `cfg.views` views; `repeat` > 1 writes view 0 as each of `repeat` views.
    `offset`: (clips, images) done before, for the progress counts."""
    if len(rows) == 0:
        return 0, 0, [], []
    jpegs = cfg.jpeg_decode == "device" or (cfg.jpeg_decode == "auto" and enc.device.type == "cuda")
    dataset = ClipViews(table, rows, cfg, augment, enc.image_size, enc.mean, enc.std, faces, jpegs=jpegs)
    extracted = images = 0
    failures: list[tuple[str, str]] = []
    fallbacks: list[str] = []
    for loaded in _loader(dataset, cfg, enc.device):
        batch = loaded["items"]
        good = [b for b in batch if b["error"] is None]
        if good:  # uint8 [B, V, T, 3, S, S] on the device: the workers' pixels, the JPEG bytes decoded here
            pixels, errors = batch_pixels(good, loaded["pixels"], enc.device, dataset.test_tf, dataset.train_tf)
            for k, msg in errors.items():
                good[k]["error"] = msg
            good = [b for b in good if b["error"] is None]
        bad = [b for b in batch if b["error"] is not None]
        if bad:
            store.record_failures([b["row"] for b in bad], [b["error"] for b in bad], shard_id, num_shards)
            failures += [(str(table["clip_id"].iat[b["row"]]), b["error"]) for b in bad]
        if good:
            pixels = dataset.to_float(pixels)  # float32 [B, V, T, 3, S, S]
            b, v, t = pixels.shape[:3]
            feats = encode_views(enc, pixels)  # [B, V, T, D] float16
            if repeat > 1:  # view 0 in every view: [B, 1, T, D] -> [B, repeat, T, D]
                feats = np.repeat(feats, repeat, axis=1)
                good = [{**g, **{k: np.repeat(g[k], repeat, axis=0) for k in ("index", "boxes", "source")}}
                        for g in good]
            lost = _write_finite(store, table, good, feats, shard_id, num_shards)
            failures += lost
            extracted += b - len(lost)
            lost_ids = {clip for clip, _ in lost}
            fallbacks += [clip for clip in (str(table["clip_id"].iat[g["row"]]) for g in good if (g["source"] == CENTER).any())
                          if clip not in lost_ids]
            images += b * v * t
        done = offset[0] + extracted + len(failures)
        if on_progress:
            on_progress(done, offset[1] + images)
        if stage is not None:
            dt = max(time.perf_counter() - stage.t0, 1e-9)
            block_done = done // cfg.block_size > (done - len(batch)) // cfg.block_size or done == stage.total
            stage.update(done, {"clips/s": round(done / dt, 2), "frames/s": round((offset[1] + images) / dt, 1),
                                "failed": len(failures)}, log=block_done)
    return extracted, images, failures, fallbacks


def _write_finite(store: FeatureStore, table: pd.DataFrame, good: list[dict], feats: np.ndarray,
                  shard_id: int, num_shards: int) -> list[tuple[str, str]]:
    """Store the clips of `good` (feats [B, V, T, D] float16); a clip with NaN or inf features is recorded
    as a failure instead (it would train to NaN). Returns those failures."""
    finite = np.isfinite(feats).reshape(len(good), -1).all(axis=1)  # [B]
    lost = [g for g, ok in zip(good, finite) if not ok]
    if lost:
        store.record_failures([g["row"] for g in lost], NON_FINITE, shard_id, num_shards)
    kept = [g for g, ok in zip(good, finite) if ok]
    if kept:
        store.write_clips([g["row"] for g in kept], feats[finite], np.stack([g["index"] for g in kept]),
                          shard_id, num_shards, boxes=np.stack([g["boxes"] for g in kept]),
                          face_source=np.stack([g["source"] for g in kept]))
    return [(str(table["clip_id"].iat[g["row"]]), NON_FINITE) for g in lost]


def _maybe_export(cfg: ExtractConfig, coverage: dict[str, int]) -> Path:
    """For the hdf5 backend, export the staging Zarr once no clip is pending (any writer may do it)."""
    target = Path(cfg.store)
    if cfg.backend != "hdf5":
        return target
    if coverage.get("pending", 0) == 0:
        return export_hdf5(hdf5_staging_path(target), target)
    log.info("%d clips still pending in %s; the HDF5 file is written when all shards are done",
             coverage["pending"], hdf5_staging_path(target))
    return hdf5_staging_path(target)
