"""Settings a feature store fixes: the [extract], [augment] and [faces] fields its features were made with.

`tgdfer extract` bakes them into the features, and the store's fingerprint records them: they enter it
through `settings_fingerprint` only (`extraction.build_fingerprint` adds the encoder, the annotations and
the class set), and `fixed_settings` reads them back. `train-head` and `sweep` read the same pipeline
file, but at training time these settings can change nothing: the features are what they are. So one
rule, here, for every trainer:

- set explicitly (`--set`, a named option, a sweep's point or `set`) to another value than the
  store's: refused before anything trains (`check_overrides`, `sweep.plan_sweep`), naming the
  setting, both values and the store; changing it means extracting another store;
- only the pipeline file (or its profile) says another value: training goes on, one warning names
  each such setting with both values, and the run's config.json records the store's value, the one
  the features were made with (`stored_record`, called by the trainer).

Settings that agree with the store change nothing: the record is the one written before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Optional

from .augment import AugmentConfig
from .config import build, parse_override, table_diff
from .errors import ConfigError, TgdferError
from .extractconfig import ExtractConfig
from .facetrack import FacesConfig

log = logging.getLogger(__name__)

SAMPLING_STRATEGY = "tsn-segments"  # sampling.segment_indices (DFER-CLIP's train/test rule)

Difference = tuple[str, Any, Any]  # (section.field, the config's value, the store's value)

REEXTRACT = ("a store's features fix the [extract], [augment] and [faces] settings they were made with, so "
             "training cannot change them: to train with another value, extract a store with it (tgdfer extract "
             "with the same setting and another extract.store) and train on that store")


def settings_fingerprint(cfg: ExtractConfig, augment: AugmentConfig, faces: Optional[FacesConfig] = None) -> dict:
    """The part of a store fingerprint that the pipeline's [extract], [augment] and [faces] tables decide:
    preprocessing.normalize, sampling (frames, views, seed, augment), test_views and faces. `build_fingerprint`
    adds what the encoder, the annotations and the class set decide."""
    fp = {
        "preprocessing": {"normalize": cfg.normalize},
        "sampling": {"frames": cfg.frames, "strategy": SAMPLING_STRATEGY, "views": cfg.views,
                     "seed": cfg.seed, "augment": {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in asdict(augment).items()}},
        **({"test_views": "view 0 repeated"} if not cfg.augment_test else {}),
    }
    if faces is not None and faces.enabled:
        fp["faces"] = faces.fingerprint()
    return fp


def fixed_settings(fp: dict) -> dict[str, dict]:
    """The pipeline settings a store fingerprint records, as {section: {field: value}}: what
    `settings_fingerprint` wrote, read back (extract.normalize, frames, views, seed, augment_test; every
    [augment] field; [faces], only "detector" = "none" without a face stage). A part the fingerprint
    lacks (a hand-made store, an older tgdfer's field) is left out: nothing is claimed about it."""
    pre, sampling = fp.get("preprocessing"), fp.get("sampling")
    extract = {"normalize": pre["normalize"]} if isinstance(pre, dict) and "normalize" in pre else {}
    out: dict[str, dict] = {"extract": extract}
    if isinstance(sampling, dict):  # a fingerprint build_fingerprint wrote: the absent parts mean something
        extract.update({k: sampling[k] for k in ("frames", "views", "seed") if k in sampling})
        extract["augment_test"] = "test_views" not in fp
        if isinstance(sampling.get("augment"), dict):
            out["augment"] = dict(sampling["augment"])
        faces = fp.get("faces")
        out["faces"] = ({k: v for k, v in faces.items() if k != "track"}  # the face-track rule: code, not a setting
                        if isinstance(faces, dict) else {"detector": "none"})
    return out


def store_differences(tables: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> list[Difference]:
    """Every store-fixed setting whose value in `tables` (a pipeline as `{section: {field: value}}`, e.g.
    `Pipeline.to_dict()` or a run record's "pipeline") differs from what the store with `fingerprint` was
    built with: (section.field, configured, stored). The configured side goes through the same
    `settings_fingerprint` as extraction, so both sides are compared as a fingerprint records them;
    a setting the fingerprint does not record is not compared."""
    faces = build(FacesConfig, tables.get("faces"), "faces")
    own = settings_fingerprint(build(ExtractConfig, tables.get("extract"), "extract"),
                               build(AugmentConfig, tables.get("augment"), "augment"), faces)
    configured = fixed_settings(json.loads(json.dumps(own)))  # tuples as lists, as a stored fingerprint has them
    # every [faces] field, the stage on or off: a store with a face stage is compared (and recorded) field by
    # field even where the config has none, and one without compares its "detector" = "none" alone
    configured["faces"] = json.loads(json.dumps(asdict(faces)))
    return [(name, now, stored) for name, stored, now in table_diff(fixed_settings(dict(fingerprint)), configured)]


def overridden(overrides: Iterable[str]) -> set[str]:
    """The dotted fields `section.field=value` overrides set (a table value names each of its fields)."""
    names: set[str] = set()

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            names.add(prefix)

    for text in overrides:
        keys, value = parse_override(text)
        walk(".".join(keys), value)
    return names


def touches(name: str, fields: Iterable[str]) -> bool:
    """True when one of the dotted `fields` is `name`, lies inside it (faces.args.x) or holds it (faces)."""
    return any(f == name or f.startswith(name + ".") or name.startswith(f + ".") for f in fields)


def describe(differences: Sequence[Difference], configured: str = "in the config") -> str:
    """`augment.brightness: 0.1 in the config, 0.5 in the store; ...`"""
    return "; ".join(f"{name}: {now!r} {configured}, {stored!r} in the store" for name, now, stored in differences)


def check_overrides(tables: Mapping[str, Any], overrides: Sequence[str], store_path: str) -> None:
    """ConfigError when `overrides` (the command line's `--set` and named options) set a store-fixed setting
    to another value than the store at `store_path` was extracted with; its message names the setting,
    both values, the store, and that re-extracting is the way to change it. A store that does not open is
    left to the trainer to report."""
    from .store import FeatureStore

    explicit = overridden(overrides)
    if not any(touches(name, explicit) for name in ("extract", "augment", "faces")):
        return
    try:
        with FeatureStore.open(store_path) as store:
            fingerprint = store.fingerprint
    except (TgdferError, OSError):
        return
    bad = [d for d in store_differences(tables, fingerprint) if touches(d[0], explicit)]
    if bad:
        (name, now, stored), more = bad[0], bad[1:]
        also = f" (and {describe(more, 'set')})" if more else ""
        raise ConfigError(name, f"set to {now!r} on the command line, but {store_path} was extracted with "
                                f"{stored!r}{also}; {REEXTRACT}")


def stored_record(config_record: Optional[dict], fingerprint: Mapping[str, Any], store: str,
                  warn: bool = True) -> Optional[dict]:
    """`config_record` (a run's config.json, its "pipeline" the pipeline's tables) with each store-fixed
    setting that differs from the store set to the store's value, the one the features were made with;
    one warning names each with both values (`warn`; a resumed run's own record, written by a tgdfer
    that recorded the file's values, is set right without a second one). Unchanged (the same object)
    when nothing differs or the record holds no pipeline."""
    tables = (config_record or {}).get("pipeline")
    if not isinstance(tables, dict):
        return config_record
    differences = store_differences(tables, fingerprint)
    if not differences:
        return config_record
    if warn:
        log.warning("%s was extracted with other settings than the pipeline gives (%s); training uses the store's "
                    "features, so the run records the store's values. %s", store, describe(differences),
                    REEXTRACT[0].upper() + REEXTRACT[1:])
    record = json.loads(json.dumps(config_record))  # a copy: the caller's record stays as it was
    for name, _, stored in differences:
        section, field = name.split(".", 1)
        record["pipeline"].setdefault(section, {})[field] = stored
    return record
