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
from collections.abc import Sequence
from typing import Any, Optional

from .augment import AugmentConfig
from .config import apply_overrides, build, did_you_mean, load_toml, merge_tables, to_dict, to_toml
from .encoders import EncoderConfig
from .errors import ConfigError
from .extraction import ExtractConfig
from .facetrack import FacesConfig
from .head import HeadConfig
from .labels import CLASSES, ClassSet, class_set
from .prompts import load_prompt_file
from .proxy import ProxyConfig
from .readers import READERS, ClipTable, load_clips
from .synth import SynthConfig
from .trainconfig import TrainConfig


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
    kind: str = "dfew"  # reader: one of readers.READERS (dfew, ferv39k, list, csv); formats in docs/datasets.md
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of that reader (paths, columns, missing=...)

    def __post_init__(self):
        if self.kind not in READERS:
            raise ConfigError("kind", f"unknown reader {self.kind!r}; choose one of {', '.join(sorted(READERS))}")
        if not isinstance(self.args, dict):
            raise ConfigError("args", "must be a table of reader arguments")

    def load(self, class_names: Optional[Sequence[str]] = None) -> ClipTable:
        """Read the annotations into a clip table whose labels index `class_names`.

        `class_names` is the pipeline's class set (default: `args.class_names`, else the 7
        emotions); `args.class_names`, when given too, must be the same list.
        """
        args = dict(self.args)
        if class_names is not None:
            given = args.get("class_names")
            if given is not None and list(given) != list(class_names):
                raise ConfigError("args.class_names", f"{list(given)} differs from the pipeline's classes "
                                                      f"{list(class_names)}; give the class set once")
            args["class_names"] = list(class_names)
        return load_clips(self.kind, **args)


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


PROFILE_DIR = Path(__file__).parent / "profiles"
PROFILES = ("paper", "recommended")  # tgdfer/profiles/<name>.toml; a path to a TOML file works too


def _read_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A pipeline file laid over the file its top-level `base = "..."` names (recursively)."""
    raw = load_toml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError("base", f"{path}: base files form a loop through {base_path}")
    return merge_tables(_read_with_base(base_path, (*seen, path.resolve())), raw)


def load_profile(name: str) -> dict[str, Any]:
    """A profile overlay: "paper" (the paper's literal readings), "recommended" (tgdfer's), or a TOML file."""
    path = PROFILE_DIR / f"{name}.toml" if name in PROFILES else Path(name)
    if not path.is_file():
        raise ConfigError("profile", f"{name!r} is neither a profile ({', '.join(PROFILES)}) nor a TOML file")
    return load_toml(path)


def load_pipeline(path: str | Path | None = None, overrides: list[str] | None = None,
                  profile: str | None = None) -> Pipeline:
    """Build a Pipeline from a TOML file (or defaults) plus dotted overrides.

    Precedence, lowest first: dataclass defaults, the profile (`profile`, else the file's top-level
    `profile = "..."`), the file `base = "other.toml"` names (relative to this file), the file's own
    tables, the overrides.
    """
    raw = _read_with_base(Path(path)) if path is not None else {}
    named = raw.pop("profile", None)
    if profile or named:
        raw = merge_tables(load_profile(profile or named), raw)
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
