"""SynthDFER: a synthetic DFEW-like benchmark with frame-level ground truth.

Each clip shows one procedurally drawn person (`tgdfer.faces`). The clip's labelled emotion
appears in ONE contiguous onset-apex-offset episode that covers only part of the clip; the
other frames show the resting face or, with probability `distractor_prob`, a weaker episode of
another (non-neutral) class. The per-frame strength of the labelled emotion is saved in
`frame_labels.csv` (`in_episode` is `intensity > 0`). For Neutral clips the "episode" is a span
guaranteed to be free of any expression; its intensity is recorded the same way.

Layout written under OUT (readers and tests rely on it):

    meta.json                               generator config, seed, class counts, tgdfer version
    videos/<clip_id>.mp4                    format video|both (H.264, yuv420p)
    frames/<clip_id>/<clip_id>_<NNNNN>.jpg  format frames|both (frame numbers from 1)
    EmoLabel_DataSplit/train(single-labeled)/set_<k>.csv   video_name,label (label 1..7)
    EmoLabel_DataSplit/test(single-labeled)/set_<k>.csv    a clip is in the test set of one k
    lists/set_<k>_train.txt, lists/set_<k>_test.txt         "path n_frames label" (label 0..6)
    clips.csv                               clip_id,path,label,fold (label = class name)
    frame_labels.csv                        clip_id,frame,intensity,in_episode (frame 0-based)
    boxes.csv                               canvas > 0: clip_id,frame,x0,y0,x1,y1, the true face box (pixels)

Raw-video mode (`canvas > 0`): each frame is a larger canvas x canvas scene (its own cluttered
background) with the size x size face clip pasted off-centre, moving along a straight path; the
face clip itself is exactly the one canvas = 0 renders (the placement has its own random stream),
so the pre-cropped and the raw version of a dataset are the same faces. The true face box is the
face oval's bounding box (forehead to chin, without hair and ears), moved with the paste.

Determinism: the class and fold assignment is drawn from `seed` alone, and everything about
clip i (length, episode, distractor, face, motion, noise) from `(seed, i)` alone, so the output
does not depend on the number of worker processes. JPEGs and CSVs are byte-identical between
runs with the same config; mp4 files decode to identical frames (x264 runs single-threaded,
without mb-tree, on frames converted to yuv420p here), and in practice are byte-identical too.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd

from . import faces
from .config import to_dict
from .errors import AnnotationError, ConfigError, TgdferError
from .labels import CLASSES, DFEW_CLASS_SHARES, NUM_CLASSES, ClassSet

logger = logging.getLogger(__name__)

# Independent random streams, each seeded by (seed, stream[, clip index]).
_PLAN_STREAM, _CLIP_STREAM, _RENDER_STREAM, _CANVAS_STREAM = 0, 1, 2, 3
_NEUTRAL = CLASSES.index("Neutral")
# Everything generate() writes under OUT (removed first when overwrite=True).
_OUTPUTS = ("meta.json", "videos", "frames", "EmoLabel_DataSplit", "lists", "clips.csv", "frame_labels.csv",
            "boxes.csv")


@dataclass
class SynthConfig:
    clips: int = 200  # number of clips
    seed: int = 0  # master seed: clip i depends only on (seed, i)
    format: Literal["video", "frames", "both"] = "both"  # write mp4 files, JPEG frame folders, or both
    size: int = 112  # frame side in pixels (even: H.264 yuv420p needs it)
    min_frames: int = 10  # shortest clip; clips under 16 frames exercise edge padding
    max_frames: int = 40  # longest clip
    folds: int = 5  # DFEW-style folds; every clip is in the test set of exactly one
    class_shares: tuple[float, ...] | None = None  # 7 class weights in DFEW order; None = DFEW_CLASS_SHARES
    fps: int = 25  # frame rate of the mp4 files
    workers: int = 0  # processes: 0 = all cores, 1 = in this process (output is the same)
    episode_fraction: tuple[float, float] = (0.3, 0.6)  # (min, max) share of a clip's frames in the labelled episode
    apex_intensity: tuple[float, float] = (0.7, 1.0)  # (min, max) peak strength of the labelled expression
    distractor_prob: float = 0.5  # chance of a weaker expression of another class outside the episode
    distractor_intensity: tuple[float, float] = (0.2, 0.45)  # (min, max) peak strength of that distractor
    noise: float = 0.03  # largest per-pixel noise std (0..1 scale); each clip draws its own up to this
    pose_jitter: float = 1.0  # scale of head pose variation and motion (0 = still, centred head)
    clutter: int = 6  # most random shapes in a clip's background
    jpeg_quality: int = 90  # Pillow JPEG quality of the frame files
    crf: int = 20  # x264 constant rate factor of the mp4 files (0 = lossless, 51 = worst)
    canvas: int = 0  # 0: frames are face crops (like DFEW); > size: raw-video frames of canvas x canvas px, face off-centre and moving (boxes.csv)

    def __post_init__(self):
        _check_range("clips", self.clips, 1, 99_999)
        _check_range("seed", self.seed, 0, 2**63 - 1)
        if self.format not in ("video", "frames", "both"):
            raise ConfigError("format", f"{self.format!r} is not one of 'video', 'frames', 'both'")
        _check_range("size", self.size, 32, 1024)
        if self.size % 2:
            raise ConfigError("size", f"{self.size} is odd; H.264 (yuv420p) needs an even frame side")
        _check_range("min_frames", self.min_frames, 5, 10_000)
        _check_range("max_frames", self.max_frames, self.min_frames, 10_000, "min_frames")
        _check_range("folds", self.folds, 2, self.clips, hi_name="clips")  # every fold tests at least one clip
        if self.class_shares is not None:
            shares = tuple(self.class_shares)
            if len(shares) != NUM_CLASSES:
                names = ", ".join(CLASSES)
                raise ConfigError("class_shares", f"needs {NUM_CLASSES} values ({names}), got {len(shares)}")
            if not all(math.isfinite(s) and s >= 0 for s in shares) or sum(shares) <= 0:
                raise ConfigError("class_shares", "values must be finite, >= 0 and not all 0")
        _check_range("fps", self.fps, 1, 240)
        _check_range("workers", self.workers, 0, 1024)
        _check_pair("episode_fraction", self.episode_fraction, 0.05, 0.9)
        _check_pair("apex_intensity", self.apex_intensity, 0.05, 1.0)
        _check_range("distractor_prob", self.distractor_prob, 0.0, 1.0)
        _check_pair("distractor_intensity", self.distractor_intensity, 0.0, 1.0)
        _check_range("noise", self.noise, 0.0, 0.5)
        _check_range("pose_jitter", self.pose_jitter, 0.0, 3.0)
        _check_range("clutter", self.clutter, 0, 100)
        _check_range("jpeg_quality", self.jpeg_quality, 1, 100)
        _check_range("crf", self.crf, 0, 51)
        if self.canvas and (self.canvas <= self.size or self.canvas % 2):
            raise ConfigError("canvas", f"must be 0 or an even frame side larger than size ({self.size}), "
                              f"got {self.canvas}")

    def shares(self) -> np.ndarray:
        """Normalised class shares.  # [C] float64"""
        p = np.asarray(self.class_shares if self.class_shares is not None else DFEW_CLASS_SHARES, np.float64)
        return p / p.sum()


