"""`tgdfer predict MODEL INPUT...`: a trained TG-DFER head applied to new clips.

MODEL is a run folder (its reported checkpoint: best.safetensors under a selection rule, else
last.safetensors) or a checkpoint file. The image encoder is rebuilt from what the checkpoint's store fingerprint
names (model, weights tag / file sha256 / random "none", QuickGELU, precision), and each clip is
decoded, sampled and transformed exactly as `tgdfer extract` makes view 0 (segment centres,
resize only; `extract.read_views`), so a clip of the training dataset gets the same features,
and the same logits, as `tgdfer evaluate` computes from the store. Any clip length works: T
segment centres, a clip shorter than T repeats its last frame. The face stage too follows the
store (`fingerprint["faces"]`: the same detector, margin, smoothing and crop size; none for
pre-cropped datasets); `--faces NAME` overrides it for raw video (`--faces none` turns it off).

INPUT (tgdfer.inputs, the same for the CLI and `Predictor`): a video file, a folder of frame
images, a folder of videos (each one a clip), a glob pattern (`clips/*.mp4`, quoted in the
shell), or a `.txt`/`.lst`/`.csv` file listing clips (a CSV's `path` column; relative paths are
read from the list's folder). A clip that cannot be read gives an error for that input; the
other inputs are still predicted. From Python, `Predictor("runs/x")(clip_or_list)` also takes
frame arrays [T, H, W, 3] uint8. Options: tgdfer.predictoptions.PredictOptions, the command's flags.

JSON output (`--json`, `PredictResult.to_json()`):

    {"model": "runs/x/last.safetensors", "tgdfer_version": "0.1.0",
     "encoder": {"model": "ViT-B-32", "pretrained": "openai", ...},
     "influence": "relative",                              # head.frame_influence mode (--influence)
     "faces": {"detector": "centerface", "margin": 0.25, ...},  # facetrack.FacesConfig used ({"detector": "none"}: whole frames)
     "classes": ["Happiness", "Sadness", "Neutral", "Anger", "Surprise", "Disgust", "Fear"],   # the model's
                                                           # class set, label order (the 7 emotions by default)
     "predictions": [
       {"input": "clip.mp4", "ok": true, "n_frames": 37, "predicted": "Happiness",
        "fallback": null,                                  # with a face stage: "center" when no face was found
                                                           # and --on-missing center cropped the centre square
                                                           # (then also a "warning" saying so)
        "probabilities": {"Happiness": 0.91, ...},        # softmax of the bag logits (Eq. 11), sums to 1
        "influence_class": "Happiness",                    # the class the influence is computed for
        "frames": [{"position": 0, "frame": 1, "influence": 0.12}, ...]},   # T entries: sampled
                                                           # position, 0-based source frame, Eq. 12 in [0, 1]
                                                           # (relative: the frame's class score minus its
                                                           # mean over the classes; similarity: the raw score);
                                                           # with a face stage also "box": [x0, y0, x1, y1], the
                                                           # square crop of that frame in source pixels, and
                                                           # "face": where that box came from: "detected",
                                                           # "interpolated" (between detections of one track
                                                           # segment), "carried" (copied from the nearest
                                                           # segment) or "center" (no face: centre square)
       {"input": "broken.mp4", "ok": false, "error": "broken.mp4: ..."}]}

Shape legend: T frames, D width, C classes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from . import __version__
from .augment import ClipTransform
from .config import build
from .devicedata import resolve_device
from .encoders import EncoderConfig, LoadedEncoder, check_weights, encode_texts, load_encoder
from .errors import ConfigError, TgdferError
from .evaluation import check_influence
from .clipinput import read_views
from .extraction import encode_views
from .facetrack import CENTER, FACE_SOURCES, TRACK_RULE, FaceStage, FacesConfig, crop_frames, track_rule
from .frames import ArraySource, open_frames
from .head import HeadConfig, TGDFERHead, frame_influence
from .inputs import BadInput, expand_input, expand_inputs
from .labels import CLASSES, class_set, stored_classes
from .predictoptions import PredictOptions, option_error
from .prompts import build_prompt_sets
from .run import read_checkpoint, resolve_checkpoint
from .text import FrozenTextEncoder

log = logging.getLogger(__name__)

@dataclass
class LoadedModel:
    """A trained head with the image encoder and view-0 preprocessing of its store (`load_predictor`)."""

    checkpoint: Path
    head: TGDFERHead
    encoder: LoadedEncoder
    transform: ClipTransform  # test-time: resize and normalise, as view 0
    frames: int  # T
    seed: int  # the store's sampling seed (view 0 does not draw from it)
    frame_backend: str  # video decoder the store was extracted with
    classes: tuple[str, ...] = CLASSES  # the model's class names, label order
    faces: FacesConfig = field(default_factory=FacesConfig)  # face stage: the store's, or --faces
    stage: Optional[FaceStage] = field(default=None, repr=False)  # its loaded detector (None: whole frames)

    @property
    def device(self) -> torch.device:
        return self.encoder.device


@dataclass
class Prediction:
    input: str
    n_frames: int  # frames in the clip
    probs: np.ndarray  # [C] softmax of the bag logits
    logits: np.ndarray  # [C] bag logits (Eq. 11 before the softmax)
    frame_index: np.ndarray  # [T] source frame (0-based) at each sampled position
    influence: np.ndarray  # [T] Eq. 12 for the predicted class (PredictResult.influence mode)
    boxes: Optional[np.ndarray] = None  # [T, 4] face crop box of each sampled frame (None: whole frames)
    frames: Optional[np.ndarray] = field(default=None, repr=False)  # [T, H, W, 3] uint8 (the crops), for figures
    classes: tuple[str, ...] = CLASSES  # class names of probs, label order
    sources: Optional[np.ndarray] = None  # [T] int8 where each face box came from (facetrack.FACE_SOURCES)

    @property
    def fallback(self) -> Optional[str]:
        """"center" when no face was found and the crops are the centre square (faces.on_missing), else None."""
        return "center" if self.sources is not None and (self.sources == CENTER).any() else None

    @property
    def face_sources(self) -> Optional[list[str]]:
        """Per sampled frame: "detected", "interpolated", "carried" or "center" (None: no face stage)."""
        return None if self.sources is None else [FACE_SOURCES[int(c)] for c in self.sources]

    @property
    def predicted(self) -> int:
        return int(self.probs.argmax())

    @property
    def label(self) -> str:
        """The predicted class name."""
        return self.classes[self.predicted]

    @property
    def probabilities(self) -> dict[str, float]:
        """Class name -> probability, in label order."""
        return {c: float(p) for c, p in zip(self.classes, self.probs)}

    def to_json(self) -> dict:
        faces = {} if self.sources is None else {"fallback": self.fallback}
        if self.fallback:
            faces["warning"] = ("no face found: the crops are the centre square of the frame "
                                "(faces.on_missing = \"center\")")
        return {"input": self.input, "ok": True, **faces, "n_frames": self.n_frames,
                "predicted": self.classes[self.predicted],
                "probabilities": {c: float(p) for c, p in zip(self.classes, self.probs)},
                "influence_class": self.classes[self.predicted],
                "frames": [{"position": t, "frame": int(i), "influence": float(v),
                            **({} if self.boxes is None else {"box": [float(c) for c in self.boxes[t]],
                                                              "face": self.face_sources[t]})}
                           for t, (i, v) in enumerate(zip(self.frame_index, self.influence))]}


@dataclass
class PredictFailure:
    input: str
    error: str

    def to_json(self) -> dict:
        return {"input": self.input, "ok": False, "error": self.error}


@dataclass
class PredictResult:
    checkpoint: Path
    encoder: dict  # the encoder record of the model's store fingerprint
    predictions: list[Union[Prediction, PredictFailure]]
    figures: list[Path] = field(default_factory=list)  # frame strips written (PNG)
    figure_error: Optional[str] = None  # why the strips could not be written (the predictions stand)
    influence: str = "relative"  # head.frame_influence mode of every prediction
    classes: tuple[str, ...] = CLASSES  # the model's class names, label order
    faces: dict = field(default_factory=lambda: {"detector": "none"})  # the face stage used (FacesConfig fields)

    @property
    def failed(self) -> int:
        return sum(isinstance(p, PredictFailure) for p in self.predictions)

    def to_json(self) -> dict:
        return {"model": str(self.checkpoint), "tgdfer_version": __version__, "encoder": self.encoder,
                "influence": self.influence, "faces": self.faces, "classes": list(self.classes),
                "predictions": [p.to_json() for p in self.predictions]}

    def to_frame(self):  # -> pandas.DataFrame
        """One row per input (the `--csv` file): input, ok, predicted, one probability column per class,
        n_frames, influence (the T per-frame values, space-separated), error; with a face stage also
        fallback ("center" where no face was found and the centre square was cropped)."""
        import pandas as pd

        rows = []
        for p in self.predictions:
            if isinstance(p, PredictFailure):
                rows.append({"input": p.input, "ok": False, "error": p.error})
                continue
            rows.append({"input": p.input, "ok": True, "predicted": p.label, **p.probabilities,
                         "n_frames": p.n_frames, "influence": " ".join(f"{v:.4f}" for v in p.influence),
                         "fallback": p.fallback})
        faces = ["fallback"] if self.faces.get("detector", "none") != "none" else []
        df = pd.DataFrame(rows, columns=["input", "ok", "predicted", *self.classes, "n_frames", "influence",
                                         "error", *faces])
        return df.astype({"n_frames": "Int64"})  # a failed row's empty cell must not turn 58 into 58.0


# -- the model ----------------------------------------------------------------------------------


def encoder_config(ckpt: dict, path: Path, weights: Optional[str] = None, trust_weights: bool = False) -> EncoderConfig:
    """The EncoderConfig that rebuilds the image encoder the model's features came from.

    `trust_weights` is the user's opt-in (--trust-weights), never read from the checkpoint.
    """
    fp = ckpt["store_fingerprint"]["encoder"]
    pretrained = weights or fp["pretrained"]
    if fp["pretrained"] == "file" and not weights:
        cfg = ckpt["config"]
        recorded = (cfg.get("encoder") or cfg.get("pipeline", {}).get("encoder") or {}).get("pretrained")
        where = f"not found at {recorded}" if recorded else "whose path the run did not record"
        if not recorded or not os.path.isfile(recorded):
            raise TgdferError(f"{path}: the model's features come from {fp['model']} weights in a local file "
                              f"(sha256 {str(fp.get('weights_sha256'))[:12]}...), {where}; pass the file "
                              "with --weights")
        pretrained = recorded
    if weights and not os.path.isfile(weights):
        raise TgdferError(f"--weights {weights}: no such file")
    return EncoderConfig(model=fp["model"], pretrained=pretrained, precision=fp.get("precision", "fp32"),
                         quick_gelu=fp.get("quick_gelu"), trust_weights=trust_weights)


def _load_encoder(ckpt: dict, path: Path, weights: Optional[str], device: torch.device,
                  trust_weights: bool = False) -> LoadedEncoder:
    fp = ckpt["store_fingerprint"]["encoder"]
    cfg = encoder_config(ckpt, path, weights, trust_weights)
    try:
        enc = load_encoder(cfg, device=device)
    except TgdferError as e:
        raise TgdferError(f"{path}: cannot load its image encoder {fp['model']}/{fp['pretrained']}: {e}") from e
    check_weights(enc, fp.get("weights_sha256"), cfg.pretrained, str(path))
    if ckpt.get("encoder_state") is not None:  # end-to-end: the fine-tuned image tower
        enc.model.visual.load_state_dict(ckpt["encoder_state"])
    return enc


def checkpoint_classes(ckpt: dict) -> tuple[str, ...]:
    """The class names a checkpoint predicts: its own record, else its store's (the 7 emotions for old ones)."""
    names = ckpt.get("class_names")
    return tuple(names) if names else stored_classes(ckpt.get("store_fingerprint")).names


