"""Text prompts per class: the built-in sets for the 7 emotions, and user prompt files for any class set.

Three prompt sets (paper Sec. 3.3.1, Table 5), each one text per class in label order:
  - "class_names": the bare class name;
  - "class_sentences": the class name in a short sentence (DFER-CLIP's "class with context" idea,
    our own wording);
  - "descriptors": the facial movements of each emotion in plain words (the paper's fine-grained
    inputs y', "a smiling mouth, widened eyes"). They are written from FACS, the prototype action units (AU) of each basic emotion (Ekman & Friesen's
    EMFACS), one phrase per AU: happiness AU6+12, sadness AU1+4+15+17 (with drooping lids),
    anger AU4+5+7+23, surprise AU1+2+5+26, disgust AU9+10+15+16 (+4), fear AU1+2+4+5+7+20+26; neutral
    is the absence of action.

Which set feeds which prompt (`head.HeadConfig`): the fine prompt X^FP (Eq. 6, used in Eq. 8-9) is
Table 5's text prompt: "Class" (fixed: class_sentences; learnable: context + class_names, the
paper's best setting and the default) or "Descriptors" (descriptors). The coarse prompt X^CP (Eq. 10)
comes "from categorical labels" (Sec. 3.3.1): `coarse_text`, fixed class_sentences in the recommended
profile, class_names with their own learnable context in the paper profile.

Another class set (`labels.ClassSet`, a pipeline's `[classes]`) takes the built-in texts of its
classes that are one of the 7 emotions and, for the others, the name itself and the sentence
"a photo of a face showing <name>."; descriptors of a class outside the 7 only come from a prompts
file (`load_prompt_file`, format in docs/classes.md: TOML/JSON tables per prompt set, or DFER-CLIP's
`models/Text.py` lists, read without executing it). A set some class has no text for is not built.

Eq. 6 puts M learnable context tokens before the tokenised text, so a prompt must fit in
`context_length - 2 - n_ctx` BPE tokens (start and end tokens take two). The built-in prompts are
at most 22 tokens, so with 8 context tokens the whole sequence fits in 32: the text encoder can be
run cut at 32 tokens (exact under the causal mask, about twice as fast).
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional

from .errors import ConfigError
from .labels import CLASSES, DEFAULT, ClassSet

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



# -- prompts of any class set -------------------------------------------------------------------

_WHAT = {"descriptors": "descriptor", "class_names": "class_names prompt", "class_sentences": "class_sentences prompt"}


def default_prompt_sets(classes: ClassSet = DEFAULT) -> dict[str, list[str]]:
    """The prompt sets tgdfer can write for `classes` without a prompts file, name -> [C] texts.

    A class named like one of the 7 emotions (any case) gets its built-in texts; another class its
    name (lower case, "_" as a space) and "a photo of a face showing <name>."; descriptors exist
    only for the 7, so the set is left out when any class is outside them.
    """
    builtin = {c.lower(): i for i, c in enumerate(CLASSES)}
    sets: dict[str, list[Optional[str]]] = {name: [] for name in PROMPT_SETS}
    for name in classes.names:
        i = builtin.get(name.lower())
        words = name.replace("_", " ").strip().lower()
        for set_name, texts in PROMPT_SETS.items():
            if i is not None:
                sets[set_name].append(texts[i])
            elif set_name == "class_names":
                sets[set_name].append(words)
            elif set_name == "class_sentences":
                sets[set_name].append(f"a photo of a face showing {words}.")
            else:
                sets[set_name].append(None)
    return {k: list(v) for k, v in sets.items() if all(t is not None for t in v)}  # type: ignore[misc]


def _read(path: Path) -> Any:
    """Parse a TOML, JSON or DFER-CLIP-style Python file; ConfigError naming the file on any problem.

    A `.py` file is parsed, never run: its top-level `name = [...]` list literals come back as
    {name: (line, list)} (`ast.literal_eval` of each list; anything else in the file is ignored).
    """
    if not path.is_file():
        raise ConfigError(str(path), "prompts file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a BOM (Notepad) is not part of the prompts
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), f"is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8") from e
    except OSError as e:
        raise ConfigError(str(path), f"cannot be read ({e.strerror or e})") from e
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix == ".py":
            return _python_lists(path, text)
        else:
            raise ConfigError(str(path), "prompt files must be .toml or .json (or a DFER-CLIP style Text.py)")
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"invalid TOML: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}", f"invalid JSON: {e.msg}") from None
    except RecursionError:
        raise ConfigError(str(path), "nested too deep") from None
    return data


def _python_lists(path: Path, text: str) -> dict[str, tuple[int, Any]]:
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}", f"invalid Python syntax: {e.msg}") from None
    out = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.List)):
            name = node.targets[0].id
            try:
                out[name] = (node.lineno, ast.literal_eval(node.value))
            except (ValueError, SyntaxError):
                if _DFER_CLIP_LIST.match(name):
                    raise ConfigError(f"{path}:{node.lineno}", f"{name} must be a list of string literals") from None
    return out


# DFER-CLIP's models/Text.py: class_names_<C>, class_names_with_context_<C>, class_descriptor_<C>
_DFER_CLIP_LIST = re.compile(r"^(class_names_with_context|class_names|class_descriptor)(?:_(\d+))?$")
_DFER_CLIP_SETS = {"class_names": "class_names", "class_names_with_context": "class_sentences",
                   "class_descriptor": "descriptors"}


def _from_dfer_clip(path: Path, lists: dict[str, tuple[int, Any]], classes: ClassSet) -> dict[str, list[Any]]:
    """Prompt sets from DFER-CLIP-style lists for len(classes) classes, in the file's (= the set's) order."""
    n = len(classes)
    found: dict[str, tuple[int, str, Any]] = {}
    sizes = set()
    for var, (line, value) in lists.items():
        m = _DFER_CLIP_LIST.match(var)
        if m is None:
            continue
        sizes.add(m.group(2) or "any")
        if m.group(2) is None or int(m.group(2)) == n:
            found[_DFER_CLIP_SETS[m.group(1)]] = (line, var, value)
    if not found:
        have = f"lists for {', '.join(sorted(sizes))} classes" if sizes else "no class_names_<C> / " \
            "class_names_with_context_<C> / class_descriptor_<C> lists"
        raise ConfigError(str(path), f"no prompt lists for the {n} declared classes (class_names_{n}, "
                          f"class_names_with_context_{n}, class_descriptor_{n}); the file has {have}")
    for set_name, (line, var, value) in found.items():
        if not isinstance(value, list) or len(value) != n:
            got = len(value) if isinstance(value, list) else type(value).__name__
            raise ConfigError(f"{path}:{line}", f"{var} must list {n} texts, one per class in the order "
                              f"{', '.join(classes.names)}; got {got}")
    if "class_names" in found:  # the file's own class order must be the declared one
        line, var, value = found["class_names"]
        for i, item in enumerate(value):
            try:
                ok = isinstance(item, str) and classes.index(item.strip().rstrip(".")) == i
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(f"{path}:{line}", f"{var} lists {item!r} as class {i + 1}, where the class set has "
                                  f"{classes.names[i]!r}; declare [classes] names in the file's order")
    return {set_name: list(value) for set_name, (_, _, value) in found.items()}


def _join(path: Path, where: str, what: str, value: Any) -> str:
    """A class's text: a string, or a list of descriptor phrases joined as "a, b, c."."""
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return ", ".join(v.strip().rstrip(".").strip() for v in value) + "."
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ConfigError(str(path), f"{where}: the {what} must be a non-empty string (or a list of them), got {value!r}")


