"""`tgdfer evaluate`: re-score trained runs from their checkpoints, and analyse their frame influence.

For each run (one per fold) the head is rebuilt from its checkpoint and scored on the test clips
of its store (view 0), giving the paper's Table 1 / 2 layout. On top of that:

- Table 6 (`frames=("highest", "lowest"), ks=(1, 2, 3)`): the test set re-scored from only the
  k frames of highest or lowest influence (Eq. 12 in the chosen `head.frame_influence` mode,
  default "relative", for the predicted class). The k frames,
  in their temporal order, each fill T/k consecutive positions of a T-frame input, which goes
  through the whole head again (docs/paper-mapping.md says why).
- Localisation (`tgdfer.localize`), whenever the dataset has frame labels (SynthDFER): both
  influence modes and a random influence, side by side.
- Figures (`tgdfer.figures`): the confusion matrix per fold and their mean (Fig. 3), and the
  frame strips of the most and least confident test clip of each run (Fig. 4).

Shape legend: N clips in the store, n scored clips, V views, T frames, D width, C classes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from .devicedata import load_device_data, resolve_device
from .errors import ConfigError, FrameReadError, TgdferError
from .facetrack import crop_frames
from .frames import open_frames
from .head import INFLUENCES, TGDFERHead, frame_influence
from .labels import CLASSES, class_set
from .live import refresh_view0_from_checkpoint
from .localize import find_frame_labels, load_frame_labels, localise
from .metrics import Scores, fold_table, save_table, score, split_table
from .model import build_head
from .config import table_diff
from .limits import load_json
from .store import FeatureStore
from .run import (CONFIG, RESULT_NEUTRAL, check_checkpoint_config, content_diff, load_checkpoint, load_run_config,
                  run_checkpoint, unfinished)
from .trainconfig import PROTOCOLS, TrainConfig

log = logging.getLogger(__name__)

FRAME_CHOICES = ("highest", "lowest")  # Table 6's "Influence" column


@dataclass
class RunScore:
    run: Path
    fold: Optional[int]
    selection: str
    epoch: int
    test: Scores
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # [n] store rows of the test clips
    logits: np.ndarray = field(default_factory=lambda: np.empty((0, len(CLASSES))))  # [n, C] view 0
    classes: tuple[str, ...] = CLASSES  # class names of the run's store, label order

    @property
    def name(self) -> str:
        """Row label: "fold k", or "test" for a train/test-split dataset."""
        return f"fold {self.fold}" if self.fold is not None else "test"


@dataclass
class LoadedRun:
    """A run's head with its checkpoint loaded, and its store's test data on the device."""

    run: Path
    cfg: TrainConfig
    head: TGDFERHead
    epoch: int
    feats: torch.Tensor  # [N, T, D] view 0, on the device
    labels: np.ndarray  # [N]
    test: np.ndarray  # [n] test rows
    clips: pd.DataFrame  # the store's clip table
    frame_index: np.ndarray  # [N, T] source frame of every view-0 feature
    frame_backend: str  # video decoder the store was extracted with
    classes: tuple[str, ...] = CLASSES  # class names of the store (label i = classes[i])
    boxes: Optional[np.ndarray] = None  # [N, T, 4] view-0 face crop boxes (None: the store has no face stage)
    crop_size: int = 224  # side of the face crops (the store's faces.size)
    source: dict[str, str] = field(default_factory=dict)  # run, store, encoder: written into the figures' PNGs


def load_run(run: str | Path, device: str = "auto", trust_weights: bool = False) -> LoadedRun:
    """Rebuild the run's head from its checkpoint, with its store's view-0 features on the device.

    `trust_weights`: the user's opt-in to unpickle the store's encoder weights file in full (see
    weights.read_state_dict); the run's own config.json never sets it.
    """
    run = Path(run)
    head_cfg, cfg, encoder = load_run_config(run)
    why = unfinished(run)
    if why is not None:  # its scores would be reported as the run's (the final or selected epoch)
        raise TgdferError(why)
    if encoder is not None:
        encoder.trust_weights = trust_weights
    dev = resolve_device(device)
    path = run_checkpoint(run)
    ckpt = load_checkpoint(path, map_location=dev)
    record = load_json((run / CONFIG).read_bytes(), str(run / CONFIG))
    check_checkpoint_config(run, record, ckpt, path)
    with FeatureStore.open(cfg.store) as store:
        if store.fingerprint != ckpt["store_fingerprint"]:
            raise TgdferError(f"{cfg.store} is not the store {run} was trained on (fingerprints differ); "
                              "re-extract it with the run's settings")
        changed = [c for c in content_diff(ckpt.get("store_content"), store.content_hash())
                   if not c.startswith("text set")]  # the run's prompts are read from its checkpoint
        if changed:  # e.g. clips.csv edited: labels or folds moved under the run
            raise TgdferError(f"{cfg.store} changed since {run} was trained on it ({', '.join(changed)} differ): "
                              "its scores would not be the run's; evaluate on the store as it was")
        head = build_head(head_cfg, store, dev, ckpt["head_args"]["seeds"][0], encoder=encoder)
        data = load_device_data(store, cfg, dev)
        if ckpt.get("mode") == "end-to-end":  # view 0 through the fine-tuned encoder, not the store's features
            refresh_view0_from_checkpoint(store, ckpt, cfg, data, dev, encoder)
        frame_index = store.read_frame_index()[:, 0].astype(np.int64)  # [N, T]
        faces = store.fingerprint.get("faces")
        boxes = store.read_boxes()[:, 0] if faces else None  # [N, T, 4]
        clips = store.clips
        enc = store.fingerprint.get("encoder") or {}
        source = {"Source": f"tgdfer evaluate {run}", "Store": str(cfg.store),
                  "Encoder": f"{enc.get('model')} ({enc.get('pretrained')}, weights sha256 "
                             f"{str(enc.get('weights_sha256'))[:16]})"}
    head.load_state_dict(ckpt["head_state"])
    head.eval()
    extract_record = record.get("pipeline", {}).get("extract", {})
    return LoadedRun(run=run, cfg=cfg, head=head, epoch=int(ckpt["epoch"]), feats=data.feats[:, 0],
                     labels=data.labels.cpu().numpy(), test=data.test, clips=clips, frame_index=frame_index,
                     frame_backend=extract_record.get("frame_backend", "auto"), classes=data.classes, boxes=boxes,
                     crop_size=int(faces["size"]) if faces else 224, source=source)


@torch.no_grad()
def forward(head: TGDFERHead, feats: torch.Tensor, target: Optional[np.ndarray] = None,
            batch_size: int = 256, influence: str = "relative") -> tuple[np.ndarray, np.ndarray]:
    """Head on features [n, T, D] (any float dtype) -> (logits [n, C], influence [n, T]) as numpy.

    The influence (Eq. 12, `head.frame_influence` mode `influence`) is for `target` [n] when given,
    else for the predicted class.
    """
    check_influence(influence)
    head.eval()
    fine = head.fine_prompt()  # X^FP once for all batches
    logits, scores = [], []
    for start in range(0, len(feats), batch_size):
        x = feats[start:start + batch_size].float()  # [B, T, D]
        t = None if target is None else torch.as_tensor(target[start:start + batch_size], device=x.device)[None]
        out = head.forward_head(head.forward_features(x), target=t, fine=fine)
        t = out.logits.argmax(dim=-1) if t is None else t  # [1, B]
        logits.append(out.logits[0].float().cpu())
        scores.append(frame_influence(out.frame_logits, t, influence)[0].float().cpu())
    return torch.cat(logits).numpy(), torch.cat(scores).numpy()


def check_influence(mode: str) -> str:
    """`mode` if it is a `head.frame_influence` mode, else ConfigError naming --influence."""
    if mode not in INFLUENCES:
        raise ConfigError("--influence", f"{mode!r} is not one of {', '.join(INFLUENCES)}")
    return mode


def score_run(lr: LoadedRun) -> RunScore:
    """Scores of the run's test clips from view 0 (what train-head reported for the same weights)."""
    logits, _ = forward(lr.head, lr.feats[lr.test])
    return RunScore(run=lr.run, fold=lr.cfg.fold, selection=lr.cfg.selection, epoch=lr.epoch,
                    test=score(lr.labels[lr.test], logits, lr.classes), rows=lr.test, logits=logits,
                    classes=lr.classes)