def _build_head(ckpt: dict, path: Path, enc: LoadedEncoder) -> TGDFERHead:
    """The head the checkpoint describes, its text prompts re-encoded by `enc` and checked against it.

    The prompt texts are the checkpoint's own (recorded by train-head); older checkpoints rebuild them
    from the built-in sets and the run's descriptors file."""
    head_cfg = build(HeadConfig, ckpt["config"]["head"], "head")
    args = ckpt["head_args"]
    if enc.embed_dim != args["dim"]:
        raise TgdferError(f"{path}: the head takes {args['dim']}-wide features but {enc.fingerprint['model']} "
                          f"gives {enc.embed_dim}")
    descriptors = ckpt["config"].get("pipeline", {}).get("extract", {}).get("descriptors")
    prompts = ckpt.get("prompts") or {}
    if not {head_cfg.fine_text, head_cfg.coarse_text} <= set(prompts):
        try:
            prompts = build_prompt_sets(descriptors, classes=class_set(checkpoint_classes(ckpt)))
        except (OSError, TgdferError) as e:
            raise TgdferError(f"{path}: cannot rebuild its prompts (descriptors file {descriptors}): {e}") from e
        missing = sorted({head_cfg.fine_text, head_cfg.coarse_text} - set(prompts))
        if missing:
            raise TgdferError(f"{path}: records no prompt texts and tgdfer cannot rebuild its prompt set "
                              f"{', '.join(missing)} for {class_set(checkpoint_classes(ckpt)).describe()}")
    text = {name: encode_texts(enc, prompts[name]) for name in {head_cfg.fine_text, head_cfg.coarse_text}}
    try:
        head = TGDFERHead(head_cfg, dim=args["dim"], frames=args["frames"], classes=args["classes"], text=text,
                          text_encoder=FrozenTextEncoder(enc) if head_cfg.needs_text_encoder else None,
                          replicas=1, seeds=args["seeds"][:1])
    except ConfigError as e:
        raise TgdferError(f"{path}: cannot rebuild its head: {e}") from e
    state = ckpt["head_state"]
    _check_text(head, state, path)
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        raise TgdferError(f"{path}: its weights do not fit the head its config describes (written by tgdfer "
                          f"{ckpt.get('tgdfer_version')}, this is {__version__}): {str(e).splitlines()[0]}") from e
    return head.to(enc.device).eval()


