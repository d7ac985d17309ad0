"""Checkpoints that cannot run code: tensors in a safetensors file, everything else as JSON in its header.

A training checkpoint is a nested state (head weights, optimiser and scheduler state, RNG state,
history, config, store fingerprint). `save_state` walks it once: every tensor goes into the
safetensors tensor table under its path (`head_state/fine.pos`, `opt_state/state/#3/momentum_buffer`),
and the rest becomes one JSON document (stored as the `tgdfer_state` entry of the header's
metadata) in which a tensor is `{"__tensor__": key}`. Loading reads the header as data and the
tensors as raw bytes: no unpickling, so a crafted file can be wrong but never executes anything.
See `docs/sharing.md` for why this format and not `torch.load(weights_only=True)`.

Encoded types: dict (string keys; other keys as `{"__items__": [[k, v], ...]}`), list, tuple
(`{"__tuple__": [...]}`), str, int, float (NaN and inf included), bool, None, torch.Tensor.
Anything else (numpy arrays, custom classes) is a programming error: convert it first.

Checkpoints of tgdfer 0.1 were `torch.save` pickles (`last.pt`, `best.pt`); `convert_legacy`
turns one into this format, unpickling it with `weights_only=True`, or fully only when the user
says they trust the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .errors import TgdferError, os_error
from .limits import load_json, safetensors_header_length
from .tmpfiles import tmp_path
from .weights import file_format, first_line, is_torchscript_archive

FORMAT = "tgdfer-checkpoint/1"  # the header's `format` entry
SUFFIX = ".safetensors"
_STATE_KEY = "tgdfer_state"


class CheckpointError(TgdferError):
    """A checkpoint that cannot be read: missing, torn, foreign, or in the old pickle format."""


class LegacyCheckpointError(CheckpointError):
    """A tgdfer 0.1 pickle checkpoint: refused, with how to convert it."""


# -- encoding ---------------------------------------------------------------------------------------


def _child(key: str, name: Any) -> str:
    return f"{key}/{name}" if key else str(name)


def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        shared = t.numel() and any(t.untyped_storage().data_ptr() == o.untyped_storage().data_ptr()
                                   for o in tensors.values() if o.numel())
        tensors[key] = t.clone() if shared else t  # safetensors refuses tensors that share memory
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, _child(key, k), tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, _child(key, f"#k{i}"), tensors), _encode(v, _child(key, f"#{i}"), tensors)]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, list):
        return [_encode(v, _child(key, i), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, _child(key, i), tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "shape", None) == ():  # a numpy scalar
        return obj.item()
    raise TypeError(f"{key}: cannot store a {type(obj).__name__} in a checkpoint (tensors, JSON values only)")


def _decode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__tensor__"}:
        if obj["__tensor__"] not in tensors:
            raise CheckpointError(f"{where}: the header names a tensor {obj['__tensor__']!r} the file does not hold")
        return tensors[obj["__tensor__"]]
    if set(obj) == {"__tuple__"}:
        return tuple(_decode(v, tensors, where) for v in obj["__tuple__"])
    if set(obj) == {"__items__"}:
        return {_decode(k, tensors, where): _decode(v, tensors, where) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors, where) for k, v in obj.items()}


def dumps(state: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint file holding `state`."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, "", tensors)
    meta = {"format": FORMAT, _STATE_KEY: json.dumps(skeleton, allow_nan=True)}
    return save(tensors, metadata=meta)


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically (a temporary file, then rename): a crash or a full disk
    never leaves a torn checkpoint, and the previous file stays as it was."""
    path = Path(path)
    data = dumps(state)
    tmp = tmp_path(path)  # removes a killed write's temporary file too
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise os_error(path, e, "write the checkpoint") from e


def load_state(path: str | Path, map_location: Any = "cpu", tensors: bool = True) -> dict[str, Any]:
    """Read a checkpoint written by `save_state` (CheckpointError for anything else).

    `tensors=False` reads the header only (epoch, config, fingerprint, ...), every tensor as None:
    what a check needs without reading an end-to-end checkpoint's image tower from disk.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        kind = file_format(path)
        safe, legacy = kind == "safetensors", kind in ("zip", "pickle")  # zip / pickle: tgdfer 0.1's torch.save
    except OSError as e:
        raise os_error(path, e, "read the checkpoint") from e
    if legacy:
        raise LegacyCheckpointError(
            f"{path}: a checkpoint in the pickle format of tgdfer 0.1, which can run code when opened, so tgdfer "
            f"no longer opens it. If you trust where it came from, convert it once: "
            f"tgdfer convert-checkpoint {path}")
    if not safe:
        raise CheckpointError(f"{path}: not a tgdfer checkpoint (not a safetensors file)")
    device = str(map_location) if map_location is not None else "cpu"
    try:
        safetensors_header_length(path)  # the declared header fits the file and the json_bytes limit
        with safe_open(str(path), framework="pt", device=device) as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or _STATE_KEY not in meta:
                raise CheckpointError(f"{path}: a safetensors file, but not a tgdfer checkpoint "
                                      f"(format {meta.get('format')!r}, expected {FORMAT!r})")
            stored = {k: f.get_tensor(k) if tensors else None for k in f.keys()}
        skeleton = load_json(meta[_STATE_KEY], f"{path}: the checkpoint's header")  # size and nesting capped
    except TgdferError:
        raise
    except OSError as e:
        raise os_error(path, e, "read the checkpoint") from e
    except Exception as e:  # safetensors' own errors on a torn or malformed file, bad JSON
        raise CheckpointError(f"{path}: cannot read checkpoint, the file is truncated or damaged ({e})") from e
    state = _decode(skeleton, stored, str(path))
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a tgdfer checkpoint")
    return state


def convert_legacy(src: str | Path, dst: str | Path | None = None, *, trust: bool = False) -> Path:
    """Convert a tgdfer 0.1 `torch.save` checkpoint to this format; returns the new file's path.

    The old file is read with `torch.load(weights_only=True)`, which refuses anything but tensors
    and plain values; only with `trust=True` (the user vouches for the file) is it fully unpickled.
    """
    src = Path(src)
    dst = Path(dst) if dst is not None else src.with_suffix(SUFFIX)
    if not src.is_file():
        raise CheckpointError(f"{src}: no checkpoint here")
    if file_format(src) == "safetensors":
        raise CheckpointError(f"{src}: already in the safetensors format, nothing to convert")
    if dst.exists():
        raise CheckpointError(f"{dst} exists; remove it or pass another output path")
    if is_torchscript_archive(src):  # torch.load would hand it to TorchScript's loader, which runs its code
        raise CheckpointError(f"{src}: a TorchScript archive, not a tgdfer checkpoint")
    import pickle

    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust:
            raise CheckpointError(
                f"{src}: holds objects other than tensors and plain values, so reading it could run code "
                f"({first_line(e)}); convert it only if you trust where it came from, with --trust-weights") from e
        state = torch.load(src, map_location="cpu", weights_only=False)  # the user vouches for it: --trust-weights
    except Exception as e:
        raise CheckpointError(f"{src}: cannot read it as a torch checkpoint ({first_line(e)})") from e
    if not isinstance(state, dict) or "head_state" not in state:
        raise CheckpointError(f"{src}: not a tgdfer checkpoint (no head_state)")
    state = _plain(state)
    save_state(dst, state)
    return dst


def _plain(obj: Any) -> Any:
    """Old checkpoints' numpy values as tensors or Python scalars (what the new format stores)."""
    import numpy as np

    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
