"""Does the per-frame influence (Eq. 12) point at the frames that show the expression?

Beyond the paper, whose datasets have no frame labels: SynthDFER writes `frame_labels.csv`
(clip_id, frame, intensity, in_episode), the frame-level truth. For every test clip the
influence of its view-0 frames is scored against "inside the labelled expression episode":

- AUROC: the chance that an in-episode frame has a higher influence than an out-of-episode one
  (ties count half), per clip, averaged over clips;
- hit@1: the share of clips whose most influential frame lies in the episode;

over the clips whose sampled frames include both kinds (others have nothing to rank). A
random-influence baseline (uniform scores, `draws` seeded draws per clip, averaged) is scored on
the same clips beside it: its expected AUROC is 0.5 and its expected hit@1 the episode's share
of the sampled frames.

Both modes of `head.frame_influence` are scored side by side: "relative" (the default
influence: the frame's score for the class minus its mean over the classes, i.e. its contribution
to the class-k decision) and "similarity" (the frame's raw similarity to the class's enhanced
label feature). The bag loss constrains only differences between classes, so the
class-independent part of a frame's similarity is free, and on SynthDFER it decides the order of
the similarity influence about as often as the expression does (see docs/paper-mapping.md).

Choices (docs/paper-mapping.md): the influence is taken for the clip's TRUE class (the question
is where the labelled expression is); Neutral clips are left out (their "episode" is a stretch
with no expression, not an expression to find); a source frame sampled at several positions
(edge-padded short clips) counts once, with its highest influence.

Shape legend: n clips, T frames (positions), U distinct source frames of a clip.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .errors import TgdferError

log = logging.getLogger(__name__)

FRAME_LABELS = "frame_labels.csv"
_COLUMNS = ("clip_id", "frame", "in_episode")


def find_frame_labels(paths: Iterable[str | Path], levels: int = 3, tries: int = 5) -> Optional[Path]:
    """The `frame_labels.csv` beside a dataset: looked for in the folders above the first clip paths."""
    for k, path in enumerate(paths):
        if k >= tries:
            break
        for parent in list(Path(path).parents)[:levels]:
            if (parent / FRAME_LABELS).is_file():
                return parent / FRAME_LABELS
    return None


def load_frame_labels(path: str | Path) -> dict[str, np.ndarray]:
    """clip_id -> in_episode [n_frames] bool, indexed by 0-based frame number."""
    try:
        df = pd.read_csv(path, dtype={"clip_id": str})
    except (OSError, ValueError) as e:
        raise TgdferError(f"{path}: cannot read frame labels ({e})") from e
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise TgdferError(f"{path}: frame labels need columns {', '.join(_COLUMNS)}; missing {', '.join(missing)}")
    out = {}
    for clip_id, g in df.groupby("clip_id", sort=False):
        frames = g["frame"].to_numpy(dtype=np.int64)
        truth = np.zeros(frames.max() + 1, dtype=bool)
        truth[frames] = g["in_episode"].to_numpy() > 0
        out[str(clip_id)] = truth
    return out


def frame_scores(score: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct source frame: (frames [U] ascending, highest score over the positions showing it [U])."""
    frames, inverse = np.unique(np.asarray(index), return_inverse=True)
    best = np.full(len(frames), -np.inf)
    np.maximum.at(best, inverse.reshape(-1), np.asarray(score, dtype=np.float64).reshape(-1))
    return frames, best


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of x, ties sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(xs)) + 1]
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve of `scores` for the `positive` items (Mann-Whitney U; ties count 1/2).

    NaN when one of the two groups is empty.
    """
    scores, pos = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n1 = int(pos.sum())
    n0 = len(pos) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((_average_ranks(scores)[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def localise(scores: Mapping[str, np.ndarray], frame_index: np.ndarray, clip_ids: Sequence[str],
             truth: Mapping[str, np.ndarray], seed: int = 0, draws: int = 20) -> Optional[dict[str, float]]:
    """Score each frame score [n, T] of `scores` (positions showing source frames frame_index [n, T]) against `truth`.

    Returns {"clips": scored clips, "<name> AUROC", "<name> hit@1" for every score, then
    "random AUROC", "random hit@1"} (fractions), or None when no clip can be scored. Clips
    without frame labels, or whose labels do not cover their sampled frames, are skipped.
    """
    rng = np.random.default_rng(seed)
    names = [*scores, "random"]
    auc: dict[str, list[float]] = {k: [] for k in names}
    hit: dict[str, list[float]] = {k: [] for k in names}
    for i, (idx, clip_id) in enumerate(zip(np.asarray(frame_index), clip_ids)):
        labels = truth.get(str(clip_id))
        if labels is None or idx.min() < 0 or idx.max() >= len(labels):
            continue
        frames = np.unique(idx)  # [U]
        inside = labels[frames]  # [U]
        if inside.all() or not inside.any():
            continue
        for name, score in scores.items():
            _, s = frame_scores(np.asarray(score)[i], idx)  # [U]
            auc[name].append(auroc(s, inside))
            hit[name].append(float(inside[np.argmax(s)]))
        noise = rng.random((draws, len(frames)))  # [draws, U] uniform random influence
        auc["random"].append(float(np.mean([auroc(r, inside) for r in noise])))
        hit["random"].append(float(inside[noise.argmax(1)].mean()))
    if not auc["random"]:
        return None
    out: dict[str, float] = {"clips": len(auc["random"])}
    for name in names:
        out[f"{name} AUROC"] = float(np.mean(auc[name]))
        out[f"{name} hit@1"] = float(np.mean(hit[name]))
    return out