def rescore(run: str | Path, device: str = "auto", trust_weights: bool = False) -> RunScore:
    """Rebuild the run's head from its checkpoint and score it on the test clips of its store."""
    return score_run(load_run(run, device, trust_weights))


# -- Table 6 ------------------------------------------------------------------------------------


def select_frames(influence: np.ndarray, index: np.ndarray, k: int, which: str) -> np.ndarray:
    """Positions [T] of a T-frame input made of the clip's k highest or lowest influence frames.

    influence [T] and index [T] (source frames) of one clip. A source frame sampled at several
    positions counts once (its highest influence; its first position). The chosen frames, in
    temporal order, each fill T/k consecutive positions; a clip with fewer than k distinct frames
    uses them all.
    """
    if which not in FRAME_CHOICES:
        raise ConfigError("frames", f"{which!r} is not one of {', '.join(FRAME_CHOICES)}")
    T = len(index)
    frames, first = np.unique(index, return_index=True)  # distinct frames [U], their first position [U]
    best = np.full(len(frames), -np.inf)
    np.maximum.at(best, np.searchsorted(frames, index), influence)  # [U] highest influence per frame
    order = np.argsort(-best if which == "highest" else best, kind="stable")[:k]
    chosen = np.sort(first[order])  # [k'] positions, temporal order
    return chosen[np.arange(T) * len(chosen) // T]  # [T], each chosen frame repeated T/k' times


def frame_subset_scores(lr: LoadedRun, which: str, k: int, influence: np.ndarray) -> Scores:
    """Table 6: test scores from only the k frames of highest/lowest `influence` [n, T] (view 0)."""
    rows = lr.test
    pos = np.stack([select_frames(inf, lr.frame_index[r], k, which) for inf, r in zip(influence, rows)])  # [n, T]
    feats = lr.feats[torch.as_tensor(rows, device=lr.feats.device)[:, None],
                     torch.as_tensor(pos, device=lr.feats.device)]  # [n, T, D]
    logits, _ = forward(lr.head, feats)
    return score(lr.labels[rows], logits, lr.classes)


def parse_ks(text: str | Sequence[int]) -> list[int]:
    """"1,2,3" -> [1, 2, 3]; each k >= 1."""
    try:
        ks = [int(k) for k in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        raise ConfigError("--k", f"expected frame counts like 1,2,3, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise ConfigError("--k", f"frame counts must be >= 1, got {text!r}")
    return ks


def parse_frames(text: str | Sequence[str] | None) -> list[str]:
    """"highest,lowest" -> ["highest", "lowest"]."""
    if not text:
        return []
    items = [f.strip().lower() for f in (text.split(",") if isinstance(text, str) else text)]
    bad = [f for f in items if f not in FRAME_CHOICES]
    if bad:
        raise ConfigError("--frames", f"{bad[0]!r} is not one of {', '.join(FRAME_CHOICES)}")
    return list(dict.fromkeys(items))


def table6(rows: list[dict]) -> pd.DataFrame:
    """Paper Table 6 layout: influence, # of frames, UAR, WAR (percent, mean over the runs)."""
    df = pd.DataFrame(rows)
    mean = df.groupby(["influence", "frames"], sort=False)[["UAR", "WAR"]].mean().reset_index()
    mean[["UAR", "WAR"]] = (mean[["UAR", "WAR"]] * 100).round(2)
    return mean.set_index("influence")


# -- the whole evaluation -----------------------------------------------------------------------


@dataclass
class Evaluation:
    """What `evaluate` computed and wrote."""

    results: pd.DataFrame  # Table 1 / 2 layout
    protocol: str
    scores: list[RunScore]
    table6: Optional[pd.DataFrame] = None  # when frames were asked for
    localisation: Optional[pd.DataFrame] = None  # when the dataset has frame labels
    influence: str = "relative"  # head.frame_influence mode of Table 6 and the strips
    classes: tuple[str, ...] = CLASSES  # the runs' class set (label order)
    files: list[Path] = field(default_factory=list)  # tables and figures written


# What may differ between the runs of one results table: the fold and seed, and what cannot change a result.
_PER_RUN = (RESULT_NEUTRAL - {"train.epochs"}) | {"train.fold", "train.seed"}


def check_comparable(runs: Sequence[Path]) -> None:
    """TgdferError unless every run was trained as the first was (its head, train and encoder settings, less
    `_PER_RUN`) on the same features (its store's fingerprint): a mean over folds is a claim about one
    method on one dataset. Reads only config.json and the checkpoints' headers."""
    def settings(run: Path) -> tuple[dict, Optional[dict]]:
        why = unfinished(run)  # also names a missing or foreign folder; an unfinished run as such, not as a diff
        if why is not None:
            raise TgdferError(why)
        record = load_json((run / CONFIG).read_bytes(), str(run / CONFIG))
        header = load_checkpoint(run_checkpoint(run), tensors=False)
        return {k: record.get(k) for k in ("head", "train", "encoder")}, header.get("store_fingerprint")

    first, first_store = settings(runs[0])
    for run in runs[1:]:
        mine, store = settings(run)
        diff = table_diff(first, mine, _PER_RUN)
        if store != first_store:
            diff.append(("store", f"the features of {first['train'].get('store')}", f"other features "
                                                                                     f"({mine['train'].get('store')})"))
        if diff:
            shown = "; ".join(f"{k}: {a!r} in {runs[0]}, {b!r} here" for k, a, b in diff[:4])
            raise TgdferError(f"{run}: trained otherwise than {runs[0]} ({shown}); a results table is one setting's "
                              "folds on one dataset: evaluate such runs apart (tgdfer sweep compares settings)")


def _refuse_links(out: Path) -> None:
    """A run's default output folder, or anything in it, that is a symbolic link: a shared run folder's
    `eval -> /elsewhere` or `eval/results.csv -> ~/.bashrc` would have evaluate write through it."""
    links = [out] if out.is_symlink() else [p for p in sorted(out.rglob("*")) if p.is_symlink()] if out.is_dir() else []
    if links:
        raise TgdferError(f"{links[0]} is a symbolic link (to {os.readlink(links[0])}): evaluate writes its default "
                          "output only into real files in a real folder of the run; remove the link or pass --out")


def evaluate(runs: Sequence[str | Path], out: Optional[str | Path] = None, device: str = "auto",
             frames: Sequence[str] = (), ks: Sequence[int] = (1, 2, 3), figures: bool = True,
             localisation: bool = True, influence: Optional[str] = None, trust_weights: bool = False) -> Evaluation:
    """Re-score `runs`; write results.{csv,md}, evaluation.json (the runs), table6.{csv,md}, localisation.{csv,md},
    figures/ under `out`.

    `frames` ("highest", "lowest") and `ks` ask for Table 6; localisation is scored whenever the
    clips' dataset has frame labels (both influence modes); `figures` draws Fig. 3 and Fig. 4 under
    `out`/figures. `influence` is the `head.frame_influence` mode Table 6 and the strips use (None:
    the first run's `[head] influence`, "relative" unless its pipeline chose the paper's similarity).
    `trust_weights` opts in to unpickling the stores' encoder weights files in full (weights.py).
    """
    runs = [Path(r) for r in runs]
    if not runs:
        raise TgdferError("evaluate needs at least one run folder")
    check_comparable(runs)
    if influence is None:
        influence = load_run_config(runs[0])[0].influence
    check_influence(influence)
    frames, ks = parse_frames(list(frames)), parse_ks(list(ks))
    if out is None:
        out = default_out(runs)
        _refuse_links(out)
    out = Path(out)
    scores, t6_rows, loc_rows, strips = [], [], [], []
    for run in runs:
        lr = load_run(run, device, trust_weights)  # one run's store on the device at a time
        s = score_run(lr)
        scores.append(s)
        t6_rows += _table6_rows(lr, s, frames, ks, influence) if frames else []
        truth = frame_truth(lr)
        loc = localise_run(lr, truth) if localisation and truth is not None else None
        loc_rows += [{"run": s.name, **loc}] if loc is not None else []
        strips += confidence_strips(lr, s, truth, influence) if figures else []
    results, protocol = results_table(scores)
    ev = Evaluation(results=results, protocol=protocol, scores=scores, influence=influence, classes=scores[0].classes)
    ev.files += save_table(results, out / "results", title="TG-DFER results (%)", note=f"model selection: {protocol}",
                           decimals=DECIMALS["results"])
    ev.files.append(_write_record(out / RECORD, runs, protocol, influence))
    if t6_rows:
        ev.table6 = table6(t6_rows)
        ev.files += save_table(ev.table6, out / "table6", title=TABLE6_TITLE, decimals=DECIMALS["table6"],
                               note=f"mean over {len(runs)} run(s); influence (Eq. 12, {influence}) for the "
                                    "predicted class on view 0; 'all' = every frame")
    if loc_rows:
        ev.localisation = localisation_table(loc_rows)
        ev.files += save_table(ev.localisation, out / "localisation", title=LOCALISATION_TITLE,
                               decimals=DECIMALS["localisation"],
                               note=LOCALISATION_NOTE)
    if figures:
        from .figures import confusion_figures

        ev.files += confusion_figures({s.name.replace(" ", ""): np.asarray(s.test.confusion) for s in scores},
                                      out / "figures", ev.classes)
        ev.files += _save_strips(strips, out / "figures")
    return ev


DECIMALS = {"results": 2, "table6": 2, "localisation": 3}  # per table, in its CSV, Markdown and on screen
RECORD = "evaluation.json"  # the runs an evaluation folder was computed from (`tgdfer report --html` reads it)


def _write_record(path: Path, runs: Sequence[Path], protocol: str, influence: str) -> Path:
    record = {"runs": [str(r.resolve()) for r in runs], "protocol": protocol, "influence": influence}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def read_record(folder: str | Path) -> Optional[dict]:
    """An evaluation folder's evaluation.json (runs, protocol, influence), or None when `folder` has none."""
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    record = load_json(path.read_bytes(), str(path))
    runs = record.get("runs") if isinstance(record, dict) else None
    if not isinstance(runs, list) or not runs or not all(isinstance(r, str) for r in runs):
        raise TgdferError(f"{path}: 'runs' must be a non-empty list of run folders")
    return record


def default_out(runs: Sequence[Path]) -> Path:
    """Where evaluate writes without --out: a folder of its own, never a shared parent such as runs/.

    One run: <run>/eval. Several: <their common parent>/eval_<run names joined by '+'> (names
    past the third as '+<n>more'), e.g. runs/dfew/eval_fold1+fold2+fold3+2more.
    """
    if len(runs) == 1:
        return runs[0] / "eval"
    names = [r.resolve().name for r in runs]
    shown = names[:3] + ([f"{len(names) - 3}more"] if len(names) > 3 else [])
    parent = Path(os.path.commonpath([str(r.resolve().parent) for r in runs]))
    try:
        parent = parent.relative_to(Path.cwd())
    except ValueError:
        pass
    return parent / ("eval_" + "+".join(shown))


TABLE6_TITLE = "Table 6: test set from the k frames of highest / lowest influence (%)"
LOCALISATION_TITLE = "Localisation of the expression episode by the frame influence"
LOCALISATION_NOTE = ("AUROC and hit@1 against SynthDFER's in_episode over the test clips not of a Neutral class, influence "
                     "(Eq. 12) for the true class: relative = the default, the frame's class score minus its mean "
                     "over the classes; similarity = the raw class score; random = uniform random influence")


def _table6_rows(lr: LoadedRun, s: RunScore, frames: Sequence[str], ks: Sequence[int],
                 mode: str = "relative") -> list[dict]:
    """One run's Table 6 rows: all frames, then each (influence, k) re-scored; fractions."""
    _, influence = forward(lr.head, lr.feats[lr.test], influence=mode)  # for the predicted class
    rows = [{"run": s.name, "influence": "all", "frames": lr.feats.shape[1], "UAR": s.test.uar, "WAR": s.test.war}]
    for which in frames:
        for k in ks:
            sub = frame_subset_scores(lr, which, k, influence)
            rows.append({"run": s.name, "influence": which, "frames": k, "UAR": sub.uar, "WAR": sub.war})
    return rows


def results_table(scores: Sequence[RunScore]) -> tuple[pd.DataFrame, str]:
    """Table 1 layout (one row per fold, then the mean and the std over folds) or Table 2 layout (one split);
    and the protocol."""
    sets = {s.classes for s in scores}
    if len(sets) > 1:
        raise TgdferError(f"runs use different class sets ({'; '.join(', '.join(c) for c in sorted(sets))}); "
                          "tabulate them separately")
    protocols = {PROTOCOLS[s.selection] for s in scores}
    if len(protocols) > 1:
        raise TgdferError(f"runs use different model-selection protocols ({'; '.join(sorted(protocols))}); "
                          "tabulate them separately")
    protocol = protocols.pop()
    marked = protocol if protocol == PROTOCOLS["test-best"] else None
    folds = [s.fold for s in scores]
    if all(f is not None for f in folds):
        if len(set(folds)) != len(folds):
            raise TgdferError(f"two runs for the same fold among {[str(s.run) for s in scores]}")
        return fold_table({s.fold: s.test for s in scores}, std=len(scores) > 1, protocol=marked), protocol
    if len(scores) != 1:
        raise TgdferError("runs without folds (train/test split datasets) are tabulated one at a time")
    return split_table(scores[0].test, protocol=marked), protocol


# -- localisation -------------------------------------------------------------------------------


def frame_truth(lr: LoadedRun) -> Optional[dict[str, np.ndarray]]:
    """clip_id -> in_episode [frames] from the dataset's frame_labels.csv (SynthDFER), or None without one."""
    path = find_frame_labels(lr.clips["path"].iloc[lr.test])
    return None if path is None else load_frame_labels(path)


def localise_run(lr: LoadedRun, truth: Optional[dict[str, np.ndarray]] = None,
                 seed: int = 0) -> Optional[dict[str, float]]:
    """`localize.localise` of the run's non-Neutral test clips (all of them in a class set without a
    "neutral" class), or None without frame labels."""
    truth = frame_truth(lr) if truth is None else truth
    if truth is None:
        return None
    neutral = class_set(lr.classes).neutral
    rows = lr.test if neutral is None else lr.test[lr.labels[lr.test] != neutral]
    if len(rows) == 0:
        return None
    scores: dict[str, list[torch.Tensor]] = {mode: [] for mode in INFLUENCES}  # Eq. 12 in each mode
    with torch.no_grad():
        for start in range(0, len(rows), 256):
            r = rows[start:start + 256]
            y = torch.as_tensor(lr.labels[r], device=lr.feats.device)[None]  # [1, B] true classes
            out = lr.head(lr.feats[torch.as_tensor(r, device=lr.feats.device)].float(), target=y)
            for mode, got in scores.items():
                got.append(frame_influence(out.frame_logits, y, mode)[0].float().cpu())
    ids = lr.clips["clip_id"].iloc[rows].astype(str).tolist()
    return localise({mode: torch.cat(got).numpy() for mode, got in scores.items()}, lr.frame_index[rows], ids,
                    truth, seed=seed)


def localisation_table(rows: list[dict]) -> pd.DataFrame:
    """One row per run (and their mean): clips, then AUROC and hit@1 of each frame score (fractions)."""
    df = pd.DataFrame(rows).set_index("run")
    if len(df) > 1:
        mean = df.mean().to_frame("mean").T
        mean["clips"] = df["clips"].sum()
        df = pd.concat([df, mean])
    df["clips"] = df["clips"].astype(int)
    df.index.name = "run"
    return df.round(DECIMALS["localisation"])


# -- frame strips ---------------------------------------------------------------------------------


STRIP_SOURCE_HEIGHT = 240  # a strip keeps its source frames at most this high (for the face boxes of the HTML report)


@dataclass
class Strip:
    """One test clip's sampled frames (view 0) with their influence: paper Fig. 4, and the HTML report's strips."""

    name: str  # file stem
    frames: np.ndarray  # [T, H, W, 3] uint8, the face crops the encoder saw (the source frames without a face stage)
    influence: np.ndarray  # [T]
    index: np.ndarray  # [T]
    title: str
    truth: Optional[np.ndarray]  # [T] in_episode, when the dataset has frame labels
    about: dict[str, str]  # where it comes from (LoadedRun.source), in the PNG's text chunks
    source: Optional[np.ndarray] = None  # [T, h, w, 3] uint8 source frames (h <= STRIP_SOURCE_HEIGHT), face stage only
    boxes: Optional[np.ndarray] = None  # [T, 4] x0 y0 x1 y1 crop boxes in `source`'s pixels (face stage only)


def confidence_strips(lr: LoadedRun, s: RunScore, truth: Optional[dict[str, np.ndarray]] = None,
                       mode: str = "relative") -> list[Strip]:
    """Frame strips of the run's most and least confident test clips (skipped when frames cannot be read)."""
    probs = torch.softmax(torch.as_tensor(s.logits), dim=-1).numpy()  # [n, C]
    conf = probs.max(1)
    out = []
    for tag, k in (("most_confident", int(conf.argmax())), ("least_confident", int(conf.argmin()))):
        row = int(s.rows[k])
        pred = int(probs[k].argmax())
        _, influence = forward(lr.head, lr.feats[[row]], influence=mode)  # for the predicted class
        index = lr.frame_index[row]
        path = lr.clips["path"].iat[row]
        source = boxes = None
        try:
            with open_frames(path, backend=lr.frame_backend) as src:
                frames = src.read(index)
            if lr.boxes is not None:  # show what the encoder saw: the face crops
                source, boxes = _shrink(frames, lr.boxes[row])  # and, small, where they were cut from
                frames = crop_frames(frames, lr.boxes[row], lr.crop_size)
        except (FrameReadError, ValueError) as e:
            log.warning("no frame strip for clip %s: %s", lr.clips["clip_id"].iat[row], e)
            continue
        title = (f"{s.name}, {tag.replace('_', ' ')}: clip {lr.clips['clip_id'].iat[row]}, "
                 f"true {lr.classes[int(lr.labels[row])]}, predicted {lr.classes[pred]} ({probs[k, pred]:.2f}); "
                 f"{mode} influence for {lr.classes[pred]}")
        labels = (truth or {}).get(str(lr.clips["clip_id"].iat[row]))
        shown = labels[index].astype(float) if labels is not None and index.max() < len(labels) else None
        out.append(Strip(f"strip_{s.name.replace(' ', '')}_{tag}", frames, influence[0], index, title, shown,
                         {"Title": title, **lr.source}, source, boxes))
    return out


def _shrink(frames: np.ndarray, boxes: np.ndarray, height: int = STRIP_SOURCE_HEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """Frames [T, H, W, 3] no higher than `height` and their boxes [T, 4] scaled alike (a 1080p clip's strips
    would otherwise hold 6 MB a frame until the evaluation ends)."""
    scale = min(1.0, height / frames.shape[1])
    if scale == 1.0:
        return frames, boxes
    from PIL import Image

    size = (max(1, round(frames.shape[2] * scale)), height)
    small = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])
    return small, np.asarray(boxes, dtype=np.float64) * scale


def _save_strips(strips: list[Strip], folder: Path) -> list[Path]:
    from .figures import frame_strip_figure, save_figure

    return [save_figure(frame_strip_figure(st.frames, st.influence, st.index, st.title, st.truth), folder / st.name,
                        st.about)[0]
            for st in strips]
