"""Caps on what one input may make tgdfer allocate: frame size, frames, decoded bytes, JSON, archives.

A shared file or a clip can claim any size: an 8192x8192 video of 347 KB, a 950 KB zip that
inflates to gigabytes, a checkpoint header saying `frames = 1e8`. Every such number is checked
against a cap here *before* the allocation it would size; an input over a cap is a one-line
`LimitError` naming the input, the cap and how to raise it. Where inputs are many (the clips of
a dataset) the error is that clip's failure and the run goes on.

The defaults fit every dataset tgdfer targets with room to spare (DFEW, FERV39k, MAFW frames are
at most 1920x1080). Raise a cap for one command with the global option, repeatable:

    tgdfer --limit frame_pixels=8192x8192 --limit clip_bytes=8GiB extract -c pipelines/x.toml

or for every command (and the worker processes they start) with the environment variable
`TGDFER_LIMITS="frame_pixels=8192x8192,clip_bytes=8GiB"`; from Python, `with limits.override(...)`.
The caps are listed in docs/limits.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError, TgdferError

ENV = "TGDFER_LIMITS"  # "name=value,name=value": how the caps reach every process of a command


LIMIT_HINT = "raise it with: tgdfer --limit"  # in every LimitError's message (how check tells them apart)


class LimitError(TgdferError):
    """An input over one of the caps: too large a frame, clip, header, nesting or archive."""


@dataclass(frozen=True)
class Limits:
    """The caps (every field can be raised with `--limit NAME=VALUE`)."""

    frame_pixels: int = 4096 * 4096  # width x height of one frame (image file or video stream header)
    clip_frames: int = 100_000  # frames in one clip, and any frame count read from a file (checkpoint, store)
    clip_bytes: int = 2 * 2**30  # decoded RGB bytes of the frames read from one clip at once
    json_bytes: int = 64 * 2**20  # one JSON document: a checkpoint or safetensors header, store attributes
    json_depth: int = 64  # nesting of one JSON document (lists and objects inside each other)
    archive_bytes: int = 32 * 2**30  # uncompressed bytes a zip (torch.save weights) declares in all
    archive_ratio: int = 100  # declared uncompressed size / size on disk of a zip: above it, a zip bomb
    feature_dim: int = 65_536  # a store's feature width (CLIP's are 512-1280)
    store_views: int = 1_024  # a store's views per clip (augmented copies; tgdfer's studies use up to 16)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def parse_value(name: str, text: str) -> int:
    """`4096`, `1e6`, `8192x8192` (a product) or `8GiB` / `512MiB` / `64KiB` (powers of 1024) -> int >= 1."""
    raw = text.strip().lower().replace("_", "")
    size = re.fullmatch(r"(\d+)x(\d+)", raw)
    unit = re.fullmatch(r"([\d.e+]+)\s*(k|m|g|t)i?b?", raw)
    try:
        if size:
            value = int(size.group(1)) * int(size.group(2))
        elif unit:
            value = float(unit.group(1)) * 1024 ** ("kmgt".index(unit.group(2)) + 1)
        else:
            value = float(raw)
    except ValueError:
        value = float("nan")
    if not value == value or value < 1 or value != int(value):  # NaN, below 1, fractional
        raise ConfigError(f"--limit {name}", f"{text!r} is not a whole number >= 1 (e.g. 4096, 1e6, 8192x8192, 8GiB)")
    return int(value)


def parse(items: list[str] | tuple[str, ...], base: Limits | None = None) -> Limits:
    """`["frame_pixels=8192x8192", ...]` laid over `base` (default: the caps now in force)."""
    base = base if base is not None else current()
    changes = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in Limits.names():
            raise ConfigError("--limit", f"{item!r}: expected NAME=VALUE with NAME one of {', '.join(Limits.names())}")
        changes[name] = parse_value(name, text)
    return dataclasses.replace(base, **changes)


@functools.lru_cache(maxsize=8)
def _from_env(text: str) -> Limits:
    return parse([p for p in text.split(",") if p.strip()], Limits())


def current() -> Limits:
    """The caps in force: the defaults with `TGDFER_LIMITS` laid over them."""
    return _from_env(os.environ.get(ENV, ""))


@contextlib.contextmanager
def override(limits: Limits) -> Iterator[Limits]:
    """Put `limits` in force for the block (and for processes started inside it), then restore the old ones."""
    old = os.environ.get(ENV)
    changed = {k: v for k, v in dataclasses.asdict(limits).items() if getattr(Limits(), k) != v}
    os.environ[ENV] = ",".join(f"{k}={v}" for k, v in changed.items())
    try:
        yield limits
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def _over(what: str, value: int, name: str, unit: str = "") -> LimitError:
    cap = getattr(current(), name)
    return LimitError(f"{what}: {value:,}{unit} is over the {name} limit of {cap:,}{unit} "
                      f"({LIMIT_HINT} {name}=N ...)")


# -- frames -----------------------------------------------------------------------------------------


def check_frame_size(where: str, width: int, height: int) -> None:
    """LimitError when one `width` x `height` frame is over `frame_pixels` (checked from headers, undecoded)."""
    if width * height > current().frame_pixels:
        raise _over(f"{where}: a {width}x{height} frame", width * height, "frame_pixels", " pixels")


def check_frame_count(where: str, frames: int) -> None:
    """LimitError when a clip (or a number read from a file) holds more than `clip_frames` frames."""
    if frames > current().clip_frames:
        raise _over(f"{where}: {frames:,} frames", frames, "clip_frames", " frames")


def check_store_shape(where: str, views: int, dim: int) -> None:
    """LimitError when a store declares more than `store_views` views or a feature width over
    `feature_dim` (checked from its attributes, before any array is allocated from them)."""
    if dim > current().feature_dim:
        raise _over(f"{where}: a feature width of {dim:,}", dim, "feature_dim")
    if views > current().store_views:
        raise _over(f"{where}: {views:,} views a clip", views, "store_views")


def check_decode(where: str, frames: int, width: int, height: int) -> None:
    """LimitError when decoding `frames` RGB frames of `width` x `height` at once needs more than `clip_bytes`."""
    check_frame_size(where, width, height)
    need = frames * width * height * 3
    if need > current().clip_bytes:
        raise _over(f"{where}: {frames} frames of {width}x{height}", need, "clip_bytes", " bytes")


# -- JSON -------------------------------------------------------------------------------------------


def depth(value: Any) -> int:
    """How deep lists and dicts nest in `value` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((c, level + 1) for c in children)
    return deepest