def _set_from_mapping(path: Path, set_name: str, data: dict[str, Any], classes: ClassSet,
                      prefix: str) -> list[str]:
    what = _WHAT.get(set_name, f"{set_name} prompt")
    out: list[Optional[str]] = [None] * len(classes)
    seen: dict[int, str] = {}
    for key, value in data.items():
        try:
            i = classes.index(key)
        except ValueError:
            hint = f" (or a prompt set table: {', '.join(PROMPT_SETS)})" if not prefix else ""
            raise ConfigError(str(path), f"unknown class {key!r} (key {prefix}{key}); expected one of "
                              f"{', '.join(classes.names)}{hint}") from None
        if i in seen:
            raise ConfigError(str(path), f"class {classes.names[i]} is given twice ({seen[i]!r} and {key!r})")
        seen[i] = key
        out[i] = _join(path, f"class {classes.names[i]}", what, value)
    missing = [classes.names[i] for i in range(len(classes)) if i not in seen]
    if missing:
        raise ConfigError(str(path), f"no {what} for class {', '.join(missing)} (in {prefix.rstrip('.') or 'the file'}); "
                          f"the file must give one for every class: {', '.join(classes.names)}")
    return out  # type: ignore[return-value]


def _set_from_list(path: Path, set_name: str, data: list[Any], classes: ClassSet) -> list[str]:
    what = _WHAT.get(set_name, f"{set_name} prompt")
    if len(data) != len(classes):
        raise ConfigError(str(path), f"a list must hold {len(classes)} {what}s in the order "
                          f"{', '.join(classes.names)}; got {len(data)}")
    return [_join(path, f"class {name}", what, v) for name, v in zip(classes.names, data)]