def _check_text(head: TGDFERHead, state: dict, path: Path) -> None:
    """Re-encoded fixed prompts must equal the checkpoint's, else the encoder weights are not the trained-on ones."""
    for name in ("coarse", "fine_fixed"):
        if name not in state or not hasattr(head, name):
            continue
        again, saved = getattr(head, name).float().cpu(), state[name].float().cpu()
        if again.shape != saved.shape or not torch.allclose(again, saved, rtol=1e-2,
                                                            atol=1e-2 * float(saved.abs().max())):
            raise TgdferError(f"{path}: the text encoder loaded for predict does not reproduce the prompt "
                              "embeddings the model was trained with: wrong encoder weights?")


def faces_config(ckpt: dict, override: Optional[str] = None, on_missing: Optional[str] = None) -> FacesConfig:
    """The face stage of the model's store (fingerprint "faces"; absent = none), or detector `override`
    ("none" turns it off; another detector keeps the store's margin, size, ... but not its detector args);
    `on_missing` ("fail" | "center") replaces what a clip without a face does."""
    fp = ckpt["store_fingerprint"].get("faces")
    stored = FacesConfig.from_fingerprint(fp)
    if stored.enabled and track_rule(fp) != TRACK_RULE:
        log.warning("the model's store cropped its faces by face-track rule %d, this tgdfer crops by rule %d "
                    "(docs/face-detection.md): a clip where the two choose another face or place is cropped "
                    "differently than in the store", track_rule(fp), TRACK_RULE)
    if override is not None and override != stored.detector:
        stored = replace(stored, detector=override, args={})
    if on_missing is not None and on_missing != stored.on_missing:
        try:
            stored = replace(stored, on_missing=on_missing)
        except ConfigError as e:
            raise option_error("on_missing", f"{on_missing!r} is not one of 'fail', 'center'") from e
    return stored


