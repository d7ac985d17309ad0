"""A pipeline file (`pipelines/*.toml`): one table per stage, each built into its dataclass.

    [synth]    -> synth.SynthConfig        (only for the synthetic dataset)
    [data]     -> DataConfig               (which reader, and its arguments)
    [encoder]  -> encoders.EncoderConfig
    [augment]  -> augment.AugmentConfig
    [extract]  -> extract.ExtractConfig
    [faces]    -> facetrack.FacesConfig    (face detection and cropping for raw video; default none)
    [head]     -> head.HeadConfig          (the TG-DFER architecture, Tables 3-5 axes)
    [train]    -> train.TrainConfig        (optimiser, schedule, fold, run folder)
    [proxy]    -> proxy.ProxyConfig        (only when [encoder] is a proxy CLIP trained here)

Missing tables take their defaults; an unknown table or field is a ConfigError naming it.
CLI overrides (`--set extract.views=2`) are applied to the TOML before building.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from .augment import AugmentConfig
from .config import apply_overrides, build, load_toml, to_dict
from .encoders import EncoderConfig
from .errors import ConfigError
from .extract import ExtractConfig
from .facetrack import FacesConfig
from .head import HeadConfig
from .proxy import ProxyConfig
from .readers import READERS, ClipTable, load_clips
from .synth import SynthConfig
from .train import TrainConfig


@dataclass
class DataConfig:
    kind: str = "dfew"  # reader: one of readers.READERS (dfew, ferv39k, list, csv)
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of that reader (paths, columns, missing=...)

    def __post_init__(self):
        if self.kind not in READERS:
            raise ConfigError("kind", f"unknown reader {self.kind!r}; choose one of {', '.join(sorted(READERS))}")
        if not isinstance(self.args, dict):
            raise ConfigError("args", "must be a table of reader arguments")

    def load(self) -> ClipTable:
        """Read the annotations into a clip table."""
        return load_clips(self.kind, **self.args)


@dataclass
class Pipeline:
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


_SECTIONS = {f.name: typing.get_type_hints(Pipeline)[f.name] for f in fields(Pipeline) if f.name != "source"}


def load_pipeline(path: str | Path | None = None, overrides: list[str] | None = None) -> Pipeline:
    """Build a Pipeline from a TOML file (or defaults) plus dotted overrides."""
    raw = load_toml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        where = f"{path}: " if path else ""
        raise ConfigError(unknown[0], f"{where}unknown section; known sections: {', '.join(_SECTIONS)}")
    parts = {}
    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, "must be a table ([name] in TOML)")
        parts[name] = build(cls, table, name)
    return Pipeline(**parts, source=str(path) if path else None)