def load_prompt_file(path: str | Path, classes: ClassSet = DEFAULT) -> dict[str, tuple[str, ...]]:
    """Prompt texts for `classes` from a user file: prompt set name -> one text per class, in label order.

    Formats (docs/classes.md):
      - TOML/JSON with a table per prompt set (`[descriptors]`, `[class_names]`, `[class_sentences]`),
        each mapping class name -> text or -> a list of descriptor phrases (joined as "a, b, c."),
        or holding a list of texts in label order;
      - TOML/JSON mapping class name -> descriptor at the top level, or a top-level list of
        descriptors in label order (descriptors only);
      - DFER-CLIP's `models/Text.py`: `class_names_<C>`, `class_names_with_context_<C>`,
        `class_descriptor_<C>` lists (C = the number of classes) for class_names, class_sentences and
        descriptors; the file is parsed, never executed.
    Class keys are the set's names (any case; the emotion aliases for the default set). Every
    given set must cover every class. Errors are ConfigErrors naming the file and the key.
    Token budgets are checked where the prompts are encoded (`build_prompt_sets`).
    """
    path = Path(path)
    data = _read(path)
    if path.suffix.lower() == ".py":
        sets = _from_dfer_clip(path, data, classes)
        return {name: tuple(_set_from_list(path, name, texts, classes)) for name, texts in sets.items()}
    if isinstance(data, list):
        return {"descriptors": tuple(_set_from_list(path, "descriptors", data, classes))}
    if not isinstance(data, dict):
        raise ConfigError(str(path), f"expected a mapping class name -> descriptor, a table per prompt set, or a "
                          f"list of {len(classes)} descriptors")
    set_keys = [k for k in data if k in PROMPT_SETS and not _is_class(classes, k)]
    if not set_keys:  # class name -> descriptor at the top level
        return {"descriptors": tuple(_set_from_mapping(path, "descriptors", data, classes, ""))}
    others = [k for k in data if k not in set_keys]
    if others:
        kind = "class" if _is_class(classes, others[0]) else "prompt set"
        raise ConfigError(str(path), f"unknown {kind} key {others[0]!r} next to the prompt set tables "
                          f"{', '.join(set_keys)}; prompt sets are {', '.join(PROMPT_SETS)}, each a table of "
                          "class name -> text")
    out = {}
    for name in set_keys:
        value = data[name]
        if isinstance(value, dict):
            out[name] = tuple(_set_from_mapping(path, name, value, classes, f"{name}."))
        elif isinstance(value, list):
            out[name] = tuple(_set_from_list(path, name, value, classes))
        else:
            raise ConfigError(str(path), f"{name} must be a table of class name -> text or a list of "
                              f"{len(classes)} texts, got {value!r}")
    return out


def _is_class(classes: ClassSet, key: str) -> bool:
    try:
        classes.index(key)
        return True
    except ValueError:
        return False


def check_prompt_lengths(sets: Mapping[str, Any], classes: ClassSet, source: str, *, n_ctx: int = DEFAULT_N_CTX,
                         context_length: int = DEFAULT_CONTEXT_LENGTH, tokenizer: Any = None) -> None:
    """ConfigError naming `source`, the class and the budget when a prompt does not fit with n_ctx context tokens."""
    tokenizer = tokenizer or _default_tokenizer()
    budget = token_budget(context_length, n_ctx)
    for set_name, texts in sets.items():
        for name, text in zip(classes.names, texts):
            n = count_tokens(text, tokenizer)
            if n > budget:
                what = _WHAT.get(set_name, f"{set_name} prompt")
                raise ConfigError(source, f"class {name}: the {what} has {n} tokens but at most {budget} fit "
                                  f"({context_length}-token context, {n_ctx} learnable context tokens, start and end "
                                  f"tokens); shorten it")


def load_descriptors(path: str | Path, *, classes: ClassSet = DEFAULT, n_ctx: int = DEFAULT_N_CTX,
                     context_length: int = DEFAULT_CONTEXT_LENGTH, tokenizer: Any = None) -> list[str]:
    """Read the class descriptors of `classes` (default: the 7 emotions) from a user file, in label order.

    Any `load_prompt_file` format; the file must give descriptors. Each text must fit
    `token_budget(context_length, n_ctx)`. Errors are ConfigErrors that name the file and the class.
    """
    path = Path(path)
    sets = load_prompt_file(path, classes)
    if "descriptors" not in sets:
        raise ConfigError(str(path), f"gives no descriptors (it has {', '.join(sets)})")
    check_prompt_lengths({"descriptors": sets["descriptors"]}, classes, str(path), n_ctx=n_ctx,
                         context_length=context_length, tokenizer=tokenizer)
    return list(sets["descriptors"])


def build_prompt_sets(descriptors_file: str | Path | None = None, *, classes: ClassSet = DEFAULT,
                      **check: Any) -> dict[str, list[str]]:
    """Every prompt set tgdfer can write for `classes`, name -> [C] prompts in label order.

    The defaults (`default_prompt_sets`), replaced by the sets of the class set's prompts file
    (`classes.prompts`), then by `descriptors_file` (`extract.descriptors`). `check` goes to the
    token-budget check (n_ctx, context_length, tokenizer); the built-in 7-emotion texts are known
    to fit and are not re-counted.
    """
    sets = default_prompt_sets(classes)
    given = {name: list(texts) for name, texts in classes.prompts.items()}
    if given or not classes.is_default:
        custom = given if classes.is_default else {**sets, **given}
        check_prompt_lengths(custom, classes, classes.prompts_source or classes.source, **check)
    sets.update(given)
    if descriptors_file is not None:
        sets["descriptors"] = load_descriptors(descriptors_file, classes=classes, **check)
    return sets