def load_predictor(model: str | Path, device: str = "auto", weights: Optional[str] = None,
                   trust_weights: bool = False, faces: Optional[str] = None,
                   on_missing: Optional[str] = None, options: Optional[PredictOptions] = None) -> LoadedModel:
    """Load MODEL (a run folder or checkpoint) with the image encoder and preprocessing of its store.

    `options` (PredictOptions), when given, replaces the other keyword arguments.

    `trust_weights`: the user's opt-in to unpickle the encoder weights file in full (weights.py).
    `faces`: a face detector overriding the store's face stage (None = the store's; "none" = whole frames).
    `on_missing`: what a clip without a face does ("fail": a PredictFailure; "center": the centre
    square, marked as a fallback); None = the store's `faces.on_missing`.
    """
    if options is not None:
        device, weights, trust_weights = options.device, options.weights, options.trust_weights
        faces, on_missing = options.faces, options.on_missing
    path = resolve_checkpoint(model)
    ckpt = read_checkpoint(path)
    enc = _load_encoder(ckpt, path, weights, resolve_device(device), trust_weights)
    head = _build_head(ckpt, path, enc)
    fp = ckpt["store_fingerprint"]
    pp, sampling = fp["preprocessing"], fp["sampling"]
    transform = ClipTransform(size=pp["size"], train=False, normalize=pp["normalize"], mean=tuple(pp["mean"]),
                              std=tuple(pp["std"]))
    backend = ckpt["config"].get("pipeline", {}).get("extract", {}).get("frame_backend", "auto")
    try:
        face_cfg = faces_config(ckpt, faces, on_missing)
        stage = FaceStage(face_cfg) if face_cfg.enabled else None
        if stage is not None:
            stage.detector  # a detector that cannot load fails here, not once per input
    except ConfigError as e:
        raise TgdferError(f"{path}: its face stage: {e}") from e
    return LoadedModel(checkpoint=path, head=head, encoder=enc, transform=transform, frames=int(sampling["frames"]),
                       seed=int(sampling["seed"]), frame_backend=backend, classes=checkpoint_classes(ckpt),
                       faces=face_cfg, stage=stage)


