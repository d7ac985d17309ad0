"""Face stage for raw video: detect faces, follow the main face through a clip, crop it square.

DFEW and FERV39k ship face-cropped clips; a user's own recordings do not. This stage sits between
decoding and the encoder transform (`extract.read_views`, shared by `extract`, end-to-end
training and `predict`) and turns each sampled frame `[H, W, 3]` into a square face crop
`[size, size, 3]`:

    detection frames  # [G]: the T test-time segment centres and every k-th frame (`every`)
    -> detector(frames [G, H, W, 3] uint8) -> per frame a list of (box [x0, y0, x1, y1], score)
    -> shot cuts between consecutive detection frames (colour histograms of 3/4 of a 3 x 3 grid's cells differ by more than `cut`)
    -> tracklets: a face linked while it overlaps its last box and moves at most one side, within a shot
    -> a tracklet split where its face was away at another place and came back (`split_at_visits`)
    -> the subject's segments: the tracklets, no two overlapping in time, of the largest total weight
       (face side summed over detections, plus the largest side found on each detection frame of the
       spans: a frame left to carrying counts nothing: `subject_segments`)
    -> detect again between two detection frames where a segment or shot ends, until they are adjacent
    -> per segment: smooth centre and size over time (local lines); at any frame the box of its segment (detected or
       interpolated inside the segment's span, carried over from the nearest segment outside)
    -> square crop box (side = longer box side x (1 + margin)), moved inside the frame
    -> crop + antialiased resize to size x size

Every frame's box says where it came from (`FACE_SOURCES`: detected, interpolated, carried,
center), which the store keeps per sampled frame (`face_source`) and `predict` prints. The detection
frames depend only on the clip (never on the views read), so view 0 of a clip gets the same crops
in `extract` and in `predict`. A clip where no face is found is a FrameReadError naming the clip
(`on_missing = "fail"`) or falls back to the centre square (`on_missing = "center"`, source center).

Detectors come from `tgdfer.detectors` (a registry that code fills; nothing named in a file is
imported; the built-in `centerface`). See docs/face-detection.md for the survey.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from .detectors import Detection, FaceDetector, box_iou, make_detector
from .errors import ConfigError, FrameReadError, TgdferError

@dataclass
class FacesConfig:
    detector: str = "none"  # "none" (frames are already face crops) or a registered detector name ("centerface")
    args: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the detector's factory (e.g. a weights path)
    every: int = 4  # detection frames: the T test-time segment centres plus every k-th frame (0: the centres only);
    #   more are added where a face jumps or a shot cuts (`FaceStage.track`)
    cut: float = 0.3  # a shot cut: colour histograms of consecutive detection frames differ by more (total variation) in 3/4 of a 3 x 3 grid's cells; 1 = never
    min_score: float = 0.5  # detections below this confidence are ignored
    margin: float = 0.25  # crop side = longer side of the face box x (1 + margin)
    smooth: int = 3  # detection frames per local line in time over box centre and size; 1 = none
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
        if not 0.0 < self.cut <= 1.0:
            raise ConfigError("cut", f"must lie in (0, 1], got {self.cut}")
        if self.margin < 0:
            raise ConfigError("margin", f"must be >= 0, got {self.margin}")
        if self.on_missing not in ("fail", "center"):
            raise ConfigError("on_missing", f"{self.on_missing!r} is not one of 'fail', 'center'")

    @property
    def enabled(self) -> bool:
        return self.detector != "none"

    def fingerprint(self) -> dict:
        """What the crops depend on (a store records it; a different one is a different store): the settings
        and the face-track rule of this code (`TRACK_RULE`)."""
        return {**asdict(self), "track": TRACK_RULE}

    @classmethod
    def from_fingerprint(cls, fp: Optional[dict]) -> FacesConfig:
        """The config a store fingerprint records (`fp["faces"]`; absent = no face stage), checked field by field
        (its face-track rule aside: `track_rule`)."""
        from .config import build

        if fp is not None and not isinstance(fp, dict):
            raise ConfigError("faces", f"must be a table of face stage settings, not {type(fp).__name__}")
        return build(cls, {k: v for k, v in fp.items() if k != "track"}, "faces") if fp else cls()


# The face-track rule's version, recorded in a store's faces fingerprint ("track"): 2 = the subject as the
# heaviest set of non-overlapping tracklets, a face away and back split, smoothing in time, shot cuts by
# grid cells (tgdfer from 2026-12-03); 1 (a fingerprint without "track") = the face found on the most
# detection frames first, a moving average of the samples, cuts by the whole frame's histogram. A store is made by one rule: `extract` refuses to resume one made by another.
TRACK_RULE = 2


def track_rule(fp: Optional[dict]) -> int:
    """The face-track rule a store's faces fingerprint records (1 when it records none: an older tgdfer)."""
    return int(fp.get("track", 1)) if isinstance(fp, dict) else TRACK_RULE


