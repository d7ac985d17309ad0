"""A run folder, the one thing stage 2 hands from `train-head` to `evaluate`, `predict` and `sweep`.

Everything about a run on disk lives here: the folder's layout, the records written into it, its
checkpoints (saved and loaded through tgdfer.checkpoint, the file format), reading its settings
back, and the checks before a run is resumed. The trainer writes runs with these functions and
every reader loads them with these functions; none reads another's private helpers.

    runs/synth/fold1/            one run (fold_folder: <out>/fold<k>; replica_runs: fold<k>_seed<s>, seed<s>)
      config.json                CONFIG: run_record (head, train, encoder tables, the whole pipeline)
      metrics.csv                METRICS: one row per epoch (tgdfer.training.EpochRecord)
      final.json                 FINAL: the selected epoch's test scores
      last.safetensors           LAST: weights, optimiser, scheduler, RNG, history (resume point)
      best.safetensors           BEST: the selected epoch's weights (selection "val" / "test-best")
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from . import __version__
from .checkpoint import SUFFIX, CheckpointError, load_state, save_state
from .config import build, table_diff, to_dict
from .encoders import EncoderConfig
from .errors import ConfigError, RunFolderError, TgdferError, os_error
from .head import HeadConfig
from .limits import check_frame_count, load_json
from .tmpfiles import tmp_path
from .trainconfig import TrainConfig

log = logging.getLogger(__name__)

LAST, BEST = f"last{SUFFIX}", f"best{SUFFIX}"  # the checkpoints train-head writes in a run folder
CONFIG, METRICS, FINAL = "config.json", "metrics.csv", "final.json"


# -- the folders: one run per fold x seed ---------------------------------------------------------


@dataclass
class Replica:
    """One of the runs `train_replicas` trains together: a test fold, a seed and a run folder."""

    fold: Optional[int]  # test fold (None for train/test-split datasets)
    seed: int  # head init, data order, view choice (and the validation split)
    out: str  # this replica's run folder, identical in content to a single train() run

    @property
    def label(self) -> str:
        return f"fold {self.fold} seed {self.seed}" if self.fold is not None else f"seed {self.seed}"


def replica_runs(out: str | Path, folds: Sequence[Optional[int]], seeds: Sequence[int]) -> list[Replica]:
    """Replicas for every fold x seed, run folders under `out`: fold<k> (fold<k>_seed<s> with several
    seeds, seed<s> without folds; `out` itself for one replica without a fold)."""
    folds, seeds = list(folds) or [None], list(seeds)
    if not seeds:
        raise ConfigError("seeds", "give at least one seed")
    for name, values in (("folds", folds), ("seeds", seeds)):
        if len(set(values)) != len(values):
            raise ConfigError(name, f"{values} repeats a value")
    out = Path(out)
    if folds != [None]:
        out = fold_parent(out)
    reps = []
    for fold in folds:
        for seed in seeds:
            parts = ([f"fold{fold}"] if fold is not None else []) + ([f"seed{seed}"] if len(seeds) > 1 else [])
            reps.append(Replica(fold, seed, str(out / "_".join(parts)) if parts else str(out)))
    return reps


_FOLD_NAME = re.compile(r"fold\d+")


def fold_parent(out: str | Path) -> Path:
    """The folder that holds the fold<k> runs: `out` itself, or its parent when `out` is already named fold<j>."""
    out = Path(out)
    return out.parent if _FOLD_NAME.fullmatch(out.name) else out


def fold_folder(out: str | Path, fold: Optional[int]) -> Path:
    """Fold k's run folder under `out`: <out>/fold<k> (runs/x/fold1 + fold 1 -> runs/x/fold1, never .../fold1/fold1)."""
    return Path(out) if fold is None else fold_parent(out) / f"fold{fold}"


def plan_runs(cfg: TrainConfig, folds: Optional[Sequence[Optional[int]]] = None, seeds: Optional[Sequence[int]] = None,
              out: Optional[str | Path] = None) -> list[Replica]:
    """The runs of one `train-head`: every fold x seed under `out` (default cfg.out) when `folds` or
    `seeds` is given; else one run, in `out` itself when given, else in cfg.out's fold folder (fold_folder)."""
    if folds is None and seeds is None:
        return [Replica(cfg.fold, cfg.seed, str(out) if out is not None else str(fold_folder(cfg.out, cfg.fold)))]
    return replica_runs(out if out is not None else cfg.out, list(folds) if folds is not None else [cfg.fold],
                        list(seeds) if seeds is not None else [cfg.seed])


# -- checkpoints ----------------------------------------------------------------------------------