# -- clips --------------------------------------------------------------------------------------


Clip = Union[str, Path, np.ndarray]  # a video file, a frame folder, or frames [T, H, W, 3] uint8 RGB


@dataclass
class _Read:
    """One clip decoded and transformed as view 0, ready for the encoder."""

    input: str
    n_frames: int
    pixels: torch.Tensor  # [1, T, 3, S, S]
    index: np.ndarray  # [T]
    frames: Optional[np.ndarray]  # [T, H, W, 3] when kept for a figure (the face crops with a face stage)
    boxes: Optional[np.ndarray] = None  # [T, 4] face crop boxes (None: whole frames)
    sources: Optional[np.ndarray] = None  # [T] int8 face source of each box (None: whole frames)


def _read_clip(p: LoadedModel, clip: Clip, keep_frames: bool, name: Optional[str] = None) -> _Read:
    """Decode one clip's T view-0 frames (FrameReadError / ValueError / OSError when it cannot be read)."""
    if isinstance(clip, np.ndarray):
        name = name or "array"
        src, stem = ArraySource(clip, name), name
    else:
        path = Path(clip)
        name, src, stem = str(path), open_frames(path, backend=p.frame_backend), path.stem
        if getattr(src, "strays", None):  # as the dataset readers warn for extract
            log.warning("%s: %s named unlike its other frames, read as frames all the same (a copy, a cover "
                        "image?): remove them or move them out", name, ", ".join(src.strays[:3])
                        + (f" and {len(src.strays) - 3} more" if len(src.strays) > 3 else ""))
    with src:
        pixels, index, boxes, sources = read_views(src, stem, views=1, frames=p.frames, seed=p.seed,
                                                   backend=p.frame_backend, test_tf=p.transform, faces=p.stage)
        # [1, T, 3, S, S], [1, T], [1, T, 4], [1, T]
        frames = src.read(index[0]) if keep_frames else None  # [T, H, W, 3] for the figure
        n = len(src)
    if frames is not None and p.stage is not None:
        frames = crop_frames(frames, boxes[0], p.faces.size)  # the strip shows what the encoder saw
    faced = p.stage is not None
    return _Read(name, n, pixels, index[0], frames, boxes[0] if faced else None, sources[0] if faced else None)


