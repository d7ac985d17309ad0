"""The parameters and buffers of a TorchScript archive, read as data: no TorchScript runs.

TorchScript's own loader rebuilds a module by running the archive's code (a class's `__setstate__`,
which can write files). OpenAI's CLIP release (`ViT-B-32.pt`) is such an archive, but its weights are
plain records. This module reads them as the loaded module's `state_dict()` would give them:

    data.pkl   -> a pickle of the module tree: `__torch__.*` objects whose state is a dict of
                  attributes (tensors, submodules, numbers); read by a restricted unpickler that
                  knows only the globals a tensor needs and a placeholder for `__torch__` classes
    data/<key> -> the raw bytes of each storage
    code/**.py -> TorchScript source; read as text for each class's `__parameters__` and
                  `__buffers__` lists (which attributes a state dict holds) and whether it
                  defines `__setstate__` (then its stored state is not its weights: refused)

Keys follow nn.Module.state_dict: a module's parameters, then its buffers, then its submodules
in attribute order, prefixed by the attribute path (`visual.transformer.resblocks.0.attn.in_proj_weight`).
Anything else (another global, a class the code does not declare, state that is not a dict) is
refused with TorchScriptError.
"""

from __future__ import annotations

import ast
import collections
import io
import os
import pickle
import re
from dataclasses import dataclass

import torch

from .errors import TgdferError

# torch.<Name>Storage -> dtype: the storage classes TorchScript's pickler names
STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}
MAX_DEPTH = 64  # module nesting; CLIP's deepest is 6


class TorchScriptError(TgdferError):
    """A TorchScript archive whose weights cannot be read as data: it holds more (`damaged` False; only
    TorchScript's loader, running its code, could open it) or it is damaged (`damaged` True)."""

    def __init__(self, path: str | os.PathLike, reason: str, damaged: bool = False):
        self.path, self.reason, self.damaged = str(path), reason, damaged
        super().__init__(f"{path}: {reason}")


class _Unreadable(Exception):
    """Why the archive is not plain weights (read_torchscript_state adds the path)."""


class _Damaged(_Unreadable):
    """The archive's records contradict each other (truncated, missing bytes)."""


@dataclass(frozen=True)
class ScriptClass:
    """What a class's TorchScript source says about its state."""

    module: bool  # declared `class X(Module)` (its tensors belong to the state dict)
    parameters: tuple[str, ...]  # `__parameters__ = [...]`
    buffers: tuple[str, ...]  # `__buffers__ = [...]`
    setstate: bool  # defines `__setstate__`: TorchScript's loader would run it on the stored state


class ScriptObject:
    """Placeholder for a `__torch__.*` object: records its class name and stored state, runs nothing."""

    qualname = ""

    def __setstate__(self, state):  # pickle's BUILD: keep the state as it is
        self.state = state


class Ref:
    """A storage or tensor as the unpickler holds it. Not a torch.Tensor, so pickle's BUILD cannot reach
    torch's own `Tensor.__setstate__` through it (BUILD can at most replace `tensor`, which is checked)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def _rebuild_tensor(storage: Ref, offset: int, size, stride, *_) -> Ref:
    """torch._utils._rebuild_tensor_v2 on a flat storage tensor (requires_grad, hooks, metadata ignored)."""
    if not isinstance(storage, Ref) or not torch.is_tensor(storage.tensor) or storage.tensor.dim() != 1:
        raise _Unreadable("its data.pkl rebuilds a tensor from something that is not a storage")
    storage = storage.tensor
    size, stride = tuple(size), tuple(stride)
    if not all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride)) or len(size) != len(stride):
        raise _Damaged(f"a tensor with size {size}, stride {stride}, offset {offset}")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else -1
    if last >= storage.numel():
        raise _Damaged(f"a tensor of size {size} reaches past its storage of {storage.numel()} elements")
    return Ref(storage.as_strided(size, stride, offset))


def _identity(value, *_):
    """torch.jit._pickle's list builders and restore_type_tag: the value itself."""
    return value


_GLOBALS = {  # (module, name) -> what the restricted unpickler hands back: functions of this module, no others
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch.jit._pickle", n): _identity for n in ("build_intlist", "build_doublelist", "build_boollist",
                                                       "build_tensorlist", "restore_type_tag")},
}