def _check_range(field: str, value, lo, hi, lo_name: str | None = None, hi_name: str | None = None) -> None:
    """ConfigError unless lo <= value <= hi; a bound set by another field is named (`lo_name`, `hi_name`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo <= value <= hi):
        low = f"{lo_name} ({lo})" if lo_name else lo
        high = f"{hi_name} ({hi})" if hi_name else hi
        raise ConfigError(field, f"{value!r} is out of range; expected {low} <= {field} <= {high}")


def _check_pair(field: str, pair, lo: float, hi: float) -> None:
    if len(pair) != 2 or not (lo <= pair[0] <= pair[1] <= hi):
        raise ConfigError(field, f"{tuple(pair)!r} must be (min, max) with {lo} <= min <= max <= {hi}")


# ---------------------------------------------------------------------------------------------
# The plan: labels, folds, clip lengths and episodes (cheap, done in the parent process)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipPlan:
    """What clip `index` shows; everything else about it is drawn from (seed, index) when rendered."""

    index: int  # 0-based clip number
    clip_id: str  # "00001", ... (DFEW style)
    label: int  # 0-based class
    fold: int  # test fold 1..K
    intensity: np.ndarray  # [T] float32, labelled-emotion strength, > 0 exactly inside the episode
    distractor: int  # class of the distractor expression, -1 if none
    distractor_intensity: np.ndarray  # [T] float32

    @property
    def n_frames(self) -> int:
        return len(self.intensity)


def class_counts(clips: int, shares: np.ndarray) -> np.ndarray:
    """Clips per class: largest-remainder rounding, at least one per class with a share when possible.  # [C]"""
    raw = shares * clips
    counts = np.floor(raw).astype(np.int64)
    positive = shares > 0
    if clips >= positive.sum():
        counts[positive & (counts == 0)] = 1
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    k = 0
    while counts.sum() < clips:  # hand out the remainder
        c = order[k % len(order)]
        if positive[c]:
            counts[c] += 1
        k += 1
    while counts.sum() > clips:  # the minimums overshot: take from the biggest classes
        counts[np.argmax(counts)] -= 1
    return counts


