"""Text prompts for the 7 classes (index i is class i of labels.CLASSES), and user descriptor files.

Three prompt sets (paper Sec. 3.3.1, Table 5):
  - "class_names": the bare class name, the coarse prompt X^CP;
  - "class_sentences": the class name in a short sentence (DFER-CLIP's "class with context" idea,
    our own wording);
  - "descriptors": the facial movements of each emotion in plain words, the fine prompt X^FP. They
    are written from FACS, the prototype action units (AU) of each basic emotion (Ekman & Friesen's
    EMFACS), one phrase per AU: happiness AU6+12, sadness AU1+4+15+17 (with drooping lids),
    anger AU4+5+7+23, surprise AU1+2+5+26, disgust AU9+10+15+16 (+4), fear AU1+2+4+5+7+20+26; neutral
    is the absence of action.

Eq. 6 puts M learnable context tokens before the tokenised text, so a prompt must fit in
`context_length - 2 - n_ctx` BPE tokens (start and end tokens take two). The built-in prompts are
at most 22 tokens, so with 8 context tokens the whole sequence fits in 32: the text encoder can be
run cut at 32 tokens (exact under the causal mask, about twice as fast).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import ConfigError
from .labels import CLASSES, NUM_CLASSES, class_index

CLASS_NAMES: tuple[str, ...] = tuple(c.lower() for c in CLASSES)

CLASS_SENTENCES: tuple[str, ...] = (
    "a photo of a face showing happiness.",
    "a photo of a face showing sadness.",
    "a photo of a face with a neutral expression.",
    "a photo of a face showing anger.",
    "a photo of a face showing surprise.",
    "a photo of a face showing disgust.",
    "a photo of a face showing fear.",
)

DESCRIPTORS: tuple[str, ...] = (
    # Happiness: AU6 cheek raiser, AU12 lip corner puller
    "cheeks raised, lip corners pulled up in a smile, crow's-feet wrinkles at the outer eye corners.",
    # Sadness: AU1 inner brow raiser, AU4 brow lowerer, AU41 lid droop, AU15 lip corner depressor, AU17 chin raiser
    "inner brows raised and drawn together, drooping eyelids, lip corners pulled down, chin raised.",
    # Neutral: no action units
    "relaxed brows and smooth forehead, eyes open at rest, lips closed and relaxed, no muscle tension.",
    # Anger: AU4 brow lowerer, AU5 upper lid raiser, AU7 lid tightener, AU23/24 lip tightener/presser
    "brows lowered and drawn together, glaring eyes with tensed lids, lips pressed tightly together.",
    # Surprise: AU1+2 inner and outer brow raiser, AU5 upper lid raiser, AU26 jaw drop
    "brows raised high, upper eyelids raised, eyes wide open, jaw dropped and mouth hanging open.",
    # Disgust: AU9 nose wrinkler, AU10 upper lip raiser, AU16 lower lip depressor, AU15, AU4
    "nose wrinkled, upper lip raised, lower lip pushed down, lip corners pulled down, brows lowered.",
    # Fear: AU1+2+4 brows raised and drawn together, AU5+7 wide eyes with tense lids, AU20 lip stretcher, AU26
    "brows raised and drawn together, eyes wide with tensed lower lids, lips stretched sideways, jaw dropped.",
)

# name -> 7 prompts, index i = class i. Read-only: build_prompt_sets returns fresh lists.
PROMPT_SETS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "class_names": CLASS_NAMES,
    "class_sentences": CLASS_SENTENCES,
    "descriptors": DESCRIPTORS,
})

DEFAULT_N_CTX = 8  # learnable context tokens in front of each prompt (Eq. 6; the reference code's 8)
DEFAULT_CONTEXT_LENGTH = 77  # CLIP's text context


def token_budget(context_length: int = DEFAULT_CONTEXT_LENGTH, n_ctx: int = DEFAULT_N_CTX) -> int:
    """BPE tokens a prompt may use: the context minus start/end tokens and the learnable context."""
    return context_length - 2 - n_ctx


def _default_tokenizer() -> Any:
    import open_clip

    return open_clip.SimpleTokenizer()


def count_tokens(text: str, tokenizer: Any = None) -> int:
    """BPE tokens of `text` without start/end tokens (`tokenizer` needs `.encode`; default CLIP's BPE)."""
    return len((tokenizer or _default_tokenizer()).encode(text))


def _read(path: Path) -> Any:
    """Parse a TOML or JSON file; ConfigError naming the file on any problem."""
    if not path.is_file():
        raise ConfigError(str(path), "descriptor file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(str(path), "descriptor files must be .toml or .json")
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"invalid TOML: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}", f"invalid JSON: {e.msg}") from None
    if isinstance(data, dict) and set(data) == {"descriptors"}:
        data = data["descriptors"]  # allow a `descriptors` table/array around the content
    return data


def _from_mapping(path: Path, data: dict[str, Any]) -> list[str | None]:
    out: list[str | None] = [None] * NUM_CLASSES
    seen: dict[int, str] = {}
    for key, value in data.items():
        try:
            i = class_index(key)
        except ValueError:
            raise ConfigError(str(path), f"unknown class {key!r}; expected one of {', '.join(CLASSES)}") from None
        if i in seen:
            raise ConfigError(str(path), f"class {CLASSES[i]} is given twice ({seen[i]!r} and {key!r})")
        seen[i] = key
        out[i] = value
    missing = [CLASSES[i] for i in range(NUM_CLASSES) if i not in seen]
    if missing:
        raise ConfigError(str(path), f"no descriptor for class {', '.join(missing)}; "
                          f"the file must describe all of {', '.join(CLASSES)}")
    return out


def load_descriptors(path: str | Path, *, n_ctx: int = DEFAULT_N_CTX,
                     context_length: int = DEFAULT_CONTEXT_LENGTH, tokenizer: Any = None) -> list[str]:
    """Read 7 class descriptors from a user file, in CLASSES order.

    The file is TOML or JSON: a mapping class name -> text (names or aliases such as "happy",
    case-insensitive) or a list of 7 texts in the order of labels.CLASSES, either at the top
    level or under a `descriptors` key. Each text must fit `token_budget(context_length, n_ctx)`.
    Errors are ConfigErrors that name the file and the class.
    """
    path = Path(path)
    data = _read(path)
    if isinstance(data, dict):
        texts = _from_mapping(path, data)
    elif isinstance(data, list):
        if len(data) != NUM_CLASSES:
            raise ConfigError(str(path), f"a list must hold {NUM_CLASSES} descriptors in the order "
                              f"{', '.join(CLASSES)}; got {len(data)}")
        texts = list(data)
    else:
        raise ConfigError(str(path), "expected a mapping class name -> descriptor, or a list of 7 descriptors")
    tokenizer = tokenizer or _default_tokenizer()
    budget = token_budget(context_length, n_ctx)
    for name, text in zip(CLASSES, texts):
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(str(path), f"class {name}: the descriptor must be a non-empty string, got {text!r}")
        n = count_tokens(text, tokenizer)
        if n > budget:
            raise ConfigError(str(path), f"class {name}: the descriptor has {n} tokens but at most {budget} fit "
                              f"({context_length}-token context, {n_ctx} learnable context tokens, start and end "
                              f"tokens); shorten it")
    return [t.strip() for t in texts]  # type: ignore[union-attr]


def build_prompt_sets(descriptors_file: str | Path | None = None, **check: Any) -> dict[str, list[str]]:
    """All prompt sets as name -> 7 prompts; `descriptors_file` replaces the built-in descriptors.

    `check` goes to `load_descriptors` (n_ctx, context_length, tokenizer).
    """
    sets = {name: list(prompts) for name, prompts in PROMPT_SETS.items()}
    if descriptors_file is not None:
        sets["descriptors"] = load_descriptors(descriptors_file, **check)
    return sets