class _Unpickler(pickle.Unpickler):
    """Unpickles data.pkl into ScriptObjects and tensors; any other global is refused."""

    def __init__(self, data: bytes, read_record):
        super().__init__(io.BytesIO(data))
        self.read_record = read_record
        self.classes: dict[str, type] = {}
        self.storages: dict[str, torch.Tensor] = {}  # key -> flat [numel] tensor of the record's bytes

    def find_class(self, module: str, name: str):
        if (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self.classes:
                self.classes[qualname] = type(name, (ScriptObject,), {"qualname": qualname})
            return self.classes[qualname]
        raise _Unreadable(f"its data.pkl names {module}.{name}, which is not part of a tensor")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise _Unreadable(f"its data.pkl refers to {str(pid)[:80]}, not a storage")
        _, dtype, key, _location, numel = pid
        if key not in self.storages:
            raw = self.read_record(f"data/{key}")
            itemsize = torch.empty(0, dtype=dtype).element_size()
            if not isinstance(numel, int) or len(raw) < numel * itemsize:
                raise _Damaged(f"storage data/{key} holds {len(raw)} bytes, not {numel} x {itemsize}")
            self.storages[key] = (torch.frombuffer(bytearray(raw[:numel * itemsize]), dtype=dtype) if numel
                                  else torch.empty(0, dtype=dtype))  # frombuffer refuses an empty buffer
        return Ref(self.storages[key])


_CLASS = re.compile(r"^class (\w+)\((\w*)\):[^\n]*\n", re.M)
_TOP_LEVEL = re.compile(r"^\S", re.M)


def parse_classes(path: str, source: str) -> dict[str, ScriptClass]:
    """The classes of one `code/__torch__/**.py` record (`path`), by qualified name, from their text."""
    prefix = path.removeprefix("code/").removesuffix(".py").replace("/", ".")
    out = {}
    for m in _CLASS.finditer(source):
        end = _TOP_LEVEL.search(source, m.end())
        body = source[m.end():end.start() if end else len(source)]
        out[f"{prefix}.{m.group(1)}"] = ScriptClass(
            module=m.group(2) == "Module", parameters=_names(body, "__parameters__"),
            buffers=_names(body, "__buffers__"), setstate=re.search(r"^\s+def __setstate__\(", body, re.M) is not None)
    return out


def _names(body: str, attr: str) -> tuple[str, ...]:
    m = re.search(rf"^\s+{attr} = (\[.*\])\s*$", body, re.M)
    if m is None:
        return ()
    names = ast.literal_eval(m.group(1))  # a list of string literals (never evaluated as code)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _Unreadable(f"its code declares {attr} that are not names")
    return tuple(names)


def read_torchscript_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The archive's state dict as TorchScript's loader gives it (keys, order, values on the CPU), run-free.

    TorchScriptError (naming the file and the reason) for anything that is not plain weights.
    """
    try:
        with open(path, "rb") as f, torch.serialization._open_zipfile_reader(f) as zf:
            records = set(zf.get_all_records())
            classes: dict[str, ScriptClass] = {}
            for name in sorted(r for r in records if r.startswith("code/") and r.endswith(".py")):
                classes.update(parse_classes(name, zf.get_record(name).decode("utf-8", "replace")))
            if "byteorder" in records and zf.get_record("byteorder").decode().strip() != "little":
                raise _Unreadable("its tensors are stored big-endian")
            root = _Unpickler(zf.get_record("data.pkl"), zf.get_record).load()
        state: dict[str, torch.Tensor] = {}
        _collect(root, classes, "", state, 0)
        return state
    except _Unreadable as e:
        raise TorchScriptError(path, str(e), damaged=isinstance(e, _Damaged)) from None
    except (pickle.UnpicklingError, RuntimeError, ValueError, TypeError, EOFError, AttributeError,
            IndexError, KeyError, SyntaxError, MemoryError, RecursionError) as e:  # a damaged archive
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise TorchScriptError(path, f"its data.pkl cannot be read ({type(e).__name__}"
                               f"{': ' + detail if detail else ''})", damaged=True) from None


def _collect(obj, classes: dict[str, ScriptClass], prefix: str, out: dict[str, torch.Tensor], depth: int) -> None:
    """Add module `obj`'s parameters, buffers, then its submodules' (nn.Module.state_dict's order) to `out`."""
    if not isinstance(obj, ScriptObject):
        raise _Unreadable(f"its data.pkl holds a {type(obj).__name__}, not a module")
    cls = classes.get(obj.qualname)
    where = prefix.rstrip(".") or "the top module"
    if cls is None or not cls.module:
        raise _Unreadable(f"{where} is a {obj.qualname}, which its code does not declare as a module")
    if cls.setstate:
        raise _Unreadable(f"{where}'s class {obj.qualname} defines __setstate__, code that would run on loading")
    if depth > MAX_DEPTH:
        raise _Unreadable(f"modules nest deeper than {MAX_DEPTH} at {where}")
    attrs = getattr(obj, "state", None)
    if not isinstance(attrs, dict):
        raise _Unreadable(f"{where} ({obj.qualname}) stores a {type(attrs).__name__}, not its attributes")
    for name in (*cls.parameters, *cls.buffers):
        value = attrs.get(name)
        if isinstance(value, Ref) and torch.is_tensor(value.tensor):
            out[prefix + name] = value.tensor
        elif value is not None:
            raise _Unreadable(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
    for name, value in attrs.items():
        if isinstance(value, ScriptObject) and getattr(classes.get(value.qualname), "module", False):
            _collect(value, classes, f"{prefix}{name}.", out, depth + 1)