def _episode(rng: np.random.Generator, length: int, peak: float) -> np.ndarray:
    """Onset-apex-offset profile, strictly positive, reaching `peak` at the apex.  # [length]"""
    onset, offset = rng.uniform(0.2, 0.45, 2)
    p = (np.arange(length) + 0.5) / length
    s = np.minimum(np.clip(p / onset, 0, 1), np.clip((1 - p) / offset, 0, 1))
    s = s * s * (3 - 2 * s)  # smoothstep
    return np.maximum(peak * s / s.max(), 0.02)


def _plan_clip(cfg: SynthConfig, index: int, label: int, fold: int) -> ClipPlan:
    """Length, labelled episode and distractor of one clip, from (seed, index) only."""
    rng = np.random.default_rng([cfg.seed, _CLIP_STREAM, index])
    n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
    length = int(np.clip(round(rng.uniform(*cfg.episode_fraction) * n), 3, n - 2))
    start = int(rng.integers(0, n - length + 1))
    intensity = np.zeros(n, np.float32)
    intensity[start : start + length] = _episode(rng, length, rng.uniform(*cfg.apex_intensity))
    other = np.zeros(n, np.float32)
    distractor = -1
    gap_start, gap = (0, start) if start >= n - start - length else (start + length, n - start - length)
    if rng.random() < cfg.distractor_prob and gap >= 3:
        choices = [c for c in range(NUM_CLASSES) if c not in (label, _NEUTRAL)]
        distractor = int(choices[rng.integers(len(choices))])
        d_len = int(rng.integers(max(3, gap // 2), gap + 1))
        d_start = gap_start + int(rng.integers(0, gap - d_len + 1))
        other[d_start : d_start + d_len] = _episode(rng, d_len, rng.uniform(*cfg.distractor_intensity))
    return ClipPlan(
        index=index, clip_id=f"{index + 1:05d}", label=int(label), fold=int(fold),
        intensity=np.round(intensity, 4), distractor=distractor, distractor_intensity=np.round(other, 4),
    )


def plan(cfg: SynthConfig) -> list[ClipPlan]:
    """Labels (class counts from the shares), stratified folds and per-clip episodes."""
    rng = np.random.default_rng([cfg.seed, _PLAN_STREAM])
    counts = class_counts(cfg.clips, cfg.shares())
    labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), counts))  # [N]
    # stratified folds: sort by (class, random key) and deal the clips round-robin into folds
    order = np.lexsort((rng.random(cfg.clips), labels))
    folds = np.empty(cfg.clips, np.int64)
    folds[order] = np.arange(cfg.clips) % cfg.folds + 1
    return [_plan_clip(cfg, i, labels[i], folds[i]) for i in range(cfg.clips)]