@torch.no_grad()
def _score(p: LoadedModel, reads: Sequence[_Read], influence: str) -> list[Prediction]:
    """Encode and classify several read clips in one batch: probabilities and influence of each."""
    feats = torch.from_numpy(encode_views(p.encoder, torch.stack([r.pixels for r in reads]))[:, 0]).to(p.device)
    out = p.head(feats.float())  # feats [B, T, D]
    scores = frame_influence(out.frame_logits, out.logits.argmax(dim=-1), influence)  # [1, B, T], predicted class
    logits = out.logits[0].float().cpu()  # [B, C]
    return [Prediction(input=r.input, n_frames=r.n_frames, probs=logits[i].softmax(-1).numpy(),
                       logits=logits[i].numpy(), frame_index=r.index, influence=scores[0, i].float().cpu().numpy(),
                       boxes=r.boxes, frames=r.frames, classes=p.classes, sources=r.sources)
            for i, r in enumerate(reads)]


def predict_clip(p: LoadedModel, path: Clip, keep_frames: bool = False, influence: str = "relative") -> Prediction:
    """Probabilities and per-frame influence of one clip (video file, frame folder or frame array), from view 0.

    `influence`: the `head.frame_influence` mode ("relative", the default, or "similarity").
    """
    check_influence(influence)
    return _score(p, [_read_clip(p, path, keep_frames)], influence)[0]


def predict_clips(p: LoadedModel, clips: Sequence[Union[Clip, PredictFailure, BadInput]], keep_frames: bool = False,
                  influence: str = "relative", batch: int = 8) -> list[Union[Prediction, PredictFailure]]:
    """`predict_clip` for many clips, encoded `batch` clips at a time; one that cannot be read becomes a
    PredictFailure (in its place) and the others go on; a BadInput (inputs.expand_inputs) becomes one."""
    check_influence(influence)
    out: list[Union[Prediction, PredictFailure, None]] = [None] * len(clips)
    pending: list[tuple[int, _Read]] = []

    def flush() -> None:
        for (i, _), pred in zip(pending, _score(p, [r for _, r in pending], influence)):
            out[i] = pred
        pending.clear()

    for i, clip in enumerate(clips):
        if isinstance(clip, (PredictFailure, BadInput)):
            out[i] = PredictFailure(clip.input, clip.error)
            continue
        name = f"array[{i}]" if isinstance(clip, np.ndarray) else str(clip)
        try:
            pending.append((i, _read_clip(p, clip, keep_frames, name)))
        except (TgdferError, ValueError, OSError) as e:
            out[i] = PredictFailure(name, str(e) if name in str(e) else f"{name}: {e}")
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return out  # type: ignore[return-value]


class Predictor:
    """One call from a trained run to predictions, for notebooks and scripts:

        predictor = Predictor("runs/synth/fold1")            # a run folder or a .safetensors checkpoint
        pred = predictor("clip.mp4")                          # a video, a frame folder, or frames [T, H, W, 3] uint8
        pred.label, pred.probabilities, pred.influence        # class, {class: p}, [T] per-frame influence (Eq. 12)
        preds = predictor(["a.mp4", "frames/b", array])       # a list: encoded in batches, a list back
        preds = predictor("my_videos/")                       # a folder of videos, a glob, a .txt/.csv list: a list

    Inputs are what `tgdfer predict` takes (tgdfer.inputs: the same expansion); options are
    `PredictOptions` fields, the command's flags (`Predictor(run, faces="none", on_missing="center")`).
    One clip that cannot be read raises its TgdferError; in a list (or an input naming several
    clips) it becomes a PredictFailure in its place and the others are predicted.
    """

    def __init__(self, model: str | Path, *, options: Optional[PredictOptions] = None, **kwargs):
        self.options = options_from(options, kwargs)
        self.model = load_predictor(model, options=self.options)
        self.influence = check_influence(self.model.head.cfg.influence if self.options.influence is None
                                         else self.options.influence)
        self.batch = self.options.batch

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.classes

    def __call__(self, clips: Union[Clip, Sequence[Clip]], keep_frames: bool = False
                 ) -> Union[Prediction, list[Union[Prediction, PredictFailure]]]:
        items, many = _expand(clips)
        preds = predict_clips(self.model, items, keep_frames, self.influence, self.batch)
        if many:
            return preds
        if isinstance(preds[0], PredictFailure):
            raise TgdferError(preds[0].error)
        return preds[0]

    def __repr__(self) -> str:
        return f"Predictor({str(self.model.checkpoint)!r}, classes={list(self.classes)})"


