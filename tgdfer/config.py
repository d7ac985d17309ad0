"""TOML configs mapped one-to-one onto dataclasses, with dotted CLI overrides.

A pipeline file (`pipelines/*.toml`) has one table per stage (`[synth]`, `[extract]`, ...). Each
table is built into that stage's dataclass by `build`, which rejects unknown fields and wrong
types with a message naming the field. Overrides look like `extract.batch_size=64`; the value is
parsed as TOML (so `64`, `true`, `"text"`, `[1, 2]` all work) and falls back to a bare string.

A field whose metadata has "not_in_files" (EncoderConfig.trust_weights) is set only by code (the CLI
flag, a Python argument): a table that names it is a ConfigError, whether it comes from a file or
a `--set` (which a sweep file's `set = [...]` also feeds), and `to_dict` leaves it out of records.

TOML has no null: the string `"none"` (any case) sets an optional field (`Optional[int]`,
`bool | None`, `Optional[str]`, ...) to None, e.g. `head.stride = "none"`, `--set train.fold=none`,
as the sweep files write it. `to_toml` writes None back the same way, so printed configs read back.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, os_error

C = TypeVar("C")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; ConfigError naming the file on a missing file or a syntax error."""
    path = Path(path)
    try:
        data = path.read_bytes()
        return tomllib.loads(data.decode("utf-8-sig"))  # a BOM, as some Windows editors write, is no TOML error
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"invalid TOML: {e}") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8 text: a binary or Latin-1 file
        raise ConfigError(str(path), f"not a TOML file: byte {e.start} is not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(str(path), "invalid TOML: tables or arrays nested too deep") from None
    except OSError as e:
        raise os_error(path, e, "read the config file") from e


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=1` -> (["a", "b"], 1). The value is read as TOML, else kept as a plain string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(text, "an override must look like section.field=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    keys = [k.strip() for k in key.strip().split(".")]
    if not all(keys):
        raise ConfigError(text, "an empty name in the key; an override must look like section.field=value")
    return keys, value


def expand_home(value: Any) -> Any:
    """`value` with every string that starts with `~/` (or is `~`) expanded to the home folder, in nested
    tables and lists: paths in a config (`out = "~/runs"`) mean what a shell would make of them, not a
    folder named `~` in the working directory."""
    if isinstance(value, dict):
        return {k: expand_home(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_home(v) for v in value]
    if isinstance(value, str) and (value == "~" or value.startswith("~/")):
        return os.path.expanduser(value)
    return value


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `cfg` with each `dotted.key=value` set (tables are created as needed; a table value
    such as `train={epochs=2}` is merged into the table there, not put in its place)."""
    out = _deepcopy_tables(cfg)
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(text, f"{k!r} is a value, not a table")
        old = node.get(keys[-1])  # a table laid over a table merges, as a pipeline over its base does:
        node[keys[-1]] = merge_tables(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
    return out


def merge_tables(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` laid over `base`: tables merged key by key, any other value of `top` replaces `base`'s."""
    out = _deepcopy_tables(base)
    for k, v in top.items():
        out[k] = merge_tables(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _deepcopy_tables(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy_tables(v) if isinstance(v, dict) else v for k, v in d.items()}


def build(cls: type[C], table: dict[str, Any] | None, section: str) -> C:
    """Build dataclass `cls` from a TOML table; unknown fields or wrong types raise ConfigError.

    After construction the dataclass's own `__post_init__` checks ranges; its ValueErrors are
    re-raised as ConfigError prefixed with the section.
    """
    table = dict(table or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}",
                          f"unknown field{did_you_mean(unknown[0], names)}; known fields: {', '.join(sorted(names))}")
    for f in dataclasses.fields(cls):
        if f.name in table and "not_in_files" in f.metadata:
            raise ConfigError(f"{section}.{f.name}", f.metadata["not_in_files"])
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in table.items()}
    for k, v in kwargs.items():  # a config table's text (paths, names) never holds a control character
        if isinstance(v, str):
            _no_control_characters(v, f"{section}.{k}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{section}.{e.field}", str(e).split(": ", 1)[-1]) from None


