"""The two pipeline tables that say what the data is, `[classes]` and `[data]`, and reading a pipeline
file's tables (its `base` file, a profile, `--set` overrides) without building the other stages.

Kept apart from `pipeline` so that `tgdfer check` reads a dataset without importing torch and the
model code (`load_data_config`): the annotation readers need pandas, nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .config import apply_overrides, build, expand_home, load_toml, merge_tables, parse_override
from .errors import ConfigError
from .labels import CLASSES, ClassSet, class_set
from .prompts import load_prompt_file
from .readers import READERS, ClipTable, load_clips


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
    under = _read_with_base(base_path, (*seen, path.resolve()))
    return merge_tables(_without_other_args(under, raw.get("data", {}).get("kind")), raw)


def _without_other_args(under: dict[str, Any], kind: Any) -> dict[str, Any]:
    """`under` without its [data] args when `kind` names another reader than its own: they mean nothing to
    that reader (split_dir to the csv reader), so a file or --set switching readers starts from none."""
    data = under.get("data", {})
    if kind is None or not isinstance(data, dict) or kind == data.get("kind", kind):
        return under
    return {**under, "data": {k: v for k, v in data.items() if k != "args"}}


def load_profile(name: str) -> dict[str, Any]:
    """A profile overlay: "paper" (the paper's literal readings), "recommended" (tgdfer's), or a TOML file."""
    path = PROFILE_DIR / f"{name}.toml" if name in PROFILES else Path(name)
    if not path.is_file():
        raise ConfigError("profile", f"{name!r} is neither a profile ({', '.join(PROFILES)}) nor a TOML file")
    return load_toml(path)


def pipeline_tables(path: str | Path | None = None, overrides: list[str] | None = None,
                    profile: str | None = None) -> dict[str, Any]:
    """A pipeline file's tables as read, before any is built: precedence, lowest first, the profile
    (`profile`, else the file's top-level `profile = "..."`), the file `base = "other.toml"` names
    (relative to this file), the file's own tables, the overrides."""
    raw = _read_with_base(Path(path)) if path is not None else {}
    named = raw.pop("profile", None)
    if profile or named:
        raw = merge_tables(load_profile(profile or named), raw)
    kinds = [value for keys, value in map(parse_override, overrides or []) if keys == ["data", "kind"]]
    raw = _without_other_args(raw, kinds[-1] if kinds else None)  # --set data.kind=... switches readers
    return expand_home(apply_overrides(raw, overrides or []))


FRAME_BACKENDS = ("auto", "decord", "pyav")  # [extract] frame_backend (tgdfer.extractconfig.ExtractConfig)


def load_data_config(path: str | Path | None = None, overrides: list[str] | None = None,
                     profile: str | None = None) -> tuple[ClassesConfig, DataConfig, str]:
    """The `[classes]` and `[data]` tables of a pipeline file, built and checked, and `[extract]
    frame_backend` (how extraction will read videos); the other tables are not checked
    (`pipeline.load_pipeline` checks the whole file)."""
    raw = pipeline_tables(path, overrides, profile)
    parts = []
    for name, cls in (("classes", ClassesConfig), ("data", DataConfig)):
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(name, "must be a table ([name] in TOML)")
        parts.append(build(cls, table, name))
    extract = raw.get("extract", {})
    backend = extract.get("frame_backend", "auto") if isinstance(extract, dict) else "auto"
    if backend not in FRAME_BACKENDS:
        raise ConfigError("extract.frame_backend", f"{backend!r} is not one of {', '.join(FRAME_BACKENDS)}")
    return parts[0], parts[1], backend