def save_checkpoint(path: Path, **state: Any) -> None:
    """A safetensors checkpoint (tgdfer.checkpoint), written atomically: a crash never leaves a torn file."""
    save_state(path, state)


def load_checkpoint(path: str | Path, map_location: Any = "cpu", tensors: bool = True) -> dict:
    """A checkpoint written by train-head; CheckpointError (naming the file) for anything else.

    `tensors=False`: the header only, tensors as None (checkpoint.load_state).
    """
    path = Path(path)
    ckpt = load_state(path, map_location, tensors)  # no unpickling: safetensors tensors + a JSON header
    if "head_state" not in ckpt or not isinstance(ckpt["head_state"], dict):
        raise CheckpointError(f"{path}: not a tgdfer checkpoint (no head weights)")
    check_header(ckpt, path)
    if ckpt.get("tgdfer_version") != __version__:
        log.warning("%s was written by tgdfer %s, this is %s", path, ckpt.get("tgdfer_version"), __version__)
    return ckpt


_HEADER_TYPES = {"epoch": int, "history": list, "best": (list, tuple), "head_args": dict, "config": dict,
                 "store_fingerprint": dict}  # what train-head writes; a file may say anything


def check_header(ckpt: dict, path: Path) -> None:
    """CheckpointError for a header value of the wrong type, or a size that is not a positive int within the
    limits (`frames = 1e8` would size the head's windows): checked before anything is built from it."""
    for key, kind in _HEADER_TYPES.items():
        value = ckpt.get(key)
        if key in ckpt and (not isinstance(value, kind) or isinstance(value, bool)):
            raise CheckpointError(f"{path}: the header's {key} is {value!r:.60}, not {_kind_name(kind)}")
    if ckpt.get("epoch", 0) < 0:
        raise CheckpointError(f"{path}: the header's epoch is {ckpt['epoch']}, below 0")
    if any(not isinstance(r, dict) for r in ckpt.get("history", [])):
        raise CheckpointError(f"{path}: the header's history holds something other than epoch records")
    sizes = {f"head_args.{k}": v for k, v in ckpt.get("head_args", {}).items() if k in ("dim", "frames", "classes")}
    sampling = ckpt.get("store_fingerprint", {}).get("sampling")
    if isinstance(sampling, dict) and "frames" in sampling:
        sizes["store_fingerprint.sampling.frames"] = sampling["frames"]
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointError(f"{path}: the header's {key} is {value!r:.60}, not a positive integer")
        if key.endswith("frames"):
            check_frame_count(f"{path}: the header's {key}", value)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys({int: "an integer", list: "a list", tuple: "a list", dict: "a table"}[k]
                                     for k in kinds))


_KEYS = ("config", "head_args", "store_fingerprint", "head_state")


def resolve_checkpoint(model: str | Path) -> Path:
    """MODEL -> checkpoint file: a run folder's reported checkpoint, or the file itself."""
    model = Path(model)
    if model.is_dir():
        if not (model / CONFIG).is_file():
            raise TgdferError(f"{model}: not a run folder (no config.json); pass a run written by "
                              "`tgdfer train-head` or one of its .safetensors checkpoints")
        why = unfinished(model)
        if why is not None:  # predicting with it is allowed; a reader of the output should know
            log.warning("%s; predicting with the checkpoint it has", why)
        return run_checkpoint(model)
    if not model.is_file():
        raise TgdferError(f"{model}: no such run folder or checkpoint")
    return model


def read_checkpoint(path: Path) -> dict:
    """The checkpoint, checked to be a TG-DFER head written by train-head (cached or end-to-end)."""
    ckpt = load_checkpoint(path)  # TgdferError for unreadable or non-tgdfer files
    missing = [k for k in _KEYS if k not in ckpt]
    if missing:
        raise TgdferError(f"{path}: not a TG-DFER head checkpoint of this tgdfer (it lacks {', '.join(missing)}; "
                          f"written by tgdfer {ckpt.get('tgdfer_version', '?')}, this is {__version__})")
    if ckpt.get("mode", "cached") not in ("cached", "end-to-end"):
        raise TgdferError(f"{path}: a {ckpt['mode']!r} checkpoint; predict takes heads trained by train-head "
                          "(mode 'cached' or 'end-to-end')")
    for part in ("encoder", "preprocessing", "sampling"):
        if part not in ckpt["store_fingerprint"]:
            raise TgdferError(f"{path}: its store fingerprint has no {part!r} record, so the image encoder and "
                              "preprocessing it was trained with cannot be rebuilt")
    return ckpt


# -- settings: config.json ------------------------------------------------------------------------


