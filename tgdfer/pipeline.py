"""A pipeline file (`pipelines/*.toml`): one table per stage, each built into its dataclass.

    [classes]  -> ClassesConfig            (the class set: names in label order, prompts file)
    [synth]    -> synth.SynthConfig        (only for the synthetic dataset)
    [data]     -> DataConfig               (which reader, and its arguments)
    [encoder]  -> encoders.EncoderConfig
    [augment]  -> augment.AugmentConfig
    [extract]  -> extract.ExtractConfig
    [faces]    -> facetrack.FacesConfig    (face detection and cropping for raw video; default none)
    [head]     -> head.HeadConfig          (the TG-DFER architecture, Tables 3-5 axes)
    [train]    -> train.TrainConfig        (optimiser, schedule, fold, run folder)
    [proxy]    -> proxy.ProxyConfig        (only when [encoder] is a proxy CLIP trained here)

Missing tables take their defaults; an unknown table or field is a ConfigError naming it (with
the closest known name). CLI overrides (`--set extract.views=2`) are applied to the TOML before
building. `[train] store` defaults to `[extract] store`: the path is written once.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from .augment import AugmentConfig
from .config import build, did_you_mean, parse_override, to_dict, to_toml
from .dataconfig import PROFILE_DIR, PROFILES, ClassesConfig, DataConfig, load_profile, pipeline_tables  # noqa: F401
from .encoders import EncoderConfig
from .errors import ConfigError
from .extraction import ExtractConfig
from .facetrack import FacesConfig
from .head import HeadConfig
from .proxy import ProxyConfig
from .synth import SynthConfig
from .trainconfig import TrainConfig


@dataclass
class Pipeline:
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    source: Optional[str] = None  # the TOML file it came from, for messages and run records

    def to_dict(self) -> dict[str, Any]:
        return {f.name: to_dict(getattr(self, f.name)) for f in fields(self) if f.name != "source"}

    def to_toml(self) -> str:
        """The effective config as a pipeline TOML file (`--print-config`); `load_pipeline` reads it back."""
        head = f"# effective config of {self.source}" if self.source else "# effective config (defaults)"
        return f"{head}, written by tgdfer\n" + to_toml(self.to_dict())


_SECTIONS = {f.name: typing.get_type_hints(Pipeline)[f.name] for f in fields(Pipeline) if f.name != "source"}


def load_pipeline(path: str | Path | None = None, overrides: list[str] | None = None,
                  profile: str | None = None) -> Pipeline:
    """Build a Pipeline from a TOML file (or defaults) plus dotted overrides.

    Precedence, lowest first: dataclass defaults, the profile (`profile`, else the file's top-level
    `profile = "..."`), the file `base = "other.toml"` names (relative to this file), the file's own
    tables, the overrides.
    """
    raw = pipeline_tables(path, overrides, profile)
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        given = [o for o in overrides or [] if parse_override(o)[0][0] == unknown[0]]
        where = f"--set {given[0]}: " if given else f"{path}: " if path else ""
        raise ConfigError(unknown[0], f"{where}unknown section{did_you_mean(unknown[0], _SECTIONS)}; "
                          f"known sections: {', '.join(_SECTIONS)}")
    parts = {}
    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, "must be a table ([name] in TOML)")
        parts[name] = build(cls, table, name)
    if "store" not in raw.get("train", {}):  # the store path given once: train on what extract writes
        parts["train"].store = parts["extract"].store
    return Pipeline(**parts, source=str(path) if path else None)