def check_json_size(where: str, size: int) -> None:
    """LimitError when a JSON document of `size` bytes is over `json_bytes` (check before reading it)."""
    if size > current().json_bytes:
        raise _over(f"{where}: a {size:,}-byte JSON document", size, "json_bytes", " bytes")


def check_depth(where: str, value: Any) -> Any:
    """`value` (parsed JSON) when it nests at most `json_depth` deep, else LimitError."""
    d = depth(value)
    if d > current().json_depth:
        raise _over(f"{where}: JSON nested {d} deep", d, "json_depth")
    return value


def load_json(text: str | bytes, where: str) -> Any:
    """JSON within the caps: size, then nesting (RecursionError and bad syntax become one TgdferError line)."""
    check_json_size(where, len(text))
    try:
        value = json.loads(text)
    except RecursionError:
        raise _over(f"{where}: JSON nested too deep to parse", current().json_depth + 1, "json_depth") from None
    except (ValueError, TypeError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise TgdferError(f"{where}: not valid JSON ({e})") from None
    return check_depth(where, value)


# -- archives ---------------------------------------------------------------------------------------


def check_zip(path: str | Path) -> None:
    """LimitError for a zip that declares more than `archive_bytes` in all, or more than `archive_ratio`
    times its size on disk (a zip bomb); TgdferError for one whose directory cannot be read. Reads the
    central directory only, nothing is inflated."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as e:
        raise TgdferError(f"{path}: a damaged zip archive ({e})") from None
    caps = current()
    if declared > caps.archive_bytes:
        raise _over(f"{path}: the archive declares {declared:,} bytes uncompressed", declared, "archive_bytes",
                    " bytes")
    ratio = declared / max(1, path.stat().st_size)
    if ratio > caps.archive_ratio:
        raise LimitError(f"{path}: the archive declares {declared:,} bytes uncompressed, {ratio:,.0f} times its "
                         f"size on disk, over the archive_ratio limit of {caps.archive_ratio} (a zip bomb?); "
                         f"{LIMIT_HINT} archive_ratio=N ...")


def safetensors_header_length(path: str | Path) -> int:
    """The JSON header length a safetensors file declares, checked against its size and `json_bytes`."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise TgdferError(f"{path}: not a safetensors file ({size} bytes, shorter than the 8-byte header length)")
    n = int.from_bytes(head, "little")
    if n > size - 8:
        raise TgdferError(f"{path}: a damaged safetensors file (its header claims {n:,} bytes, the file holds "
                          f"{size - 8:,} after the length)")
    check_json_size(str(path), n)
    return n
