"""Reading encoder weight files without running code that comes with them.

A CLIP weights file a user hands over is one of:
- safetensors (`.safetensors`, open_clip's and Hugging Face's format): read as data;
- a TorchScript archive (OpenAI's CLIP release, `ViT-B-32.pt`): recognised exactly as torch
  recognises one (a zip whose records include a top-level `constants.pkl`) and read as data by
  tgdfer/torchscript.py (its parameters and buffers, the state dict TorchScript's loader would
  give), without running any of its TorchScript code;
- any other `torch.save` zip or pickle (`open_clip_pytorch_model.bin`, a state dict): read with
  `torch.load(weights_only=True)`, which refuses every object that is not a tensor or plain value.

A file that passes only as "unsafe" (its pickle names other Python objects, or its TorchScript
classes hold more than weights) is refused with UnsafeWeightsError, unless the user opts in: the
`--trust-weights` flag, `trust=True` from Python, or the environment variable TGDFER_TRUST_WEIGHTS=1. Only
then is it unpickled in full (or handed to TorchScript's loader). No file can opt in: a config
file's `trust_weights` is an error (config.py). See docs/sharing.md.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch

from .errors import TgdferError, os_error
from .limits import check_zip, safetensors_header_length
from .torchscript import TorchScriptError, read_torchscript_state

TORCHSCRIPT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")  # OpenAI's archives, not weights
TRUST_ENV = "TGDFER_TRUST_WEIGHTS"  # "1": the user trusts every encoder weights file this process opens


class UnsafeWeightsError(TgdferError):
    """A weights file that only loads by unpickling arbitrary objects, and the user did not opt in."""


def trusted_by_env() -> bool:
    """True when the user set TGDFER_TRUST_WEIGHTS=1 (the environment is the user's, never a file's)."""
    return os.environ.get(TRUST_ENV, "").strip() == "1"


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True when torch.load would treat the file as TorchScript: a torch zip with a top-level constants.pkl.

    Uses torch's own zip reader and test, so a zip that merely holds a nested `x/y/constants.pkl`
    (or anything torch would not dispatch to its TorchScript loader) is not one.
    """
    try:
        if file_format(path) != "zip":
            return False
        with open(path, "rb") as f:
            with torch.serialization._open_zipfile_reader(f) as zf:
                return torch.serialization._is_torchscript_zip(zf)
    except (OSError, RuntimeError):  # unreadable, or a zip torch's reader does not take
        return False


def file_format(path: str | os.PathLike) -> str:
    """What a file's first bytes say it is: "safetensors" (an 8-byte little-endian header length, then
    the JSON header's '{'), "zip" (torch.save's format, TorchScript), "pickle" (a bare pickle,
    protocol 2+) or "other"."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and 0 < int.from_bytes(head[:8], "little") <= 100 * 2**20 and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    return "pickle" if head[:1] == b"\x80" else "other"


def read_state_dict(path: str | os.PathLike, *, trust: bool = False) -> dict[str, torch.Tensor]:
    """The state dict in a weights file, on the CPU (see the module docstring for which loader reads what).

    Unwraps `{"state_dict": ...}` checkpoints and a `module.` prefix (DataParallel), as open_clip does.
    Raises UnsafeWeightsError (naming the file and the reason) for a file that needs full unpickling
    or TorchScript's loader when `trust` is False (and TGDFER_TRUST_WEIGHTS is not 1), TgdferError for
    a file that is not weights at all.
    """
    path = Path(path)
    trust = trust or trusted_by_env()
    try:
        kind = file_format(path)
    except OSError as e:
        raise os_error(path, e, "read the weights file") from e
    if kind == "zip":
        check_zip(path)  # what it declares uncompressed, within the limits, before anything is inflated
    if path.suffix == ".safetensors" or kind == "safetensors":
        state = _load_safetensors(path)
    elif is_torchscript_archive(path):
        state = _read_torchscript(path, trust)
        for key in TORCHSCRIPT_EXTRA_KEYS:
            state.pop(key, None)
    else:
        state = _load_pickled(path, trust)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise TgdferError(f"{path}: holds no state dict of tensors (got {type(state).__name__})")
    if next(iter(state)).startswith("module."):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _read_torchscript(path: Path, trust: bool) -> dict[str, torch.Tensor]:
    """A TorchScript archive's weights read as data; only with `trust`, an archive that holds more goes to
    TorchScript's loader (which runs the archive's code)."""
    try:
        return read_torchscript_state(path)
    except TorchScriptError as e:
        if e.damaged:
            raise TgdferError(f"{path}: cannot read it as weights ({e.reason})") from None
        if not trust:
            _refuse(path, e.reason, "run TorchScript code from the file")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit is deprecated
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())  # the user's trust opt-in
        except Exception as e:  # noqa: BLE001: a damaged archive, whatever torch raises
            raise TgdferError(f"{path}: cannot read it as weights ({first_line(e)})") from e


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a short, torn or malformed file is one TgdferError line."""
    from safetensors.torch import load_file

    safetensors_header_length(path)  # fits the file and the json_bytes limit
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # SafetensorsError and the like on a malformed header or data
        raise TgdferError(f"{path}: cannot read it as safetensors weights ({first_line(e)})") from None


def _load_pickled(path: Path, trust: bool):
    """A torch.save zip or pickle: weights_only=True, or in full when it names other objects and `trust`."""
    kind = file_format(path)
    if kind == "zip":  # torch's zip format: list the objects its pickle names, without running it
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as e:  # not a torch zip, truncated
            raise TgdferError(f"{path}: cannot read it as weights ({first_line(e)})") from e
    else:
        unsafe = None if kind == "pickle" else []  # None: a bare pickle, known only by trying
    if unsafe and not trust:
        _refuse(path, f"it names {', '.join(unsafe[:3])}{' ...' if len(unsafe) > 3 else ''}")
    if not unsafe or not trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if unsafe is None and not trust:  # a pickle the restricted unpickler refused
                _refuse(path, first_line(e))
            if unsafe is not None:
                raise TgdferError(f"{path}: cannot read it as weights ({first_line(e)})") from e
        except Exception as e:  # garbage, truncated
            raise TgdferError(f"{path}: cannot read it as weights ({first_line(e)})") from e
    return torch.load(path, map_location="cpu", weights_only=False)  # the user's explicit opt-in (trust)


def _refuse(path: Path, why: str, risk: str = "unpickle objects other than tensors, which can run code") -> None:
    raise UnsafeWeightsError(
        f"{path}: refused: loading it would {risk} ({why}). Use a safetensors or plain "
        f"state-dict file; if you trust where this file came from, pass --trust-weights (or set {TRUST_ENV}=1)")


def first_line(e: BaseException) -> str:
    """An exception's first non-empty line (torch's messages run to paragraphs), for one-line errors."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    line = lines[0].partition(" (Could this error message be improved?")[0] if lines else type(e).__name__
    return line.rstrip(".")


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a CLIP state dict into an open_clip model the way open_clip's own `load_checkpoint` does.

    The same conversions in the same order (third-party layouts, the old text-tower layout,
    scalar logit_scale, position embeddings resized to the model), then a strict load.
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    state = convert_state_dict(model, state)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for key in ("logit_scale", "logit_bias"):
        ours = getattr(model, key, None)
        if key in state and ours is not None and ours.ndim != state[key].ndim:
            state[key] = state[key].reshape(ours.shape)
    if "logit_bias" not in state and getattr(model, "logit_bias", None) is not None:
        state["logit_bias"] = torch.zeros_like(state["logit_scale"])
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    model.load_state_dict(state, strict=True)
