"""tgdfer: TG-DFER as a two-stage pipeline (cached CLIP features -> fast head training).

The Python API (docs/python-api.md), imported on first use so that `import tgdfer` stays fast:

    tgdfer.load_pipeline(path, overrides)   the CLI's --config and --set -> a Pipeline
    tgdfer.extract(pipe)                    `tgdfer extract`
    tgdfer.train(pipe, fold=1)              `tgdfer train-head`
    tgdfer.evaluate(run_or_runs)            `tgdfer evaluate`
    tgdfer.Predictor(run)(clips)            `tgdfer predict`, one call: probabilities and per-frame influence
    tgdfer.PredictOptions(...)              its options (= the command's flags), Predictor(run, options=...)
    tgdfer.FeatureStore.open(path)          a feature store written by extract
"""

__version__ = "0.1.0"

from .labels import CLASSES, NUM_CLASSES
from .threads import reproducible_blas as _reproducible_blas

_reproducible_blas()  # before torch runs its first product (tgdfer/threads.py)

_LAZY = {  # name -> (module, attribute)
    "load_pipeline": ("tgdfer.pipeline", "load_pipeline"),
    "Pipeline": ("tgdfer.pipeline", "Pipeline"),
    "extract": ("tgdfer.api", "extract"),
    "train": ("tgdfer.api", "train"),
    "evaluate": ("tgdfer.api", "evaluate"),
    "Predictor": ("tgdfer.predict", "Predictor"),
    "PredictOptions": ("tgdfer.predictoptions", "PredictOptions"),
    "FeatureStore": ("tgdfer.store", "FeatureStore"),
}

__all__ = ["__version__", "CLASSES", "NUM_CLASSES", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'tgdfer' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