# ---------------------------------------------------------------------------------------------
# Rendering and writing one clip (runs in worker processes; spawn-safe, module-level)
# ---------------------------------------------------------------------------------------------

def render(p: ClipPlan, cfg: SynthConfig) -> np.ndarray:
    """Draw the frames of a planned clip.  # [T, H, W, 3] uint8"""
    rng = np.random.default_rng([cfg.seed, _RENDER_STREAM, p.index])
    identity = faces.sample_identity(rng)
    scene = faces.sample_scene(rng, cfg.size, cfg.clutter, cfg.noise)
    motion = faces.sample_motion(rng, p.n_frames, cfg.pose_jitter)
    other = faces.emotion_aus(p.distractor) if p.distractor >= 0 else np.zeros(faces.NUM_AUS, np.float32)
    aus = faces.expression_track(rng, faces.emotion_aus(p.label), p.intensity, other, p.distractor_intensity)
    return faces.render_clip(identity, scene, motion, aus, rng)


def face_boxes(p: ClipPlan, cfg: SynthConfig) -> np.ndarray:
    """True face box of every frame of `render(p, cfg)`: the face oval's bounding box, rotated by the
    head's roll, in pixels (x0, y0, x1, y1).  # [T, 4] float64"""
    rng = np.random.default_rng([cfg.seed, _RENDER_STREAM, p.index])
    identity = faces.sample_identity(rng)
    faces.sample_scene(rng, cfg.size, cfg.clutter, cfg.noise)  # the draws render() makes in between
    motion = faces.sample_motion(rng, p.n_frames, cfg.pose_jitter)
    a, b = motion.scale * identity.face_w, motion.scale * identity.face_h  # half-axes, image units [-1, 1]
    cos, sin = np.cos(motion.roll), np.sin(motion.roll)
    hx, hy = np.hypot(a * cos, b * sin), np.hypot(a * sin, b * cos)
    to_px = lambda v: (v.astype(np.float64) + 1) / 2 * cfg.size  # noqa: E731
    return np.stack([to_px(motion.cx - hx), to_px(motion.cy - hy), to_px(motion.cx + hx), to_px(motion.cy + hy)], 1)


def canvas_offsets(p: ClipPlan, cfg: SynthConfig) -> np.ndarray:
    """Top-left corner (x, y) of the face clip in each canvas frame: a straight path between two random
    points.  # [T, 2] int64"""
    rng = np.random.default_rng([cfg.seed, _CANVAS_STREAM, p.index])
    start, end = rng.uniform(0, cfg.canvas - cfg.size, (2, 2))
    a = np.linspace(0.0, 1.0, p.n_frames)[:, None]
    return np.round(start + (end - start) * a).astype(np.int64)


def place_on_canvas(p: ClipPlan, cfg: SynthConfig, frames: np.ndarray) -> np.ndarray:
    """The face clip [T, S, S, 3] pasted into canvas frames [T, C, C, 3] uint8 over a background of its own."""
    rng = np.random.default_rng([cfg.seed, _CANVAS_STREAM, p.index])
    rng.uniform(size=4)  # the path's draws (canvas_offsets)
    bg = faces.sample_scene(rng, cfg.canvas, cfg.clutter, 0.0).background
    out = np.repeat((bg * 255 + 0.5).astype(np.uint8)[None], len(frames), axis=0)
    for t, (x, y) in enumerate(canvas_offsets(p, cfg)):
        out[t, y:y + cfg.size, x:x + cfg.size] = frames[t]
    return out


def true_boxes(p: ClipPlan, cfg: SynthConfig) -> np.ndarray:
    """True face boxes of the frames written for `p` (on the canvas when canvas > 0).  # [T, 4]"""
    boxes = face_boxes(p, cfg)
    if cfg.canvas:
        boxes = boxes + np.tile(canvas_offsets(p, cfg), 2)
    return boxes