def load_run_config(run: str | Path) -> tuple[HeadConfig, TrainConfig, Optional[EncoderConfig]]:
    """The head, train and (when recorded) encoder configs a run was made with (its config.json)."""
    path = Path(run) / CONFIG
    if not Path(run).exists():
        raise TgdferError(f"{run}: no such run folder")
    if not path.is_file():
        inner = sorted(p.parent.name for p in Path(run).glob(f"*/{CONFIG}")) if Path(run).is_dir() else []
        hint = (f"; it holds the run folders {', '.join(inner[:5])}{' ...' if len(inner) > 5 else ''}: pass them "
                f"({Path(run) / '*'})" if inner else "; runs are written by `tgdfer train-head`")
        raise TgdferError(f"{run}: not a run folder (no config.json){hint}")
    try:
        record = load_json(path.read_bytes(), str(path))  # within the JSON caps
    except OSError as e:
        raise TgdferError(f"{path}: cannot read the run's settings ({e})") from e
    if not isinstance(record, dict):
        raise TgdferError(f"{path}: the run's settings are not a JSON object")
    if isinstance(record.get("encoder"), dict):  # tgdfer <= 0.2 recorded trust_weights; a run cannot vouch for files
        record["encoder"].pop("trust_weights", None)
    encoder = build(EncoderConfig, record["encoder"], "encoder") if "encoder" in record else None
    return build(HeadConfig, record["head"], "head"), build(TrainConfig, record["train"], "train"), encoder


def unfinished(run: str | Path) -> Optional[str]:
    """Why a run folder's training has not finished (no final.json: stopped, interrupted or still running),
    with the epoch its last checkpoint holds; None when it finished."""
    run = Path(run)
    _, cfg, _ = load_run_config(run)  # "no such run folder", "not a run folder" first
    if (run / FINAL).is_file() or not (run / LAST).is_file():  # no checkpoint (or tgdfer 0.1's): loading says so
        return None
    try:
        epoch = load_checkpoint(run / LAST, tensors=False).get("epoch", "?")
    except TgdferError:
        epoch = "?"
    return (f"{run}: training stopped at epoch {epoch} of {cfg.epochs} (no final.json: interrupted, failed or still "
            "running); `tgdfer train-head --resume` with its settings finishes it")


def run_checkpoint(run: str | Path) -> Path:
    """The checkpoint a run reports: the best one when a selection rule picked an epoch, else the last.

    A run of tgdfer 0.1 (`last.pt`/`best.pt` pickles) gives that file, which loading then refuses
    with how to convert it.
    """
    _, cfg, _ = load_run_config(run)
    path = Path(run) / (LAST if cfg.selection == "final" else BEST)
    legacy = path.with_suffix(".pt")
    return legacy if not path.exists() and legacy.exists() else path


def run_record(head_cfg: HeadConfig, cfg: TrainConfig, config_record: Optional[dict],
               encoder: Optional[EncoderConfig]) -> dict:
    """What a run folder's config.json holds: head and train tables, the encoder, the whole pipeline."""
    record = {"head": to_dict(head_cfg), "train": to_dict(cfg), **_replica_record(config_record, cfg)}
    if encoder is not None:
        record["encoder"] = to_dict(encoder)
    return json.loads(json.dumps(record))  # tuples as lists, as config.json reads back


def _replica_record(config_record: Optional[dict], cfg: TrainConfig) -> dict:
    """config_record with a recorded pipeline's [train] fold, seed and out set to this replica's."""
    record = json.loads(json.dumps(config_record or {}))  # deep copy
    train_table = record.get("pipeline", {}).get("train")
    if isinstance(train_table, dict):
        train_table.update(fold=cfg.fold, seed=cfg.seed, out=cfg.out)
    return record


def resumed_record(out: Path, record: dict) -> dict:
    """The record in out/config.json (as the run was started) with `train.epochs` from `record`."""
    try:
        before = load_json((out / CONFIG).read_bytes(), str(out / CONFIG))
    except (OSError, TgdferError):
        return record
    if not isinstance(before, dict):
        return record
    for table in (before.get("train"), before.get("pipeline", {}).get("train")):
        if isinstance(table, dict):
            table["epochs"] = record["train"]["epochs"]
    return before


# -- resuming -------------------------------------------------------------------------------------


# Fields of a run's record that cannot change its result: where it runs, how fast, where files go.
# `train.epochs` may grow on resume (see check_resume); the store is compared by fingerprint, not path.
RESULT_NEUTRAL = frozenset({"train.device", "train.decode_workers", "train.grad_checkpointing", "train.out",
                            "train.store", "train.epochs", "train.tensorboard", "train.compile",
                            "encoder.cache_dir"})


