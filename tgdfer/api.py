"""The Python API: the CLI's main steps as functions, for notebooks and scripts (docs/python-api.md).

    import tgdfer
    pipe = tgdfer.load_pipeline("pipelines/synthetic.toml", ["train.epochs=5"])  # the CLI's --config and --set
    tgdfer.extract(pipe)                          # features into [extract] store (resumable)
    run = tgdfer.train(pipe, fold=1).run          # -> runs/synth/fold1
    ev = tgdfer.evaluate(run)                     # tables and figures in runs/synth/fold1/eval
    pred = tgdfer.Predictor(run)("clip.mp4")      # pred.label, pred.probabilities, pred.influence

The functions are plain functions; the modules behind them are nouns that do not collide with
their names: tgdfer.extraction, tgdfer.training, tgdfer.evaluation.
Every function takes `progress=`: a callable receiving tgdfer.progress.ProgressEvent, a tqdm bar
or a rich Progress.
"""

from __future__ import annotations

import operator
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .errors import ConfigError
from .pipeline import Pipeline, load_pipeline

PipelineLike = Union[Pipeline, str, Path]  # a Pipeline, or a pipeline TOML file


def _as_pipeline(pipe: PipelineLike, overrides: Optional[Sequence[str] | str] = None) -> Pipeline:
    overrides = [overrides] if isinstance(overrides, str) else list(overrides or [])  # one "a.b=1" is one override
    if isinstance(pipe, Pipeline):
        return _reload(pipe, overrides) if overrides else pipe
    return load_pipeline(pipe, overrides)


def _integer(value: Any, name: str) -> int:
    """An integer-like value (int, numpy's integers, a 0-d integer tensor) as int; ConfigError naming
    `name` otherwise (a string "2" is not a fold)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise ConfigError(name, f"must be an integer, got {value!r} ({type(value).__name__})") from None


def _integers(values: Optional[Sequence[Any]], name: str) -> Optional[list[int]]:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(name, f"must be a list of integers, got {values!r}")
    return [_integer(v, name) for v in values]


def _reload(pipe: Pipeline, overrides: Sequence[str]) -> Pipeline:
    """`pipe` with more `section.field=value` overrides, checked as load_pipeline checks them."""
    from .config import apply_overrides, build

    raw = apply_overrides(pipe.to_dict(), list(overrides))
    parts = {name: build(type(getattr(pipe, name)), raw[name], name) for name in raw}
    parts["encoder"].trust_weights = pipe.encoder.trust_weights  # set by code, never part of a config table
    return Pipeline(**parts, source=pipe.source)


def proxy_missing(pipe: Pipeline) -> bool:
    """True when [encoder] names the pipeline's proxy CLIP as a weights file that is not there yet."""
    enc, weights = pipe.encoder, Path(pipe.encoder.pretrained)
    return (enc.model == pipe.proxy.model and weights.suffix in (".safetensors", ".pt", ".pth", ".bin")
            and not weights.exists())


def extract(pipe: PipelineLike, *, overrides: Optional[Sequence[str]] = None, overwrite: bool = False,
            shard_id: Optional[int] = None, num_shards: Optional[int] = None, progress: Any = None):
    """`tgdfer extract`: read [data], encode every clip with [encoder], write [extract] store.

    Trains the proxy CLIP first when [encoder] names one that is missing (as `tgdfer demo` does).
    Returns tgdfer.extraction.ExtractResult (store, extracted, failed, coverage, ...).
    """
    from .extraction import extract as extract_clips
    from .proxy import train_proxy

    pipe = _as_pipeline(pipe, overrides)
    if proxy_missing(pipe):
        weights = Path(pipe.encoder.pretrained)
        train_proxy(weights, pipe.proxy, workdir=weights.parent, progress=progress)
    clips = pipe.data.load()
    return extract_clips(pipe.extract, pipe.augment, pipe.encoder, clips.table, data_kind=pipe.data.kind,
                         shard_id=shard_id, num_shards=num_shards, overwrite=overwrite,
                         classes=pipe.classes.class_set(), progress=progress)


def train(pipe: PipelineLike, *, fold: Optional[int] = None, folds: Optional[Sequence[int]] = None,
          seeds: Optional[Sequence[int]] = None, out: Optional[str | Path] = None, resume: bool = False,
          overrides: Optional[Sequence[str]] = None, progress: Any = None):
    """`tgdfer train-head`: train the head on [train] store (default: [extract] store).

    One run (a TrainResult: run folder, test scores, history) in `out`, else in [train] out/fold<k>;
    with `folds` and/or `seeds`, every fold x seed trained together under `out` (a list of TrainResult).
    """
    from .fixedsettings import check_overrides
    from .run import plan_runs
    from .training import train_replicas

    overrides = [overrides] if isinstance(overrides, str) else list(overrides or [])
    pipe = _as_pipeline(pipe, overrides)
    check_overrides(pipe.to_dict(), overrides, pipe.train.store)  # a store's [extract] etc. are its own
    if fold is not None and folds is not None:
        raise ConfigError("fold", f"give fold ({fold!r}) or folds ({folds!r}), not both")
    folds, seeds = _integers(folds, "folds"), _integers(seeds, "seeds")  # np.arange(1, 6), a DataFrame column
    cfg = pipe.train if fold is None else replace(pipe.train, fold=_integer(fold, "fold"))
    runs = plan_runs(cfg, folds, seeds, out)
    results = train_replicas(pipe.head, cfg, runs, resume=resume, config_record={"pipeline": pipe.to_dict()},
                             encoder=pipe.encoder, classes=pipe.classes.class_set(), progress=progress)
    return results if folds is not None or seeds is not None else results[0]


def evaluate(runs: Union[str, Path, Sequence[Union[str, Path]]], out: Optional[str | Path] = None, **kwargs):
    """`tgdfer evaluate`: re-score runs (one run folder or a list), write the tables and figures.

    Without `out`: <run>/eval for one run, <common parent>/eval_<names> for several. Keyword
    arguments as tgdfer.evaluation.evaluate (device, frames, ks, figures, influence, ...); returns its
    Evaluation (results, table6, localisation, files).
    """
    from .evaluation import evaluate as evaluate_runs

    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    for name in ("frames", "ks"):  # one value where a list is taken: frames="highest", ks=2
        if isinstance(kwargs.get(name), (str, int)):
            kwargs[name] = [kwargs[name]]
    return evaluate_runs(runs, out=out, **kwargs)