def _write_jpegs(folder: Path, clip_id: str, frames: np.ndarray, quality: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{clip_id}_{t + 1:05d}.jpg", format="JPEG", quality=quality)


# BT.601 limited range ("TV"), what decoders assume for untagged H.264: rows Y, Cb, Cr.
_RGB_TO_YUV = np.array(
    [[0.256788, 0.504129, 0.097906], [-0.148223, -0.290993, 0.439216], [0.439216, -0.367788, -0.071427]], np.float32
)


def _yuv420p(frames: np.ndarray) -> np.ndarray:
    """RGB -> planar yuv420p as PyAV lays it out.  [T, H, W, 3] uint8 -> [T, H * 3 // 2, W] uint8

    Done here rather than by swscale: swscale picks SIMD paths by buffer alignment, so the same
    frames could come out differently from run to run.
    """
    t, h, w, _ = frames.shape
    r, g, b = (frames[..., k].astype(np.float32) for k in range(3))  # each [T, H, W]
    (yr, yg, yb), (ur, ug, ub), (vr, vg, vb) = _RGB_TO_YUV
    y = r * yr + g * yg + b * yb + 16.5  # +0.5: round when cast
    half = lambda a: (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]) * 0.25  # noqa: E731
    r, g, b = half(r), half(g), half(b)  # [T, H/2, W/2]: average 2x2 blocks, then convert
    cb = r * ur + g * ug + b * ub + 128.5
    cr = r * vr + g * vg + b * vb + 128.5
    planes = np.concatenate([y.reshape(t, -1), cb.reshape(t, -1), cr.reshape(t, -1)], axis=1)
    return np.clip(planes, 0, 255).astype(np.uint8).reshape(t, h * 3 // 2, w)


def _write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int) -> None:
    """H.264 yuv420p, fixed GOP, one encoder thread (so the bitstream is reproducible)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        # mbtree=0: x264's macroblock-tree rate control gave different bitstreams for the same
        # frames in different processes (measured on 48 px clips); without it output is stable
        options = {"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.gop_size = fps
        stream.codec_context.thread_count = 1
        for t, planes in enumerate(_yuv420p(frames)):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_clip(job: tuple[ClipPlan, SynthConfig, str]) -> int:
    """Render one clip and write its files; returns its index."""
    p, cfg, out = job
    frames = render(p, cfg)  # [T, H, W, 3] uint8
    if cfg.canvas:
        frames = place_on_canvas(p, cfg, frames)  # [T, C, C, 3]
    if cfg.format in ("frames", "both"):
        _write_jpegs(Path(out) / "frames" / p.clip_id, p.clip_id, frames, cfg.jpeg_quality)
    if cfg.format in ("video", "both"):
        _write_mp4(Path(out) / "videos" / f"{p.clip_id}.mp4", frames, cfg.fps, cfg.crf)
    return p.index


def _num_workers(requested: int, jobs: int) -> int:
    if requested == 0:
        requested = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested, jobs))


def _run_jobs(jobs: list, workers: int, progress: Callable[[int], None] | None) -> None:
    """Write all clips, in this process or a spawn pool (spawn: safe next to torch's threads)."""
    if workers == 1:
        for job in jobs:
            _write_clip(job)
            if progress:
                progress(1)
        return
    chunk = max(1, min(8, len(jobs) // (workers * 8)))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(_write_clip, jobs, chunksize=chunk):
            if progress:
                progress(1)


# ---------------------------------------------------------------------------------------------
# Annotations
# ---------------------------------------------------------------------------------------------

def _rel_path(clip_id: str, fmt: str) -> str:
    return f"frames/{clip_id}" if fmt in ("frames", "both") else f"videos/{clip_id}.mp4"


def _summary_table(plans: list[ClipPlan], fmt: str) -> pd.DataFrame:
    """One row per clip: ids, labels, fold, length, episode span [start, end), apex, distractor."""
    rows = []
    for p in plans:
        inside = np.flatnonzero(p.intensity > 0)
        rows.append({
            "clip_id": p.clip_id, "path": _rel_path(p.clip_id, fmt), "label": p.label, "class": CLASSES[p.label],
            "fold": p.fold, "n_frames": p.n_frames, "episode_start": int(inside[0]), "episode_end": int(inside[-1]) + 1,
            "apex": int(np.argmax(p.intensity)), "distractor": CLASSES[p.distractor] if p.distractor >= 0 else "",
        })
    return pd.DataFrame(rows)


def _to_csv(df: pd.DataFrame, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, lineterminator="\n", **kw)


def _write_annotations(out: Path, table: pd.DataFrame, plans: list[ClipPlan], cfg: SynthConfig) -> None:
    """DFEW fold CSVs, plain lists, clips.csv, frame_labels.csv and meta.json."""
    split_dir = out / "EmoLabel_DataSplit"
    (out / "lists").mkdir(exist_ok=True)
    for k in range(1, cfg.folds + 1):
        for split, rows in (("train", table[table.fold != k]), ("test", table[table.fold == k])):
            dfew = pd.DataFrame({"video_name": rows.clip_id, "label": rows.label + 1})
            _to_csv(dfew, split_dir / f"{split}(single-labeled)" / f"set_{k}.csv")
            lines = [f"{r.path} {r.n_frames} {r.label}\n" for r in rows.itertuples()]
            (out / "lists" / f"set_{k}_{split}.txt").write_text("".join(lines))
    _to_csv(table[["clip_id", "path", "class", "fold"]].rename(columns={"class": "label"}), out / "clips.csv")
    intensity = np.concatenate([p.intensity for p in plans])
    frames = pd.DataFrame({
        "clip_id": np.repeat([p.clip_id for p in plans], [p.n_frames for p in plans]),
        "frame": np.concatenate([np.arange(p.n_frames) for p in plans]),
        "intensity": intensity,
        "in_episode": (intensity > 0).astype(np.int64),
    })
    _to_csv(frames, out / "frame_labels.csv", float_format="%.4f")
    if cfg.canvas:
        boxes = np.concatenate([true_boxes(p, cfg) for p in plans])  # [sum T, 4]
        _to_csv(pd.DataFrame({"clip_id": frames["clip_id"], "frame": frames["frame"], "x0": boxes[:, 0],
                              "y0": boxes[:, 1], "x1": boxes[:, 2], "y1": boxes[:, 3]}),
                out / "boxes.csv", float_format="%.2f")
    from . import __version__

    config = {k: v for k, v in to_dict(cfg).items() if k != "workers"}  # workers never changes the output
    counts = table["class"].value_counts()
    meta = {
        "generator": GENERATOR, "complete": True, "tgdfer_version": __version__, "seed": cfg.seed, "config": config,
        "classes": list(CLASSES), "class_counts": {c: int(counts.get(c, 0)) for c in CLASSES},
        "clips": len(table), "frames": int(table.n_frames.sum()), "action_units": faces.EMOTION_AUS,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# Front door
# ---------------------------------------------------------------------------------------------

def _prepare_out(out: Path, overwrite: bool) -> None:
    """OUT must be missing or empty, unless overwrite=True (then our previous outputs are removed)."""
    if out.exists() and not out.is_dir():
        raise TgdferError(f"{out}: exists and is not a directory; pass an empty or new directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise TgdferError(
                f"{out}: directory is not empty; pass an empty directory or overwrite=True "
                "(CLI: --overwrite) to replace the SynthDFER files in it"
            )
        ours = [name for name in _OUTPUTS if (out / name).exists() or (out / name).is_symlink()]
        if ours and not _made_by_synth(out):  # DFEW's own EmoLabel_DataSplit, a user's videos/: not ours to delete
            raise TgdferError(f"{out}: holds {', '.join(ours)} but no meta.json written by tgdfer synth, so --overwrite "
                              "would delete what synth did not make; pass an empty or new directory")
        for name in _OUTPUTS:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").write_text(json.dumps({"generator": GENERATOR, "complete": False}) + "\n")  # ours, from now on


GENERATOR = "tgdfer.synth"  # meta.json's mark of a folder synth wrote (complete or interrupted)


def _made_by_synth(out: Path) -> bool:
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR


def check_class_set(classes: ClassSet | None) -> None:
    """ConfigError unless `classes` is None or the default set: SynthDFER draws the 7 basic emotions
    (faces.EMOTION_AUS) and writes their labels in DFEW's order, so no other class set fits its files."""
    if classes is None or classes.is_default:
        return
    known = {c.lower() for c in CLASSES}
    alien = [n for n in classes.names if n.lower() not in known]
    why = (f"it cannot draw {', '.join(alien)}" if alien else
           "its files number the classes in DFEW's order, and the declared set orders or selects them differently")
    raise ConfigError("classes.names", f"SynthDFER makes only the 7 basic emotions ({', '.join(CLASSES)}); the "
                      f"pipeline declares {classes.describe()}: {why}. Generate SynthDFER with the default "
                      "[classes], or bring a dataset with these classes")


def generate(
    out: str | Path,
    cfg: SynthConfig,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
    classes: ClassSet | None = None,
) -> pd.DataFrame:
    """Write a SynthDFER dataset to `out` (layout in the module docstring) and return its clip summary.

    `progress` is called with the number of clips just finished (an increment, e.g. rich's
    `progress.advance`). With more than one worker the clips are rendered in a "spawn" process
    pool, so a script calling this needs the usual `if __name__ == "__main__":` guard. Returns one row per clip: clip_id, path (relative to `out`), label
    (0-based), class, fold, n_frames, episode_start, episode_end (exclusive), apex, distractor
    (class name, "" if none). `classes` (a pipeline's [classes]): refused unless the default 7
    emotions (`check_class_set`).
    """
    check_class_set(classes)
    out = Path(out)
    _prepare_out(out, overwrite)
    started = time.perf_counter()
    plans = plan(cfg)
    table = _summary_table(plans, cfg.format)
    workers = _num_workers(cfg.workers, len(plans))
    _run_jobs([(p, cfg, str(out)) for p in plans], workers, progress)
    _write_annotations(out, table, plans, cfg)
    logger.info("wrote %d clips to %s in %.1f s (%d workers)", len(plans), out, time.perf_counter() - started, workers)
    return table


def summarize(out: str | Path) -> pd.DataFrame:
    """Per-class counts per test fold and clip statistics, read back from a SynthDFER folder.

    Index: class names (DFEW order) then "total". Columns: fold_1..fold_K (test clips), clips,
    share, min_frames, mean_frames, max_frames, short (clips under 16 frames), episode_share
    (mean fraction of a clip's frames inside the labelled episode).
    """
    out = Path(out)
    for name in ("clips.csv", "frame_labels.csv"):
        if not (out / name).is_file():
            raise AnnotationError(out / name, "missing; is this a SynthDFER folder? create one with `tgdfer synth`")
    clips = pd.read_csv(out / "clips.csv", dtype={"clip_id": str})
    frames = pd.read_csv(out / "frame_labels.csv", dtype={"clip_id": str})
    per_clip = frames.groupby("clip_id").agg(n_frames=("frame", "size"), episode=("in_episode", "mean"))
    clips = clips.join(per_clip, on="clip_id")
    clips["label"] = pd.Categorical(clips["label"], categories=list(CLASSES))
    fold_counts = pd.crosstab(clips["label"], clips["fold"], dropna=False).reindex(list(CLASSES), fill_value=0)
    fold_counts.columns = [f"fold_{k}" for k in fold_counts.columns]
    stats = clips.groupby("label", observed=False).agg(
        clips=("clip_id", "size"), min_frames=("n_frames", "min"), mean_frames=("n_frames", "mean"),
        max_frames=("n_frames", "max"), short=("n_frames", lambda n: int((n < 16).sum())),
        episode_share=("episode", "mean"),
    )
    table = fold_counts.join(stats)
    total = {**fold_counts.sum().to_dict(), "clips": len(clips), "min_frames": clips.n_frames.min(),
             "mean_frames": clips.n_frames.mean(), "max_frames": clips.n_frames.max(),
             "short": int((clips.n_frames < 16).sum()), "episode_share": clips.episode.mean()}
    table.loc["total"] = pd.Series(total)
    table.insert(table.columns.get_loc("clips") + 1, "share", table["clips"] / len(clips))
    table.index.name = "class"
    return table