def _expand(clips: Union[Clip, Sequence[Clip]]) -> tuple[list[Union[Clip, BadInput]], bool]:
    """Predictor's argument -> (clips, whether a list comes back): one video, frame folder or array gives
    one Prediction; a list, a folder of videos, a glob or a list file gives a list (tgdfer.inputs)."""
    clips = _array(clips)
    if isinstance(clips, np.ndarray):
        return [clips], False
    if isinstance(clips, (str, Path)):
        return expand_input(clips)
    items = [_array(item) for item in clips]
    return [c for item in items for c in ([item] if isinstance(item, np.ndarray) else expand_input(item)[0])], True


def _array(clip: Any) -> Any:
    """A torch tensor of frames (torchvision.io.read_video's [T, H, W, 3] uint8) as a numpy array; anything
    else as it is. (Turned into text, a tensor was opened as a file name.)"""
    if type(clip).__module__.startswith("torch") and hasattr(clip, "detach"):
        return clip.detach().cpu().numpy()
    return clip


def options_from(options: Optional[PredictOptions], kwargs: dict) -> PredictOptions:
    """`options` with the keyword arguments replacing its fields (TypeError naming an unknown one)."""
    unknown = sorted(set(kwargs) - {f.name for f in fields(PredictOptions)})
    if unknown:
        raise TypeError(f"unknown predict option(s) {', '.join(unknown)}; the options are the fields of "
                        f"PredictOptions: {', '.join(f.name for f in fields(PredictOptions))}")
    opts = replace(options or PredictOptions(), **kwargs)
    if opts.threads is not None:
        from .threads import apply_threads, auto_threads

        apply_threads(auto_threads(opts.threads))
    return opts


def _figure_stem(folder: Path, path: str, used: set[str]) -> Path:
    name = Path(path).stem or "clip"
    stem, k = f"{name}_influence", 2
    while stem in used:
        stem, k = f"{name}_{k}_influence", k + 1
    used.add(stem)
    return folder / stem


def predict(model: str | Path, inputs: Sequence[str | Path], *, figure_dir: Optional[str | Path] = None,
            options: Optional[PredictOptions] = None, **kwargs) -> PredictResult:
    """Predict every input (tgdfer.inputs); one that cannot be read becomes a PredictFailure and the rest go on.

    Options: `options` and/or keyword arguments naming PredictOptions fields (device, weights,
    influence, faces, on_missing, trust_weights, batch, threads). With a face stage, a clip where
    no face is found is a PredictFailure (on_missing "fail"), or is cropped to the centre square
    and marked (`Prediction.fallback`, JSON "fallback": "center") with "center".
    `figure_dir`: write each clip's frame strip with its influence colour bar (paper Fig. 4) there;
    if it cannot be written the predictions go on without figures (`figure_error` says why).
    """
    opts = options_from(options, kwargs)
    if not inputs:
        raise TgdferError("predict needs at least one INPUT (a video, a frame folder, a folder of videos, a glob "
                          "or a .txt/.csv list of them)")
    p = load_predictor(model, options=opts)
    influence = check_influence(p.head.cfg.influence if opts.influence is None else opts.influence)
    ckpt_fp = dict(p.encoder.fingerprint)
    result = PredictResult(checkpoint=p.checkpoint, encoder=ckpt_fp, predictions=[], influence=influence,
                           classes=p.classes, faces=p.faces.fingerprint() if p.faces.enabled else {"detector": "none"})
    used: set[str] = set()
    for pred in predict_clips(p, expand_inputs(inputs), keep_frames=figure_dir is not None, influence=influence,
                              batch=opts.batch):
        result.predictions.append(pred)
        if figure_dir is not None and isinstance(pred, Prediction):
            try:
                result.figures.append(_strip(pred, _figure_stem(Path(figure_dir), pred.input, used), influence))
            except TgdferError as e:  # an unwritable folder, a full disk: the predictions still count
                result.figure_error, figure_dir = str(e), None
    return result


def _strip(pred: Prediction, stem: Path, mode: str = "relative") -> Path:
    from .figures import frame_strip_figure, save_figure

    k = pred.predicted
    name = pred.classes[k]
    title = f"{Path(pred.input).name}: {name} ({pred.probs[k]:.2f}); {mode} influence for {name}"
    return save_figure(frame_strip_figure(pred.frames, pred.influence, pred.frame_index, title), stem)[0]
