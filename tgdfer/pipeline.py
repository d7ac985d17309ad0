"""A pipeline file (`pipelines/*.toml`): one table per stage, each built into its dataclass.

    [classes]  -> ClassesConfig            (the class set: names in label order, prompts file)
    [synth]    -> synth.SynthConfig        (only for the synthetic dataset)
    [data]     -> DataConfig               (which reader, and its arguments)
    [encoder]  -> encoders.EncoderConfig
    [augment]  -> augment.AugmentConfig
    [extract]  -> extract.ExtractConfig
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
from .config import apply_overrides, build, did_you_mean, load_toml, to_dict, to_toml
from .encoders import EncoderConfig
from .errors import ConfigError
from .extract import ExtractConfig
from .head import HeadConfig
from .labels import CLASSES, ClassSet, class_set
from .prompts import load_prompt_file
from .proxy import ProxyConfig
from .readers import READERS, ClipTable, load_clips
from .synth import SynthConfig
from .train import TrainConfig


@dataclass
class ClassesConfig:
    """The classes a pipeline predicts (docs/classes.md); the default is the paper's 7 emotions in DFEW order."""

    names: list[str] = field(default_factory=lambda: list(CLASSES))  # class i = names[i] (label i), case-insensitive
    prompts_file: str = ""  # TOML/JSON prompt texts per class (or DFER-CLIP's Text.py); "" = built-in/derived

    def __post_init__(self):
        self.class_set()  # ConfigError naming classes.names or classes.prompts_file now, not after extraction

    def class_set(self) -> ClassSet:
        """The declared ClassSet with the prompts file's texts (DEFAULT, with its aliases, for the 7 emotions)."""
        names = class_set(self.names, source="names")
        if not self.prompts_file:
            return names
        try:
            prompts = load_prompt_file(self.prompts_file, names)
        except ConfigError as e:
            raise ConfigError("prompts_file", str(e)) from None
        return ClassSet(names.names, aliases=names.aliases, prompts=prompts, source="names",
                        prompts_source=self.prompts_file)


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
        # TODO(lead, after merging the readers branch): read labels against the declared class set,
        #   `load_clips(self.kind, class_names=classes.names, **self.args)` with `classes` from
        #   Pipeline.classes (e.g. `def load(self, classes: ClassesConfig | None = None)`, called as
        #   `pipe.data.load(pipe.classes)` in cli._extract). Today's readers take no class_names.
        return load_clips(self.kind, **self.args)


@dataclass
class Pipeline:
    classes: ClassesConfig = field(default_factory=ClassesConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
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


def load_pipeline(path: str | Path | None = None, overrides: list[str] | None = None) -> Pipeline:
    """Build a Pipeline from a TOML file (or defaults) plus dotted overrides."""
    raw = load_toml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        where = f"{path}: " if path else ""
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