def content_diff(before: Optional[dict], now: Optional[dict]) -> list[str]:
    """What changed between two `FeatureStore.content_hash()` records, in words (parts either lacks are skipped)."""
    if not isinstance(before, dict) or not isinstance(now, dict):
        return []
    out = []
    if before.get("clips") and now.get("clips") and before["clips"] != now["clips"]:
        out.append("the clips' features (per-clip checksums or done flags)")
    if before.get("annotations") and now.get("annotations"):  # ids, labels, folds, splits: not paths (a moved dataset)
        if before["annotations"] != now["annotations"]:
            out.append("the clip table's labels, folds, splits or clip ids")
    elif before.get("clip_table") and now.get("clip_table") and before["clip_table"] != now["clip_table"]:
        out.append("the clip table")  # a checkpoint from before the annotations part: the file's bytes
    then, text = before.get("text") or {}, now.get("text") or {}
    out += [f"text set {name!r}" for name in sorted(set(then) | set(text)) if then.get(name) != text.get(name)]
    return out


def check_checkpoint_config(run: str | Path, record: Optional[dict], ckpt: dict, checkpoint: str | Path) -> None:
    """TgdferError when the run's config.json (`record`) and its checkpoint's own record of the
    settings disagree (head and train less RESULT_NEUTRAL): a folder mixed from two runs, e.g. a
    fold-2 checkpoint copied beside fold 1's config.json, would be scored (or resumed) as fold 1."""
    inner = ckpt.get("config")
    if not isinstance(record, dict) or not isinstance(inner, dict):
        return
    sections = ("head", "train")  # not [encoder]: its weights path is the user's to point at local files
    diff = table_diff({k: inner.get(k) for k in sections}, {k: record.get(k) for k in sections}, RESULT_NEUTRAL)
    if diff:
        shown = "; ".join(f"{k}: {a!r} in the checkpoint, {b!r} in config.json" for k, a, b in diff)
        raise TgdferError(f"{run}: {checkpoint} was not trained with the settings {Path(run) / CONFIG} records "
                          f"({shown}): a run folder mixed from two runs? Keep each run's files together")


def check_resume(out: str | Path, record: dict, fingerprint: dict, content: Optional[dict] = None,
                 store: str | Path = "the store") -> None:
    """TgdferError naming every setting of `record` that differs from the run recorded in `out`.

    Compared: the head, train and encoder tables (less RESULT_NEUTRAL), the store's
    fingerprint against the one the last checkpoint was trained on, and the store's content
    (`content`, FeatureStore.content_hash) against the one recorded when the run started. `train.epochs` may be raised
    (the MultiStepLR milestones are absolute epochs, so the added epochs run at the rate the
    schedule gives them) but not set below the epochs already trained.
    """
    out = Path(out)
    path = out / LAST
    if not path.exists():
        return  # nothing trained yet: a fresh start in this folder
    try:
        before = load_json((out / CONFIG).read_bytes(), str(out / CONFIG))  # within the JSON caps
    except FileNotFoundError:
        before = None
    except OSError as e:
        raise TgdferError(f"{out / CONFIG}: cannot read the run's recorded settings ({e})") from e
    ckpt = load_checkpoint(path, tensors=False)  # epoch and fingerprint; the weights are read once, later
    check_checkpoint_config(out, before, ckpt, path)
    if not isinstance(before, dict):
        before = ckpt.get("config") or {}
    sections = ("head", "train", "encoder")
    diff = table_diff({k: before.get(k) for k in sections}, {k: record.get(k) for k in sections}, RESULT_NEUTRAL)
    if ckpt.get("store_fingerprint") is not None and ckpt["store_fingerprint"] != fingerprint:
        diff.append(("store fingerprint", "the store it was trained on", "another store (other features)"))
    done, epochs = int(ckpt["epoch"]), record.get("train", {}).get("epochs", 0)
    if epochs < done:
        diff.append(("train.epochs", f"{done} already trained", epochs))
    if diff:
        shown = "; ".join(f"{k}: {a!r} then, {b!r} now" for k, a, b in diff)
        raise RunFolderError(out, f": cannot resume with other settings ({shown})", "resume with the run's own "
                             f"settings (they are in {out / CONFIG}) or train into another folder with {{out}}")
    changed = content_diff(ckpt.get("store_content"), content)
    if changed:
        raise RunFolderError(out, f": cannot resume: {store} changed since the run started ({', '.join(changed)} "
                             "differ)", "resume on the store as it was, or train into another folder with {out}")


# -- records --------------------------------------------------------------------------------------


def write_text(path: Path, text: str) -> None:
    """Write a run file atomically (temporary file, then rename); a refusal is one clear line naming it."""
    tmp = tmp_path(path)  # removes a killed write's temporary file too
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise os_error(path, e, "write") from e