# -- tracks (pure functions) ----------------------------------------------------------------------


def _area(b: np.ndarray) -> float:
    return float(max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0))


def _side(b: np.ndarray) -> float:
    return float(np.sqrt(max(_area(b), 1e-9)))


def same_face(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether box b can be the face of box a a few frames later: they overlap (IoU > 0), the centre
    moved at most one mean side and the size changed less than 2x. A face that jumps further is another
    track segment, never a smooth path between the two places."""
    sa, sb = _side(a), _side(b)
    if max(sa, sb) > 2 * min(sa, sb) or box_iou(a, b) <= 0:
        return False
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    return float(np.linalg.norm(ca - cb)) <= (sa + sb) / 2


CUT_GRID = 3  # shot cuts compare colour histograms cell by cell on a CUT_GRID x CUT_GRID grid of the frame


def colour_histograms(images: np.ndarray, grid: int = CUT_GRID) -> np.ndarray:
    """images [G, H, W, 3] uint8 -> [G, grid * grid, 64] colour histograms (4 levels per channel, every 4th
    pixel) of each cell of a grid x grid division of the frame, each summing to 1."""
    q = (np.asarray(images)[:, ::4, ::4] >> 6).astype(np.int64)  # [G, h, w, 3] levels 0..3
    codes = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]  # [G, h, w]
    h, w = codes.shape[1:]
    rows, cols = np.arange(h) * grid // max(h, 1), np.arange(w) * grid // max(w, 1)
    cell = rows[:, None] * grid + cols[None, :]  # [h, w] cell of each pixel
    counts = np.stack([np.bincount((cell * 64 + c).ravel(), minlength=grid * grid * 64) for c in codes])
    counts = counts.reshape(len(codes), grid * grid, 64).astype(np.float64)
    return counts / np.maximum(counts.sum(2, keepdims=True), 1)


def shot_cuts(histograms: np.ndarray, threshold: float) -> np.ndarray:
    """[G - 1] bool: a shot cut between consecutive detection frames, where the colour histograms of their
    cells (rows of [G, C, 64]) differ by more than `threshold` in total variation (0.5 x L1, in [0, 1]) in
    three quarters of the cells (the lower quartile of the cells' distances exceeds it). A cut changes
    nearly the whole frame; a person entering, leaving or jumping changes the cells they cover: a head
    and shoulders pasted over half of a 320 x 240 frame changed 6 of 9 cells, and its whole-frame
    histogram by 0.36, more than the default `cut` 0.3."""
    h = np.asarray(histograms, float)
    return np.quantile(0.5 * np.abs(np.diff(h, axis=0)).sum(2), 0.25, axis=1) > threshold


Tracklet = dict[int, np.ndarray]  # detection frame number -> face box [4]


def link_tracklets(frames: np.ndarray, detections: Sequence[Sequence[Detection]], cuts: np.ndarray,
                   min_score: float) -> list[Tracklet]:
    """Detections on G detection frames -> tracklets: each face followed while it stays `same_face`
    as its last detection, within one shot (a cut ends every tracklet). Greedy, best score first,
    each detection to the free tracklet whose last box overlaps it most."""
    tracks: list[Tracklet] = []
    alive: list[int] = []  # tracklets of the current shot
    for g, (frame, found) in enumerate(zip(frames, detections)):
        if g and cuts[g - 1]:
            alive = []
        taken: set[int] = set()
        for box, _ in sorted(((np.asarray(b, float), float(s)) for b, s in found if s >= min_score),
                             key=lambda d: -d[1]):
            free = [i for i in alive if i not in taken and same_face(tracks[i][max(tracks[i])], box)]
            if free:
                best = max(free, key=lambda i: float(box_iou(tracks[i][max(tracks[i])], box)))
            else:
                best = len(tracks)
                tracks.append({})
                alive.append(best)
            tracks[best][int(frame)] = box
            taken.add(best)
    return tracks


def split_at_visits(tracklets: Sequence[Tracklet], searched: np.ndarray) -> list[Tracklet]:
    """Split a tracklet where its face was away: between two of its consecutive detections a and b
    (with detection frames between them where it was not found), when another tracklet of a like
    size (sides within 2x) lies wholly between a and b and was found on at least half of those
    frames. That is a face that moved A -> B -> A: `link_tracklets` joins both visits to A, and
    without the split the track would interpolate at A over the frames the face was at B.
    A gap that no other face fills (an occlusion, a missed detection) stays one tracklet."""
    searched = np.asarray(searched)
    spans = [(min(t), max(t), float(np.mean([_side(b) for b in t.values()]))) for t in tracklets]
    out: list[Tracklet] = []
    for i, t in enumerate(tracklets):
        frames = sorted(t)
        piece: Tracklet = {frames[0]: t[frames[0]]}
        for a, b in zip(frames[:-1], frames[1:]):
            gap = searched[(searched > a) & (searched < b)]
            side = (_side(t[a]) + _side(t[b])) / 2
            if len(gap) and any(j != i and a < lo and hi < b and max(s, side) <= 2 * min(s, side)
                                and 2 * sum(f in tracklets[j] for f in gap.tolist()) >= len(gap)
                                for j, (lo, hi, s) in enumerate(spans)):
                out.append(piece)
                piece = {}
            piece[b] = t[b]
        out.append(piece)
    return out


def subject_segments(tracklets: Sequence[Tracklet], width: int, height: int) -> list[Tracklet]:
    """The subject of the clip as track segments in time order: of all sets of tracklets whose spans of
    frames do not overlap, the one with the largest weight. A tracklet weighs the sum of its face sides
    over its detections (detection frames x mean side) plus, over the detection frames of its span, the
    largest side found on each (the frames whose crops it gives: a set that leaves a frame where a face
    was found to be carried over from elsewhere forgoes that frame's face). Ties go to more detections,
    then to the centre nearer the frame's. Weighted interval scheduling, exact: the subject's face, large
    and seen on most frames, outweighs a small face in the background (a poster, a screen) seen on every
    frame, even where the subject is missed on some frames or moves in pieces (each piece a tracklet);
    and a face k times the subject's side seen on part of the clip (a passer-by) takes it only when
    found on more than about 2/(k + 1) of the detection frames. A face that jumps, or a cut to another shot,
    continues the subject in another segment; a second face seen at the same time as the subject is
    never taken."""
    centre = np.array([width, height], float) / 2
    seen = np.array(sorted({f for t in tracklets for f in t}), np.int64)  # [F] detection frames with a face
    largest = np.cumsum([0.0] + [max(_side(t[f]) for t in tracklets if f in t) for f in seen.tolist()])  # [F + 1]

    def weight(t: Tracklet) -> np.ndarray:
        boxes = np.stack(list(t.values()))
        off = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - centre, axis=1).sum()
        covered = largest[np.searchsorted(seen, max(t), "right")] - largest[np.searchsorted(seen, min(t), "left")]
        return np.array([sum(_side(b) for b in boxes) + covered, len(t), -float(off)])

    order = sorted(tracklets, key=lambda t: (max(t), min(t)))  # by end
    best: list[tuple[np.ndarray, list[int]]] = [(np.zeros(3), [])]  # best[k]: the best set of order[:k]
    for k, t in enumerate(order):
        before = max((j for j in range(k) if max(order[j]) < min(t)), default=-1) + 1  # order[:before] end before t
        total, chosen = best[before]
        take = (total + weight(t), chosen + [k])
        best.append(max(best[k], take, key=lambda c: tuple(np.round(c[0], 6))))
    return [order[k] for k in best[-1][1]]


def refine_frames(frames: np.ndarray, cuts: np.ndarray, segments: Sequence[Tracklet]) -> np.ndarray:
    """Frames to detect on next [K]: the midpoint of each pair of consecutive detection frames more than one
    frame apart where the subject changes segment, or where a shot cut lies next to a segment. Detecting
    there (until the pair is adjacent) finds the frame of every jump and cut, so that no frame between
    two segments has to guess which one it belongs to."""
    seg = np.full(len(frames), -1)
    for k, s in enumerate(segments):
        seg[(frames >= min(s)) & (frames <= max(s))] = k
    a, b = seg[:-1], seg[1:]
    change = (a != b) & (a >= 0) & (b >= 0)
    cut = cuts & ((a >= 0) | (b >= 0))
    gap = np.diff(frames) > 1
    pick = (change | cut) & gap
    return (frames[:-1][pick] + frames[1:][pick]) // 2


def fill_and_smooth(frames: np.ndarray, boxes: np.ndarray, smooth: int) -> np.ndarray:
    """Interpolate missing boxes (NaN rows) linearly over frame numbers, then smooth centre and size.

    frames [G] increasing frame numbers, boxes [G, 4] with at least one finite row -> [G, 4].
    Smoothing, in time: at each detection frame, the least-squares line through (frame, value) of the
    `smooth` detection frames centred on it (odd; an even one is widened by 1), over (cx, cy, w, h),
    the ends padded by odd reflection of frames and values. Detection frames are unevenly spaced
    (segment centres, every k-th frame, boundaries refined to the frame); a moving average of the
    samples would bend steady motion there, the line keeps it exactly, and on even spacing it is the
    centred moving average.
    """
    ok = np.isfinite(boxes).all(1)
    cxcywh = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                       boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    x = np.asarray(frames, float)
    filled = np.stack([np.interp(x, x[ok], cxcywh[ok, j]) for j in range(4)], 1)  # holds the ends
    half = min(smooth // 2, len(filled) - 1)
    if half > 0:
        pad = dict(mode="reflect", reflect_type="odd")
        t = np.lib.stride_tricks.sliding_window_view(np.pad(x, half, **pad), 2 * half + 1)  # [G, W]
        y = np.lib.stride_tricks.sliding_window_view(np.pad(filled, ((half, half), (0, 0)), **pad),
                                                     2 * half + 1, axis=0)  # [G, 4, W]
        tc = t - t.mean(1, keepdims=True)  # [G, W]
        slope = (tc[:, None] * y).sum(2) / (tc ** 2).sum(1, keepdims=True)  # [G, 4]
        filled = y.mean(2) + slope * (x - t.mean(1))[:, None]
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


DETECTED, INTERPOLATED, CARRIED, CENTER = 0, 1, 2, 3
FACE_SOURCES = ("detected", "interpolated", "carried", "center")  # name of each face source code; -1: no face stage


@dataclass
class FaceTrack:
    """One clip's face track: the subject's track segments, and a face box at any frame with where it came from.

    At a frame inside a segment's span the box is the segment's (smoothed) detection there (source
    `detected`) or linear between its detections (`interpolated`); at a frame outside every span it is
    the nearest segment's box at its nearer end (`carried`: before the face is first found, after it is
    last found, in a gap between two segments, never interpolated across a jump or cut). A clip without
    a face falling back to the centre square gives `center` everywhere.
    """

    segments: list[tuple[np.ndarray, np.ndarray]]  # time order: (frames [k] increasing, face boxes [k, 4])
    searched: np.ndarray  # [G] every frame the detector looked at
    width: int
    height: int
    fallback: bool = False  # no face found: boxes are the centre square

    def locate(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes [..., 4] and face sources [...] int8 (DETECTED .. CENTER) at frame numbers `frames` [...]."""
        f = np.asarray(frames, float)
        flat = f.ravel()
        boxes, source = np.empty((flat.size, 4)), np.empty(flat.size, np.int8)
        if self.fallback:
            boxes[:], source[:] = center_box(self.width, self.height), CENTER
            return boxes.reshape(*f.shape, 4), source.reshape(f.shape)
        starts = np.array([s[0][0] for s in self.segments], float)
        ends = np.array([s[0][-1] for s in self.segments], float)
        for i, x in enumerate(flat):
            k = int(np.argmin(np.maximum(np.maximum(starts - x, x - ends), 0)))  # ties: the earlier segment
            seg_frames, seg_boxes = self.segments[k]
            if x < starts[k] or x > ends[k]:
                boxes[i], source[i] = seg_boxes[0 if x < starts[k] else -1], CARRIED
            else:
                boxes[i] = [np.interp(x, seg_frames, seg_boxes[:, j]) for j in range(4)]
                source[i] = DETECTED if np.isin(x, seg_frames) else INTERPOLATED
        return boxes.reshape(*f.shape, 4), source.reshape(f.shape)

    def face_boxes(self, frames: np.ndarray) -> np.ndarray:
        """Face boxes at frame numbers `frames` [...] -> [..., 4]."""
        return self.locate(frames)[0]

    def sources(self, frames: np.ndarray) -> np.ndarray:
        """Face source codes [...] int8 at frame numbers `frames` [...] (names: FACE_SOURCES)."""
        return self.locate(frames)[1]

    def crop_boxes(self, frames: np.ndarray, margin: float) -> np.ndarray:
        """Square crop boxes [..., 4] at frame numbers `frames` [...]."""
        if self.fallback:
            return np.broadcast_to(center_box(self.width, self.height), (*np.shape(frames), 4)).copy()
        return square_crop_boxes(self.face_boxes(frames), margin, self.width, self.height)


def detection_frames(n_frames: int, frames_per_view: int, every: int) -> np.ndarray:
    """Frame numbers to detect on first [G]: the test-time segment centres (view 0's frames), plus
    0, k, 2k, ... and the last frame (every = k >= 1). They depend on the clip alone, never on the views
    read, so view 0 gets the same crops in `extract` and `predict`."""
    from .sampling import segment_indices

    centres = segment_indices(n_frames, frames_per_view, train=False)
    if every == 0:
        return np.unique(centres)
    return np.unique(np.concatenate([centres, np.arange(0, n_frames, every), [n_frames - 1]]).astype(np.int64))


FrameReader = Callable[[np.ndarray], np.ndarray]  # frame numbers [K] -> images [K, H, W, 3] uint8


DETECT_BATCH = 8  # frames per detector call (FaceStage.detect)


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
            self._detector = make_detector(self.cfg.detector, self.cfg.args)
        return self._detector

    def detect(self, frames: np.ndarray) -> list[list[Detection]]:
        """Detections on frames [G, H, W, 3], run at most `max_side` pixels wide or high, in frame pixels.

        The detector sees DETECT_BATCH frames at a time: its memory grows with the batch. All of a long
        clip's detection frames (every 4th) in one call took `predict --faces centerface` on a 20 s 640x360
        clip past 9 GB; 8 at a time, 1.9 GB at peak (process RSS, sampled)."""
        h, w = frames.shape[1:3]
        scale = min(1.0, self.cfg.max_side / max(h, w))
        found: list = []
        for start in range(0, len(frames), DETECT_BATCH):
            small = frames[start:start + DETECT_BATCH]
            if scale < 1.0:
                size = [max(1, round(h * scale)), max(1, round(w * scale))]
                small = TF.resize(torch.from_numpy(np.ascontiguousarray(small)).permute(0, 3, 1, 2), size,
                                  antialias=True).permute(0, 2, 3, 1).contiguous().numpy()
            found += self.detector(small)
        if len(found) != len(frames):
            raise TgdferError(f"face detector {self.cfg.detector} returned {len(found)} results for {len(frames)} frames")
        return [[(np.asarray(b, float) / scale, float(s)) for b, s in per] for per in found]

    def track(self, n_frames: int, frames_per_view: int, read: FrameReader, path: str) -> FaceTrack:
        """The face track of a clip of `n_frames` frames, decoded on demand by `read`.

        Detects on `detection_frames`, links the detections into tracklets within shots (`shot_cuts`
        on colour histograms), takes the subject's segments (`subject_segments`), then detects again
        between consecutive detection frames where a segment or shot ends (`refine_frames`) until each
        such boundary lies between adjacent frames; each segment is smoothed on its own.
        """
        cfg = self.cfg
        todo = detection_frames(n_frames, frames_per_view, cfg.every)
        found: dict[int, list[Detection]] = {}
        hist: dict[int, np.ndarray] = {}
        size = (0, 0)
        while len(todo):
            images = read(todo)  # [K, H, W, 3]
            size = images.shape[1:3]
            found.update(zip(todo.tolist(), self.detect(images)))
            hist.update(zip(todo.tolist(), colour_histograms(images)))
            frames = np.array(sorted(found), np.int64)
            cuts = shot_cuts(np.stack([hist[f] for f in frames]), cfg.cut)
            tracklets = link_tracklets(frames, [found[f] for f in frames], cuts, cfg.min_score)
            segments = subject_segments(split_at_visits(tracklets, frames), size[1], size[0])
            todo = refine_frames(frames, cuts, segments)
        h, w = size
        if not segments:
            if cfg.on_missing == "center":
                return FaceTrack([], frames, w, h, fallback=True)
            raise FrameReadError(path, f"no face found in the {len(frames)} frames searched (detector "
                                 f"{cfg.detector}, min_score {cfg.min_score}, frames scaled to faces.max_side "
                                 f"{cfg.max_side} px for detection: a face small in a large frame needs a larger "
                                 "one); to crop the centre of the frame "
                                 "instead: --on-missing center for predict (on_missing=\"center\" in Python), "
                                 "--set faces.on_missing=center for extract")
        smoothed = []
        for s in segments:
            f = np.array(sorted(s), np.int64)
            smoothed.append((f, fill_and_smooth(f, np.stack([s[x] for x in f]), cfg.smooth)))
        return FaceTrack(smoothed, frames, w, h)
