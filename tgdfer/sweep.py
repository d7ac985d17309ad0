"""`tgdfer sweep` and `tgdfer report`: grids or lists of config points (the paper's ablations), each on every fold.

A sweep file (`pipelines/sweeps/*.toml`) names a base pipeline and the points to run:

    [sweep]
    base = "pipelines/dfew.toml"          # the pipeline every point starts from (path from the working folder)
    out = "runs/sweeps/table4_window"     # default: runs/sweeps/<file stem>
    folds = "1-5"                         # or [1, 2, 3, 4, 5]; default: the base's [train] fold
    seeds = [0]                           # default: the base's [train] seed
    set = ["train.epochs=50"]             # overrides applied to every point (same syntax as --set)
    title = "Table 4: ..."                # what is compared; the table and plot add the folds, seeds, epochs run
    plot = "head.window"                  # x axis of the plot (default: the first swept field)
    labels = { "head.stride" = { none = "X" } }   # how values are shown in the table ("X": the paper's mark)

    [grid]                                # every combination, the first field varying slowest ...
    "head.window" = [2, 4, 8]
    "head.stride" = [1, 2]

    [[points]]                            # ... or a list of points (not both), each with an optional name
    name = "a"
    "head.fine_depth" = 0

Fields are dotted pipeline fields (`head.window`, `train.lr`, ...); TOML has no null, so `"none"`
stands for None in an optional field (`head.stride = "none"`: non-overlapping windows), as in
every pipeline file (tgdfer.config). Every point is built through the pipeline's own config checks and checked against its
store (frames, prompt sets, folds) before anything runs; a bad point stops the sweep there,
naming the point and the field. A sweep extracts nothing, so a point (or the sweep's `set`) that gives a
setting the store fixes ([extract], [augment], [faces]: tgdfer.fixedsettings) another value than its store
was extracted with is such a bad point: its runs would train on the same features as the others.

Each point is one `train_replicas` call (all folds x seeds as one batched head); points run one
after another, or in `workers` processes sharing the device. A point whose runs all have
final.json is skipped, so re-running a sweep resumes it (a half-trained run continues from its
last checkpoint). A point that fails is recorded with its error and the others go on. Points split
across machines by `shard_id`/`num_shards` (point i goes to shard i mod K; defaults from torchrun
or Slurm as for extraction), all writing into one `out` folder; `report(out)` rebuilds the table
from whatever has finished. A study that runs the same sweep once per dataset (one folder per study
fold) or keeps only a per-run CSV is reported by tgdfer.studyreport with the same table.

Layout of `out`:

    points.json                 the sweep: fields, points, folds, seeds, labels
    <point>/point.json          the point's values, resolved pipeline, status, error, seconds
    <point>/fold<k>[_seed<s>]/  a normal train-head run folder (evaluate works on it)
    results.csv, results.md     the tidy table: one row per point x fold x seed, plus each point's mean
    results.png                 UAR / WAR of every run, and each point's mean ± std, against the plotted field
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from itertools import product
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from .config import load_toml, table_diff, toml_value
from .errors import ConfigError, TgdferError
from .limits import load_json
from .tmpfiles import tmp_path

log = logging.getLogger(__name__)

SWEEP_KEYS = ("base", "out", "folds", "seeds", "set", "title", "plot", "labels")
PER_REPLICA = {"train.fold": "folds", "train.seed": "seeds", "train.out": "out"}  # set by the sweep, not swept
METRICS = ("UAR", "WAR")  # what a sweep's runs record (final.json) and its plot shows
DIGITS = {"UAR": 2, "WAR": 2, "AUROC": 3, "AUROC sim": 3}  # metrics a table can compare: their decimals


class SweepError(ConfigError):
    """A sweep file, or one of its points, is wrong: the message names the file, the point and the field."""

    def __init__(self, source: str, point: Optional[str], field: str, message: str):
        self.source, self.point = source, point
        super().__init__(field, message)
        where = f"{source}: " + (f"point {point!r}: " if point is not None else "")
        self.args = (f"{where}{field}: {message}",)


@dataclass
class Point:
    name: str  # folder name under the sweep's out and row label of the table
    values: dict[str, Any]  # dotted field -> value (None for "none" in an optional field)


@dataclass
class SweepConfig:
    source: str  # the sweep file
    base: str  # pipeline file every point starts from
    out: str  # sweep folder
    folds: list[Optional[int]]  # test folds ([None]: a train/test-split dataset)
    seeds: list[int]
    points: list[Point]
    fields: list[str]  # swept fields, in order
    fixed: list[str] = field(default_factory=list)  # overrides applied to every point
    title: str = ""
    plot: Optional[str] = None  # field on the plot's x axis
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # field -> shown value -> label
    profile: Optional[str] = None  # --profile: under the base file (else the base file's own `profile = ...`)

    def meta(self) -> dict:
        """What points.json holds (everything `report` needs)."""
        return {"source": self.source, "base": self.base, "title": self.title, "folds": self.folds,
                "seeds": self.seeds, "fields": self.fields, "fixed": self.fixed, "plot": self.plot,
                "labels": self.labels, "profile": self.profile,
                "points": [{"name": p.name, "values": p.values} for p in self.points]}


# -- reading a sweep file ------------------------------------------------------------------------------


def load_sweep(path: str | Path, *, out: Optional[str] = None, folds: Optional[Sequence[Optional[int]]] = None,
               seeds: Optional[Sequence[int]] = None, overrides: Sequence[str] = (),
               profile: Optional[str] = None) -> SweepConfig:
    """Parse a sweep file into its points (not yet checked against the pipeline: see `plan_sweep`).

    `profile` ("paper", "recommended" or a TOML file) lies under every point's base file, as
    `--profile` does for train-head; None keeps the base file's own `profile = ...`.
    """
    src = str(path)
    raw = load_toml(path)
    unknown = sorted(set(raw) - {"sweep", "grid", "points"})
    if unknown:
        raise SweepError(src, None, unknown[0], "unknown table; a sweep file has [sweep], and [grid] or [[points]]")
    head = raw.get("sweep", {})
    if not isinstance(head, dict):
        raise SweepError(src, None, "sweep", "must be a table ([sweep])")
    bad = sorted(set(head) - set(SWEEP_KEYS))
    if bad:
        raise SweepError(src, None, f"sweep.{bad[0]}", f"unknown field; known fields: {', '.join(SWEEP_KEYS)}")
    base = head.get("base")
    if not isinstance(base, str) or not base:
        raise SweepError(src, None, "sweep.base", "name the pipeline file the points start from, "
                                                  "e.g. base = \"pipelines/dfew.toml\"")
    if not Path(base).is_file():
        raise SweepError(src, None, "sweep.base", f"{base} does not exist (paths are read from the working folder)")
    fixed = head.get("set", [])
    if not isinstance(fixed, list) or not all(isinstance(s, str) for s in fixed):
        raise SweepError(src, None, "sweep.set", 'must be a list of overrides like ["train.epochs=50"]')
    points = _points(src, raw)
    fields_ = list(dict.fromkeys(k for p in points for k in p.values))
    labels = _labels(src, head.get("labels", {}))
    plot = head.get("plot")
    if plot is not None and plot not in fields_:
        raise SweepError(src, None, "sweep.plot", f"{plot!r} is not a swept field ({', '.join(fields_)})")
    return SweepConfig(
        source=src, base=base, out=out or head.get("out") or f"runs/sweeps/{Path(src).stem}",
        folds=list(folds) if folds is not None else _int_list(src, "sweep.folds", head.get("folds"), none_ok=True),
        seeds=list(seeds) if seeds is not None else _int_list(src, "sweep.seeds", head.get("seeds"), none_ok=False),
        points=points, fields=fields_, fixed=[*fixed, *overrides], title=str(head.get("title", Path(src).stem)),
        plot=plot, labels=labels, profile=profile)


def _int_list(src: str, name: str, value: Any, none_ok: bool) -> list:
    """folds/seeds as given: a list of ints, "1-5" / "1,3,5", one int, or absent ([None]: the base's)."""
    from .training import parse_int_list

    if value is None:
        return [None]
    if isinstance(value, str):
        try:
            return parse_int_list(value, name)
        except ConfigError as e:
            raise SweepError(src, None, name, str(e).split(": ", 1)[-1]) from None
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise SweepError(src, None, name,
                         f"must be a non-empty list of integers or a range like \"1-5\", got {value!r}")
    if len(set(values)) != len(values):
        raise SweepError(src, None, name, f"{values} repeats a value")
    return list(values)


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    """{"head": {"window": 4}} and {"head.window": 4} -> {"head.window": 4}."""
    out = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _points(src: str, raw: dict) -> list[Point]:
    grid, listed = raw.get("grid"), raw.get("points")
    if grid is not None and listed is not None:
        raise SweepError(src, None, "grid", "give either [grid] or [[points]], not both")
    if grid is None and listed is None:
        raise SweepError(src, None, "grid", "the sweep has no points: add a [grid] table or [[points]] entries")
    if grid is not None:
        if not isinstance(grid, dict):
            raise SweepError(src, None, "grid", "must be a table of field = [values]")
        axes = _flatten(grid)
        if not axes:
            raise SweepError(src, None, "grid", "is empty: give at least one field = [values]")
        for k, v in axes.items():
            if not isinstance(v, list) or not v:
                raise SweepError(src, None, f"grid.{k}", f"must be a non-empty list of values, got {v!r}")
        entries = [dict(zip(axes, combo)) for combo in product(*axes.values())]
    else:
        if not isinstance(listed, list) or not listed:
            raise SweepError(src, None, "points", "is empty: give at least one [[points]] entry")
        entries = []
        for i, entry in enumerate(listed):
            if not isinstance(entry, dict):
                raise SweepError(src, None, f"points[{i}]", "must be a table of field = value")
            entries.append(entry)
    points = []
    for i, entry in enumerate(entries):
        entry = dict(entry)
        name = entry.pop("name", None)
        values = _flatten(entry)
        label = name if isinstance(name, str) else f"#{i + 1}"
        if name is not None and not _folder_name(name):
            raise SweepError(src, label, "name", f"must be a folder name, got {name!r}")
        if not values:
            raise SweepError(src, label, "points", "changes no field")
        for k in values:
            if k in PER_REPLICA:
                raise SweepError(src, label, k, f"is set by the sweep; use [sweep] {PER_REPLICA[k]} instead")
            if k.count(".") < 1:
                raise SweepError(src, label, k, "name a pipeline field as section.field, e.g. head.window")
        points.append(Point(name=name or "", values=values))
    _name_points(src, points)
    return points


def _name_points(src: str, points: list[Point]) -> None:
    """Unnamed points are named after their values: "window=4,stride=1"; names and values must be unique."""
    short = _short_names([k for p in points for k in p.values])
    for p in points:
        if not p.name:
            p.name = ",".join(f"{short[k]}={_show(v)}" for k, v in p.values.items()).replace("/", "-").replace(" ", "-")
    seen: dict[str, Point] = {}
    for p in points:
        if p.name in seen:
            raise SweepError(src, p.name, "name", "two points have this name (or the same values)")
        seen[p.name] = p
    same = [(a.name, b.name) for i, a in enumerate(points) for b in points[i + 1:] if a.values == b.values]
    if same:
        raise SweepError(src, same[0][1], "points", f"has the same values as point {same[0][0]!r}")


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """head.window -> window, unless two fields end alike (then the dotted name)."""
    keys = list(dict.fromkeys(keys))
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _show(value: Any) -> str:
    """A value as the key of `labels` and in point names: None -> "none", True -> "true"."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _labels(src: str, labels: Any) -> dict[str, dict[str, str]]:
    if not isinstance(labels, dict):
        raise SweepError(src, None, "sweep.labels", 'must be a table like { "head.stride" = { none = "X" } }')
    out: dict[str, dict[str, str]] = {}

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and all(not isinstance(x, dict) for x in v.values()) and "." in key:
                out[key] = {str(a): str(b) for a, b in v.items()}
            elif isinstance(v, dict):
                walk(v, key)
            else:
                raise SweepError(src, None, f"sweep.labels.{key}", "must map values to labels, e.g. { none = \"X\" }")

    walk(labels, "")
    return out


# -- checking every point before anything runs ---------------------------------------------------------


def point_pipeline(sweep: SweepConfig, point: Point):
    """The point's Pipeline: the base file, the sweep's fixed overrides, then the point's values
    (`"none"` in an optional field is None, as everywhere in tgdfer.config)."""
    from .pipeline import load_pipeline

    sets = [f"{k}={toml_value(v)}" for k, v in point.values.items()]
    try:
        return load_pipeline(sweep.base, [*sweep.fixed, *sets], profile=sweep.profile)
    except ConfigError as e:
        raise SweepError(sweep.source, point.name, e.field, str(e).split(": ", 1)[-1]) from None


@dataclass
class PlannedPoint:
    point: Point
    pipe: Any  # tgdfer.pipeline.Pipeline
    folder: Path  # <out>/<point name>
    replicas: list  # tgdfer.run.Replica, one per fold x seed, run folders under `folder`
    done: bool  # every replica has final.json: skipped
    shard: int  # index in the sweep's point list (point i runs on shard i mod K)
    # {section.field: value}: the store's value of each setting it fixes that the base file gives otherwise
    # (tgdfer.fixedsettings): what the point trained with, as its runs' config.json records
    store_values: dict = field(default_factory=dict)


def plan_sweep(sweep: SweepConfig) -> list[PlannedPoint]:
    """Every point built and checked (config, store, folds, settings of earlier runs in `out`)."""
    from .store import FeatureStore
    from .labels import check_same_classes, stored_classes
    from .run import replica_runs
    from .devicedata import check_fold
    from .model import check_head
    from .fixedsettings import overridden

    pipes = [point_pipeline(sweep, p) for p in sweep.points]
    fixed = overridden(sweep.fixed)  # the sweep's `set` and --set: as explicit as a point's own values
    if sweep.folds == [None]:  # not given: the base pipeline's (points cannot change train.fold)
        sweep.folds = [pipes[0].train.fold]
    if sweep.seeds == [None]:
        sweep.seeds = [pipes[0].train.seed]
    plans = []
    for i, (point, pipe) in enumerate(zip(sweep.points, pipes)):
        try:
            with FeatureStore.open(pipe.train.store) as store:
                check_same_classes(stored_classes(store.fingerprint), pipe.classes.class_set(), str(store.path))
                check_head(pipe.head, store)
                for f in sweep.folds:
                    check_fold(store, f)
                fingerprint = store.fingerprint
        except ConfigError as e:
            field_ = e.field if "." in e.field else f"train.{e.field}"
            raise SweepError(sweep.source, point.name, field_, str(e).split(": ", 1)[-1]) from None
        except TgdferError as e:
            raise SweepError(sweep.source, point.name, "train.store", str(e)) from None
        store_values = _check_fixed_settings(sweep, point, pipe, fingerprint, fixed | set(point.values))
        folder = Path(sweep.out) / point.name
        _check_earlier_run(sweep, point, pipe, folder)
        replicas = replica_runs(folder, [f for f in sweep.folds if f is not None], sweep.seeds)
        done = all((Path(r.out) / "final.json").is_file() for r in replicas)
        plans.append(PlannedPoint(point=point, pipe=pipe, folder=folder, replicas=replicas, done=done, shard=i,
                                  store_values=store_values))
    return plans


def _check_fixed_settings(sweep: SweepConfig, point: Point, pipe, fingerprint: dict, explicit: set[str]) -> dict:
    """SweepError when the sweep sets a store-fixed setting ([extract], [augment], [faces]: tgdfer.fixedsettings)
    to another value than the point's store was extracted with: a sweep never extracts, so its runs would
    train on the same features and compare nothing. Such a point needs a store of its own (train.store).
    Else {section.field: the store's value} of the settings only the base file gives otherwise."""
    from .fixedsettings import store_differences, touches

    differences = store_differences(pipe.to_dict(), fingerprint)
    bad = [d for d in differences if touches(d[0], explicit)]
    if bad:
        name, now, stored = bad[0]
        raise SweepError(sweep.source, point.name, name, f"the sweep sets {now!r}, but {pipe.train.store} was "
                         f"extracted with {stored!r}: a sweep extracts nothing and trains on the store's features, "
                         f"so this point's runs would be those of {stored!r}; give the point a store extracted with "
                         f"{now!r} (tgdfer extract with it and another extract.store; train.store = that store)")
    return {name: stored for name, _, stored in differences}


def _resolved(pipe) -> dict:
    """The pipeline as a point records it: without the per-replica fold, seed and run folder."""
    d = pipe.to_dict()
    for k in ("fold", "seed", "out"):
        d["train"].pop(k, None)
    return d


def _check_earlier_run(sweep: SweepConfig, point: Point, pipe, folder: Path) -> None:
    """SweepError when `folder` holds this point run with other settings.

    Fields present on one side only (added or removed by another tgdfer version) do not count.
    """
    record = read_json_or_none(folder / "point.json")
    if not record or not isinstance(record.get("pipeline"), dict):
        return
    before, now = record["pipeline"], json.loads(json.dumps(_resolved(pipe)))
    diff = table_diff(before, now)
    if diff:
        shown = "; ".join(f"{k}: {a!r} then, {b!r} now" for k, a, b in diff[:3])
        raise SweepError(sweep.source, point.name, diff[0][0], f"{folder} was run with other settings ({shown}); "
                         "choose another --out or delete that folder")


# -- running ----------------------------------------------------------------------------------------


@dataclass
class PointOutcome:
    name: str
    status: str  # done | failed | skipped
    seconds: float = 0.0
    error: Optional[str] = None


# on_point(point, status, outcome): "queued" (each point of this shard, first), then "skipped", or "start" and
# "done" | "failed" (with the outcome)
PointFn = Callable[[str, str, Optional[PointOutcome]], None]


def select_points(sweep: SweepConfig, names: Optional[Sequence[str]]) -> SweepConfig:
    """`sweep` with only the points named (all for None), in the file's order; an unknown name is a ConfigError.

    Only the points selected are checked and run (another point may need a store not made yet).
    """
    if names is None:
        return sweep
    known = [p.name for p in sweep.points]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the points are: {', '.join(known)}"
            raise ConfigError("--point", f"no point named {name!r}{hint}")
    wanted = set(names)
    return replace(sweep, points=[p for p in sweep.points if p.name in wanted])


def run_sweep(path: str | Path, *, out: Optional[str] = None, folds: Optional[Sequence[Optional[int]]] = None,
              seeds: Optional[Sequence[int]] = None, overrides: Sequence[str] = (), workers: int = 1,
              shard_id: Optional[int] = None, num_shards: Optional[int] = None,
              on_point: Optional[PointFn] = None,
              on_epoch: Optional[Callable[[str, int, list], None]] = None,
              points: Optional[Sequence[str]] = None, profile: Optional[str] = None) -> pd.DataFrame:
    """Run the sweep file at `path` (every point of this shard not finished yet); returns the results frame.

    `overrides` (`section.field=value`) apply to every point; `folds`, `seeds`, `out` replace the
    file's. `points` names the points to run (default: all); the others stay as they are in `out`.
    `profile` lies under the base file (see `load_sweep`).
    `workers` > 1 runs points in that many processes (sharing the device); `on_epoch(point,
    epoch, records)` is called only for points run in this process. The returned frame, also
    written to out/results.{csv,md,png}, covers every finished run in `out` (other shards' too).
    """
    from .extraction import default_shard

    sweep = load_sweep(path, out=out, folds=folds, seeds=seeds, overrides=overrides, profile=profile)
    plans = plan_sweep(select_points(sweep, points))
    env_id, env_n = default_shard()
    shard_id, num_shards = (env_id if shard_id is None else shard_id), (env_n if num_shards is None else num_shards)
    if not 0 <= shard_id < num_shards:
        raise ConfigError("--shard-id", f"must be in 0..{num_shards - 1}, got {shard_id}")
    if workers < 1:
        raise ConfigError("--workers", f"must be >= 1, got {workers}")
    outdir = Path(sweep.out)
    outdir.mkdir(parents=True, exist_ok=True)
    _write_json(outdir / "points.json", sweep.meta())
    mine = [p for p in plans if p.shard % num_shards == shard_id]
    for p in mine:
        _notify(on_point, p.point.name, "queued", None)
    todo = []
    for p in mine:
        if p.done:
            _notify(on_point, p.point.name, "skipped", PointOutcome(p.point.name, "skipped"))
        else:
            todo.append(p)
    # After each point but the last, the report so far (the last one's is the report returned below).
    if workers == 1 or len(todo) <= 1:
        for i, p in enumerate(todo, 1):
            _notify(on_point, p.point.name, "start", None)
            epoch_fn = (lambda e, recs, name=p.point.name: on_epoch(name, e, recs)) if on_epoch else None
            outcome = run_point(sweep.source, p, on_epoch=epoch_fn)
            _notify(on_point, p.point.name, outcome.status, outcome)
            if i < len(todo):
                _safe_report(outdir)
    else:
        import torch

        threads = max(1, torch.get_num_threads() // workers)  # this process's threads (tgdfer.threads) split among workers
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {}
            for p in todo:
                _notify(on_point, p.point.name, "start", None)
                futures[pool.submit(run_point, sweep.source, p)] = p
            for i, fut in enumerate(as_completed(futures), 1):
                name = futures[fut].point.name
                try:
                    outcome = fut.result()
                except Exception as e:  # the worker process itself died (killed, out of memory)
                    outcome = PointOutcome(name, "failed", error=f"worker process failed: {type(e).__name__}: {e}")
                    _record_point(futures[fut], outcome)
                _notify(on_point, name, outcome.status, outcome)
                if i < len(todo):
                    _safe_report(outdir)
    return report(outdir)[0]


def _notify(fn: Optional[PointFn], name: str, status: str, outcome: Optional[PointOutcome]) -> None:
    if fn is not None:
        fn(name, status, outcome)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def run_point(source: str, plan: PlannedPoint, on_epoch: Optional[Callable] = None) -> PointOutcome:
    """Train every replica of one point as one batched head (end-to-end points: one replica after
    another, the image encoder is not batched); any error is recorded, never raised."""
    from .training import train_replicas

    t0 = time.perf_counter()
    pipe, point = plan.pipe, plan.point
    record = {"pipeline": pipe.to_dict(), "sweep": {"source": source, "point": point.name, "values": point.values}}
    _record_point(plan, PointOutcome(point.name, "running"))
    try:
        groups = [[r] for r in plan.replicas] if pipe.train.end_to_end else [plan.replicas]
        for replicas in groups:
            train_replicas(pipe.head, pipe.train, replicas, resume=True, config_record=record,
                           on_epoch=on_epoch, encoder=pipe.encoder, classes=pipe.classes.class_set())
        outcome = PointOutcome(point.name, "done", time.perf_counter() - t0)
    except Exception as e:  # one failing point must not stop the others
        outcome = PointOutcome(point.name, "failed", time.perf_counter() - t0, f"{type(e).__name__}: {e}")
        (plan.folder / "error.txt").write_text(traceback.format_exc())
        log.error("point %s failed: %s", point.name, outcome.error)
    _record_point(plan, outcome)
    return outcome


def _record_point(plan: PlannedPoint, outcome: PointOutcome) -> None:
    plan.folder.mkdir(parents=True, exist_ok=True)
    _write_json(plan.folder / "point.json", {"name": plan.point.name, "values": plan.point.values,
                                        "pipeline": _resolved(plan.pipe), "store_values": plan.store_values,
                                        "status": outcome.status,
                                        "error": outcome.error, "seconds": round(outcome.seconds, 2)})


def _write_json(path: Path, obj: Any) -> None:
    tmp = tmp_path(path)  # removes a killed write's temporary file too
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


# -- results ------------------------------------------------------------------------------------------


def _run_folder(out: Path, point: str, fold: Optional[int], seed: int, seeds: Sequence[int]) -> Path:
    from .run import replica_runs

    return Path(replica_runs(out / point, [fold] if fold is not None else [], seeds)[list(seeds).index(seed)].out)


def results_frame(out: str | Path) -> pd.DataFrame:
    """The tidy results of the sweep in `out`: a row per point x fold x seed, then a "mean" row per point.

    Columns: point, the swept fields (as labelled), fold, seed, epoch, UAR, WAR (percent, 2
    decimals), status (done | failed | pending | running), error. The mean row averages the point's
    finished runs; its status says how many of them there are ("5/5 done").
    """
    out = Path(out)
    meta = read_sweep_meta(out)
    short = _short_names(meta["fields"])
    seeds = meta["seeds"]
    rows = []
    for p in meta["points"]:
        info = read_json_or_none(out / p["name"] / "point.json") or {}
        shown = {short[k]: _label(meta, k, _point_value(p, info, k)) for k in meta["fields"]}
        runs = []
        for fold in meta["folds"] or [None]:
            for seed in seeds:
                final = read_json_or_none(_run_folder(out, p["name"], fold, seed, seeds) / "final.json")
                status = "done" if final else (info.get("status") if info.get("status") in ("failed", "running")
                                               else "pending")
                row = {"point": p["name"], **shown, "fold": fold if fold is not None else "", "seed": seed,
                       "epoch": final["selected_epoch"] if final else None,
                       "UAR": round(100 * final["test"]["uar"], 2) if final else np.nan,
                       "WAR": round(100 * final["test"]["war"], 2) if final else np.nan,
                       "status": status, "error": "" if final else (info.get("error") or "")}
                runs.append(row)
        done = [r for r in runs if r["status"] == "done"]
        state = info.get("status") if info.get("status") in ("failed", "running") and len(done) < len(runs) else \
            ("done" if len(done) == len(runs) else "pending")
        mean = {"point": p["name"], **shown, "fold": "mean", "seed": "", "epoch": None,
                "UAR": round(float(np.mean([r["UAR"] for r in done])), 2) if done else np.nan,
                "WAR": round(float(np.mean([r["WAR"] for r in done])), 2) if done else np.nan,
                "status": f"{len(done)}/{len(runs)} {state}", "error": info.get("error") or ""}
        rows += runs + [mean]
    df = pd.DataFrame(rows, columns=["point", *short.values(), "fold", "seed", "epoch", *METRICS, "status", "error"])
    df["epoch"] = df["epoch"].astype("Int64")
    return df


def metric_columns(results: pd.DataFrame) -> list[str]:
    """The metrics of a results frame that its table summarises and compares, in DIGITS' order."""
    return [m for m in DIGITS if m in results.columns]


def shown_table(table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """`table` as printed and written to Markdown, and the decimals of its other numbers: when its
    metrics differ in decimals (UAR 2, AUROC 3), their columns and "std" columns become text with
    each metric's own; else unchanged, with the metrics' decimals."""
    digits = {c: DIGITS[c.removesuffix(" std")] for c in table.columns if c.removesuffix(" std") in DIGITS}
    if len(set(digits.values())) <= 1:
        return table, max(digits.values(), default=2)
    shown = table.copy()
    for c, d in digits.items():
        shown[c] = ["-" if pd.isna(v) else f"{v:.{d}f}" for v in shown[c]]
    return shown, 2


def paper_table(results: pd.DataFrame, reference: Optional[str] = None) -> pd.DataFrame:
    """The layout of the paper's Tables 3-5: one row per point (its mean over folds and seeds), swept
    fields, the metrics (UAR, WAR; AUROC, AUROC sim where the frame has them), their std over the runs,
    and the points' paired differences.

    Without `reference`, "vs best (WAR)" pairs the point with the point of highest mean WAR fold by
    fold (each fold's seeds averaged first: the fold is the unit of replication) with a 95% t interval
    over the folds, marked "*" where the Holm-adjusted p < 0.05; unmarked, it gives the minimum
    detectable effect (tgdfer.stats). The Holm family is every pair of points, because the best is
    picked from the same runs (`comparison_note` says so under the table). With `reference` (a point's
    name), "vs REFERENCE (METRIC)" compares every other point with it on every metric, Holm over those
    (points - 1) x metrics comparisons. Points of one run each (a single fold and seed) have no
    spread: those columns are left out.
    """
    runs = _done_runs(results)
    metrics = metric_columns(results)
    mean = results[results["fold"] == "mean"].drop(columns=["fold", "seed", "epoch", "error"]).set_index("point")
    if reference is not None and reference not in mean.index:
        raise ConfigError("--reference", f"no point {reference!r} in this table; the points are: "
                                         f"{', '.join(map(str, mean.index))}")
    std = runs.groupby("point")[metrics].std(ddof=1)
    if std.notna().any().any():  # a point with two runs or more: its spread, and the paired comparison
        for m in metrics:
            mean.insert(mean.columns.get_loc(m) + 1, f"{m} std", std[m].reindex(mean.index).round(DIGITS[m]))
        if reference is None:
            mean["vs best (WAR)"] = _versus_best(runs, mean["WAR"])
        else:
            family = versus_reference(runs, list(mean.index), reference, metrics)
            for m in metrics:
                cells = {p: d.format(DIGITS[m]) for (p, metric), d in family.items() if metric == m}
                mean[f"vs {reference} ({m})"] = pd.Series({**cells, reference: "reference"}).reindex(mean.index)
    return mean.rename(columns={"status": "runs"})


def comparison_note(results: pd.DataFrame, reference: Optional[str] = None) -> str:
    """The sentence under `paper_table`: how its differences were computed and what their marks mean."""
    from .stats import family_note

    runs = _done_runs(results)
    points = runs["point"].nunique()
    if points < 2 or runs.groupby("point").size().max() < 2:
        return ""
    folds = runs["fold"].nunique()
    if reference is not None:
        metrics = metric_columns(results)
        family = versus_reference(runs, list(dict.fromkeys(results["point"])), reference, metrics)
        m = sum(d.n >= 2 for d in family.values())
        return (f"vs {reference}: the point's {' / '.join(metrics)} minus that of {reference}. "
                + family_note(m, folds))
    return ("vs best: the point's WAR minus that of the point of highest mean WAR. "
            + family_note(points * (points - 1) // 2, folds)
            + (" The comparisons are every pair of points, since the best is picked from these same runs."
               if folds >= 2 else ""))


def _done_runs(results: pd.DataFrame) -> pd.DataFrame:
    return results[(results["fold"] != "mean") & (results["status"] == "done")]


def _versus_best(runs: pd.DataFrame, war: pd.Series) -> pd.Series:
    """point -> paired WAR difference to the point of highest mean WAR ("best" for that point itself),
    Holm-adjusted over every pair of points."""
    from .stats import holm_family, paired_by_fold

    if war.dropna().empty:
        return pd.Series("", index=war.index)
    best = war.idxmax()
    by_point = {p: runs[runs["point"] == p].set_index(["fold", "seed"])["WAR"] for p in war.index}
    names = list(war.index)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    family = holm_family([paired_by_fold(by_point[a], by_point[b]) for a, b in pairs])
    out = {best: "best"}
    for (a, b), d in zip(pairs, family):
        if best in (a, b):
            out[a if b == best else b] = (d if b == best else -d).format(2)
    return pd.Series(out).reindex(war.index).fillna("")


def versus_reference(runs: pd.DataFrame, points: Sequence[str], reference: str,
                     metrics: Sequence[str]) -> dict[tuple[str, str], Any]:
    """(point, metric) -> the point's paired difference to `reference` (tgdfer.stats.Paired), for every
    other point and metric, Holm-adjusted over all of them."""
    from .stats import holm_family, paired_by_fold

    ref = runs[runs["point"] == reference].set_index(["fold", "seed"])
    keys = [(p, m) for p in points if p != reference for m in metrics]
    found = [paired_by_fold(runs[runs["point"] == p].set_index(["fold", "seed"])[m], ref[m]) for p, m in keys]
    return dict(zip(keys, holm_family(found)))


def _point_value(point: dict, info: dict, key: str) -> Any:
    """The value of swept field `key` at `point`: its own, the store's where the store fixes it
    (point.json's "store_values": what the runs trained with), or the one its pipeline took from the base."""
    if key in point["values"]:
        return point["values"][key]
    if key in (info.get("store_values") or {}):
        return info["store_values"][key]
    section, _, name = key.partition(".")
    return info.get("pipeline", {}).get(section, {}).get(name)


def _label(meta: dict, key: str, value: Any) -> Any:
    labels = meta.get("labels", {}).get(key, {})
    shown = _show(value) if key in meta.get("labels", {}) or value is None or isinstance(value, bool) else value
    return labels.get(_show(value), shown)


def read_sweep_meta(out: Path) -> dict:
    """A sweep folder's points.json (what `tgdfer sweep` recorded); TgdferError naming the folder when absent."""
    meta = read_json_or_none(out / "points.json")
    if meta is None:
        raise TgdferError(f"{out}: not a sweep folder (no points.json); sweeps are written by `tgdfer sweep`")
    _check_meta(out / "points.json", meta)
    return meta


def _folder_name(name: Any) -> bool:
    """A point's name is one folder inside the sweep's: text, no '/' or '\\', no leading '.'."""
    return isinstance(name, str) and bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name


def _check_meta(path: Path, meta: Any) -> None:
    """TgdferError naming points.json and the key unless it has the shape `SweepConfig.meta` writes:
    a shared or hand-edited file must not crash report or point it at folders outside the sweep."""
    def bad(what: str) -> TgdferError:
        return TgdferError(f"{path}: {what}; points.json is written by `tgdfer sweep`, not by hand")

    if not isinstance(meta, dict):
        raise bad("not a JSON object")
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    checks = {"fields": lambda v: isinstance(v, list) and v and all(isinstance(f, str) for f in v),
              "seeds": lambda v: isinstance(v, list) and v and all(x is None or is_int(x) for x in v),
              "folds": lambda v: isinstance(v, list) and all(x is None or is_int(x) for x in v),
              "points": lambda v: isinstance(v, list) and v and all(isinstance(p, dict) for p in v)}
    for key, ok in checks.items():
        if not ok(meta.get(key)):
            raise bad(f"{key!r} is {meta.get(key)!r:.60}, not what a sweep records")
    for key in ("title", "plot", "base"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise bad(f"{key!r} is not text")
    if not isinstance(meta.get("labels", {}), dict):
        raise bad("'labels' is not an object")
    for p in meta["points"]:
        name = p.get("name")
        if not _folder_name(name) or not isinstance(p.get("values"), dict):
            raise bad(f"point {name!r:.60} is not a point name of this folder (no '/', no leading '.') "
                      "with its values")


def read_json_or_none(path: Path) -> Optional[dict]:
    """A run's or sweep's JSON record, or None when it is absent or damaged (read within the JSON caps)."""
    try:
        return load_json(path.read_bytes(), str(path))  # within the JSON caps
    except (FileNotFoundError, TgdferError):  # absent or damaged: as if the point had not run
        return None


def _listed(values: Sequence, one: str) -> str:
    """[1, 2] -> "folds 1, 2"; [1] -> "fold 1" (`one`: the singular)."""
    return f"{one}{'s' if len(values) > 1 else ''} {', '.join(map(str, values))}"


def run_settings(out: str | Path) -> str:
    """What the sweep in `out` ran, read from its folder: "folds 1, 2 x seeds 0, 1 = 4 runs per point,
    10 epochs" (epochs from the points' recorded pipelines; "5-10 epochs" when the points differ)."""
    out = Path(out)
    meta = read_sweep_meta(out)
    folds, seeds = meta["folds"] or [None], meta["seeds"]
    where = "train/test split" if folds == [None] else _listed(folds, "fold")
    text = f"{where} x {_listed(seeds, 'seed')} = {len(folds) * len(seeds)} run{'s' if len(folds) * len(seeds) > 1 else ''} per point"
    epochs = set()
    for p in meta["points"]:
        train = ((read_json_or_none(out / p["name"] / "point.json") or {}).get("pipeline") or {}).get("train") or {}
        if isinstance(train.get("epochs"), int):
            epochs.add(train["epochs"])
    if epochs:
        text += f", {min(epochs)}{'' if len(epochs) == 1 else f'-{max(epochs)}'} epochs"
    return text


def sweep_title(out: str | Path) -> str:
    """The title of the sweep's table and plot: the file's title (what was compared) and `run_settings`
    (how: folds, seeds, epochs, read from the runs rather than written by hand)."""
    out = Path(out)
    return f"{read_sweep_meta(out).get('title') or out.name} ({run_settings(out)})"


def report(out: str | Path, *, reference: Optional[str] = None,
           dest: Optional[str | Path] = None) -> tuple[pd.DataFrame, list[Path]]:
    """Rebuild the sweep's results (results.csv, results.md, results.png) from its run folders, into
    `dest` (default: the sweep folder itself); `reference`: see `paper_table`."""
    out = Path(out)
    meta = read_sweep_meta(out)
    df = results_frame(out)
    note = (f"UAR / WAR in %, test fold of each run; mean over {len(meta['folds'] or [None])} fold(s) x "
            f"{len(meta['seeds'])} seed(s). Base pipeline: {meta['base']}"
            + (f", with {', '.join(meta['fixed'])}" if meta.get("fixed") else "") + ".")
    return df, write_results(df, Path(dest) if dest is not None else out, sweep_title(out), note,
                             reference=reference, meta=meta)


def write_results(df: pd.DataFrame, dest: Path, title: str, note: str, *, reference: Optional[str] = None,
                  meta: Optional[dict] = None) -> list[Path]:
    """Write `df` (a `results_frame`) into `dest`: results.csv (every run, each point's mean),
    results.md (`paper_table` under `title`, `note` and `comparison_note` below it, then every run) and
    results.png (`plot_results`; against the field `meta` plots, else against the point)."""
    from .metrics import to_markdown

    table = paper_table(df, reference)  # first: an unknown reference writes nothing
    dest.mkdir(parents=True, exist_ok=True)
    csv = dest / "results.csv"
    df.to_csv(csv, index=False)
    per_run = df[df["fold"] != "mean"].set_index("point")
    md = dest / "results.md"
    note = " ".join(filter(None, [note, comparison_note(df, reference)]))
    (shown, digits), (every, run_digits) = shown_table(table), shown_table(per_run.drop(columns=["error"]))
    md.write_text(to_markdown(shown, title=title, note=note, decimals=digits) + "\n"
                  + to_markdown(every, title="every run", decimals=run_digits), encoding="utf-8")
    paths = [csv, md]
    png = plot_results(df, meta or {"fields": ["point"]}, dest / "results.png", title)
    if png is not None:
        paths.append(png)
    return paths


def _safe_report(out: Path) -> None:
    try:
        report(out)
    except Exception as e:  # a progress report must never stop the sweep
        log.warning("could not update the report in %s: %s", out, e)


def plot_results(df: pd.DataFrame, meta: dict, path: Path, title: str = "") -> Optional[Path]:
    """UAR and WAR of every finished run against the plotted field (`figures.sweep_figure`), PNG;
    None when no run has finished."""
    from .figures import save_png, sweep_figure

    short = _short_names(meta["fields"])
    x_field = short[meta.get("plot") or meta["fields"][0]]
    runs = df[(df["fold"] != "mean") & (df["status"] == "done")]
    if runs.empty:
        return None
    order = list(dict.fromkeys(df[x_field].astype(str)))  # x positions in the sweep's order
    fig = sweep_figure(runs, x_field, order, [short[k] for k in meta["fields"] if short[k] != x_field],
                       METRICS, title or meta.get("title") or "")
    return save_png(fig, path, {"Title": title})