def _coerce(value: Any, hint: Any, field: str) -> Any:
    """Check `value` against a simple type hint (int, float, str, bool, Optional, Literal, tuple, list)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or is_none(value)):
            return None
        if isinstance(value, str) and os.PathLike in args:
            _no_control_characters(value, field)  # its own message, not "expected a path"
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, field)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(field, f"expected {describe(hint)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(field, f"{value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(field, f"expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(v, item, field) for v in value] if item is not Any else list(value)
        return tuple(items) if origin is tuple else items
    if origin is Sequence:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(field, f"expected {describe(hint)}, got {value!r}")
        return [_coerce(v, args[0], field) for v in value] if args else list(value)
    if origin is Mapping:
        if not isinstance(value, dict):
            raise ConfigError(field, f"expected {describe(hint)}, got {value!r}")
        return {k: _coerce(v, args[1], field) for k, v in value.items()} if args else value
    if hint is os.PathLike:
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(field, f"expected a path, got {value!r}")
        return _no_control_characters(value, field) if isinstance(value, str) else value
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(field, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(field, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(field, f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(field, f"expected a string, got {value!r}")
        return value
    return value


_TOML_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _no_control_characters(value: str, field: str) -> str:
    """`value`, or ConfigError where it holds a control character: a path or a config table's text never does
    (a reader's `delimiter` may be a tab: reader arguments typed `str` are not checked), but a Windows path
    in a double-quoted TOML string does, its backslashes read as escapes ("C:\\runs" is C:, a carriage
    return, "uns"), which would name a folder no one can type."""
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        shown = _TOML_ESCAPES.get(bad, f"\\x{ord(bad):02x}")
        raise ConfigError(field, f"{value!r} holds a control character ({shown}): in a double-quoted TOML string a "
                                 "backslash starts an escape, so a Windows path such as \"C:\\runs\" reads as C:, a "
                                 "carriage return, uns; write it in single quotes ('C:\\runs') or with forward slashes")
    return value


def check_type(value: Any, hint: Any, field: str) -> None:
    """ConfigError naming `field` when `value` does not fit the type hint (what `build` checks for a
    dataclass field), e.g. for a reader's keyword arguments from a `[data] args` table."""
    _coerce(value, hint, field)


def describe(hint: Any) -> str:
    """A type hint in words, for messages: `str | None` -> 'a string or "none"'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        words = list(dict.fromkeys(describe(a) for a in args))
        if "a string" in words and "a path" in words:
            words.remove("a string")
        return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]
    if origin is typing.Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin in (Sequence, list, tuple):
        return f"a list ({describe(args[0])} each)" if args else "a list"
    if origin in (Mapping, dict):
        return f"a table ({describe(args[-1])} each)" if args else "a table"
    names = {type(None): '"none"', str: "a string", int: "an integer", float: "a number", bool: "true or false",
             os.PathLike: "a path"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def is_none(value: Any) -> bool:
    """True for the TOML spelling of None: the string "none" (any case)."""
    return isinstance(value, str) and value.strip().lower() == "none"


def did_you_mean(name: str, known: Any) -> str:
    """' (did you mean "x"?)' for the closest of `known` to a misspelt `name`, else ''."""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def toml_value(value: Any) -> str:
    """A TOML literal: None as "none" (see the module docstring), tuples as arrays, tables inline."""
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if value == value and abs(value) != float("inf") else \
            ("nan" if value != value else ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(tables: dict[str, dict[str, Any]]) -> str:
    """`{section: {field: value}}` as a TOML document (one [section] per table), readable by load_toml."""
    parts = []
    for section, table in tables.items():
        parts.append(f"[{section}]")
        parts += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        parts.append("")
    return "\n".join(parts)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (tuples as lists), ready for TOML/JSON; "not_in_files" fields left out."""
    def conv(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    skip = {f.name for f in dataclasses.fields(cfg) if "not_in_files" in f.metadata}
    return {k: conv(v) for k, v in dataclasses.asdict(cfg).items() if k not in skip}


def table_diff(before: dict[str, Any], now: dict[str, Any],
               ignore: frozenset[str] = frozenset()) -> list[tuple[str, Any, Any]]:
    """`(section.field, before, now)` for every field of two `{section: {field: value}}` records that differs.

    Only fields present on both sides count (a field added or removed by another tgdfer version
    says nothing about this run); `ignore` names `section.field`s that cannot change a result.
    """
    return [(f"{s}.{k}", before[s][k], v) for s, table in now.items()
            if isinstance(table, dict) and isinstance(before.get(s), dict)
            for k, v in table.items() if k in before[s] and before[s][k] != v and f"{s}.{k}" not in ignore]
