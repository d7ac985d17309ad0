"""Class sets. Internally labels are 0-based indices into a `ClassSet`'s names.

`DEFAULT` is the 7 basic emotions in DFEW's label order (the paper's datasets and tables); a
pipeline can declare another set (`[classes]`, e.g. MAFW's 11 classes), which then travels with
the features: a store built for a non-default set records its names in its fingerprint
(`classes_record`), and an old store or checkpoint without that record means `DEFAULT`.

DFEW's fold CSVs use 1..7 in the default order; the plain "path n_frames label" lists use 0..6.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Optional

from .errors import ConfigError

CLASSES: tuple[str, ...] = ("Happiness", "Sadness", "Neutral", "Anger", "Surprise", "Disgust", "Fear")
NUM_CLASSES = len(CLASSES)

# Approximate class shares of DFEW's single-labelled clips, SynthDFER's default imbalance.
# Disgust (1.22%) and Fear (8.14%) are the figures the paper quotes (Sec. 4.3); the other five
# are rounded approximations of DFEW's distribution. Normalised where used.
DFEW_CLASS_SHARES: tuple[float, ...] = (0.23, 0.17, 0.22, 0.18, 0.10, 0.0122, 0.0814)

# Common spellings in other datasets' annotations (FERV39k uses these folder/label names).
# They belong to the default 7-emotion set only: a declared set matches its own names.
_ALIASES = MappingProxyType({
    "happy": "Happiness", "happiness": "Happiness",
    "sad": "Sadness", "sadness": "Sadness",
    "neutral": "Neutral",
    "angry": "Anger", "anger": "Anger",
    "surprise": "Surprise", "surprised": "Surprise",
    "disgust": "Disgust", "disgusted": "Disgust",
    "fear": "Fear", "fearful": "Fear",
})


@dataclass(frozen=True)
class ClassSet:
    """The classes a pipeline predicts: class i is `names[i]` (label i).

    `aliases` maps other spellings (lower case) to a name; `prompts` holds prompt texts from a
    user's prompts file, prompt set name -> one text per class in `names` order (sets not given
    there are built by `tgdfer.prompts.build_prompt_sets`). `source` says where the set was
    declared, for messages.
    """

    names: tuple[str, ...]  # class names in label order
    aliases: Mapping[str, str] = field(default_factory=dict)  # lower-case spelling -> one of names
    prompts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # prompt set -> [C] texts
    source: str = "names"  # where the names were declared (a config field), named in errors
    prompts_source: str = ""  # the prompts file `prompts` came from, named in errors

    def __post_init__(self) -> None:
        names = self.names
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ConfigError(self.source, f"expected a list of class names, got {names!r}")
        if len(names) == 0:
            raise ConfigError(self.source, "the class set is empty; list at least 2 class names")
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise ConfigError(self.source, f"class names must be non-empty strings, got {bad[0]!r}")
        if len(names) < 2:
            raise ConfigError(self.source, f"a class set needs at least 2 classes, got only {names[0]!r}")
        seen: dict[str, str] = {}
        for n in names:
            key = n.strip().lower()
            if key in seen:
                what = f"classes {seen[key]!r} and {n!r} are" if seen[key] != n else f"class {n!r} is"
                raise ConfigError(self.source, f"{what} listed twice (class names are case-insensitive)")
            seen[key] = n
        object.__setattr__(self, "names", tuple(n.strip() for n in names))
        for alias, target in self.aliases.items():
            if target not in self.names:
                raise ConfigError(self.source, f"alias {alias!r} points to {target!r}, not a class of the set")
        for name, texts in self.prompts.items():
            if len(texts) != len(self.names):
                raise ConfigError(self.source, f"prompt set {name!r} has {len(texts)} texts for "
                                  f"{len(self.names)} classes")
        object.__setattr__(self, "aliases", MappingProxyType({k.lower(): v for k, v in self.aliases.items()}))
        object.__setattr__(self, "prompts", MappingProxyType({k: tuple(v) for k, v in self.prompts.items()}))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_default(self) -> bool:
        """True for the 7 basic emotions in DFEW order (whatever the prompts)."""
        return self.names == CLASSES

    def index(self, name: str) -> int:
        """0-based label of a class name or alias (case-insensitive); ValueError naming the set if unknown."""
        key = str(name).strip().lower()
        key = self.aliases.get(key, key).lower()
        for i, n in enumerate(self.names):
            if n.lower() == key:
                return i
        raise ValueError(f"unknown class {name!r}; expected one of {', '.join(self.names)}")

    @property
    def neutral(self) -> Optional[int]:
        """Label of the class named "neutral" (any case), the one without an expression episode; else None."""
        lower = [n.lower() for n in self.names]
        return lower.index("neutral") if "neutral" in lower else None

    def describe(self) -> str:
        """"7 classes (Happiness, Sadness, ...)" for messages."""
        return f"{len(self.names)} classes ({', '.join(self.names)})"


DEFAULT = ClassSet(CLASSES, aliases=_ALIASES, source="labels.DEFAULT")


def class_index(name: str) -> int:
    """0-based index of a default-set emotion name or alias (case-insensitive); ValueError if unknown."""
    try:
        return DEFAULT.index(name)
    except ValueError:
        raise ValueError(f"unknown emotion {name!r}; expected one of {', '.join(CLASSES)}") from None


def class_set(names: Sequence[str] | ClassSet | None, source: str = "names") -> ClassSet:
    """`names` as a ClassSet: None or the 7 default names -> DEFAULT (with its emotion aliases)."""
    if isinstance(names, ClassSet):
        return names
    if names is None or tuple(names) == CLASSES:
        return DEFAULT
    return ClassSet(tuple(names), source=source)


def classes_record(classes: ClassSet) -> Optional[dict[str, Any]]:
    """The fingerprint entry of a class set: {"names": [...]}; None for DEFAULT (old stores have none)."""
    return None if classes.is_default else {"names": list(classes.names)}


def stored_classes(fingerprint: Mapping[str, Any] | None) -> ClassSet:
    """The class set a store fingerprint (or a checkpoint's copy of it) records; DEFAULT without a record."""
    record = (fingerprint or {}).get("classes")
    return class_set(record["names"] if record else None, source="store fingerprint classes.names")


def check_same_classes(stored: ClassSet, wanted: ClassSet, where: str, field_name: str = "classes.names") -> None:
    """ConfigError naming both sets when `wanted` (a config) differs from `stored` (a store at `where`)."""
    if stored.names != wanted.names:
        raise ConfigError(field_name, f"{where} was built for {stored.describe()}, but the config declares "
                          f"{wanted.describe()}; extract a store for this class set (another store path) or "
                          "declare the store's classes in [classes] names")


def short_names(names: Sequence[str], width: int = 3) -> dict[str, str]:
    """name -> its shortest prefix of at least `width` letters that no other name shares (for narrow tables)."""
    out = {}
    for n in names:
        k = width
        while k < len(n) and any(o != n and o.lower().startswith(n[:k].lower()) for o in names):
            k += 1
        out[n] = n[:k]
    return out
