"""A small "proxy CLIP" trained here on SynthDFER frames, standing in for CLIP's pretraining.

STATUS: experimental, not used by any command, and NOT WORKING yet. Measured (2 CPU cores): with
the defaults (300 steps, about 6 min) the held-out zero-shot accuracy is 0.15-0.17 and a linear
probe on clip features 0.19, below the majority rate 0.23. Diagnostics: trained jointly, the text
embeddings of the 7 classes collapse to one direction within 5 steps (cosine 0.9997); with the
text tower frozen, or a learnable prototype per class instead, the image features still collapse
(per-dimension std 0.02 -> 0.005) and the loss stays near ln 7 for 100-150 steps, for ViTs with
8, 16, 32 and 64 px patches and a ModifiedResNet, with and without augmentation. Yet a plain
logistic regression on the same 64 px CLIP-normalised frames reaches 0.90 on held-out frames, so
the signal is there and the optimisation of these small CLIP towers from scratch is what fails.

Pretrained CLIP weights cannot be downloaded everywhere tgdfer runs (tests, `make demo` on a
machine without internet), and a randomly initialised encoder gives features with no class
information, so the TG-DFER head would have nothing to learn from. `train_proxy` trains a small
open_clip model (both towers) the way CLIP is used for zero-shot classification: logits =
logit_scale * cos(image feature, text feature of the 7 class prompts), cross-entropy against the
frame's class, for every prompt set in `prompts.PROMPT_SETS`. The saved `model.state_dict()` is
then an ordinary local weights file:

    path = train_proxy("cache/proxy/proxy.pt", ProxyConfig())
    enc = load_encoder(EncoderConfig(model="tgdfer-proxy-vit", pretrained=str(path)))

No evaluation data is used. The proxy generates its OWN SynthDFER set (`ProxyConfig.seed`,
1234 by default; the demo evaluates on seed 0, so the people, scenes and episodes differ) and
learns from single frames with frame-level ground truth, as CLIP learns from image-text pairs:
a frame whose labelled expression (or distractor expression) has strength >= `min_intensity`
is paired with that class's prompts, a frame with no expression at all with Neutral's, and
weaker frames are skipped. No clip-level label of any evaluated set, and no MIL bag, is seen.
The proxy's set draws its classes uniformly (pretraining data is not DFEW-distributed), and
batches are class-balanced.

QuickGELU: the model is built from its config, which has no `quick_gelu`, so it trains with
nn.GELU. `load_encoder` finds nothing in the file that says QuickGELU and so also uses nn.GELU
(it logs why); `EncoderConfig(quick_gelu=False)` states it explicitly.

Determinism: on the CPU, the same config gives the same weights (initialisation, batches and
augmentation all come from `seed`), and the saved bytes do not depend on the file name.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .augment import AugmentConfig, ClipTransform
from .errors import ConfigError, TgdferError
from .frames import open_frames
from .labels import CLASSES, NUM_CLASSES
from .prompts import PROMPT_SETS

logger = logging.getLogger(__name__)

_NEUTRAL = CLASSES.index("Neutral")
_SAMPLE_STREAM, _AUGMENT_STREAM = 0, 1  # independent numpy streams, seeded by (seed, stream, step)


@dataclass
class ProxyConfig:
    """How to train the proxy CLIP (defaults: about a minute on 2 CPU cores)."""

    model: str = "tgdfer-proxy-vit"  # open_clip model to train (a tgdfer config in model_configs/ or a built-in)
    clips: int = 300  # clips in the proxy's own SynthDFER set (one person each: many short clips beat few long)
    min_frames: int = 8  # shortest clip of that set
    max_frames: int = 12  # longest clip of that set
    seed: int = 1234  # the proxy's own seed (its SynthDFER set, init, batches); keep it != the evaluated set's
    size: int = 64  # frame side of the proxy's SynthDFER set (even, >= 32)
    steps: int = 300  # optimiser steps
    batch: int = 64  # frames per step, class-balanced
    lr: float = 1e-3  # AdamW peak learning rate (linear warm-up, then cosine to 0)
    warmup: int = 20  # warm-up steps
    weight_decay: float = 0.05  # AdamW weight decay of weight matrices (not of gains, biases, embeddings)
    min_intensity: float = 0.3  # expression strength at which a frame counts as showing its class
    prompt_sets: tuple[str, ...] = ("class_names", "class_sentences", "descriptors")  # text the images are matched to
    crop_scale: tuple[float, float] = (0.5, 1.0)  # random resized crop: area range (the face must stay in view)
    flip_p: float = 0.5  # horizontal flip probability
    brightness: float = 0.3  # brightness factor uniform in [1-b, 1+b]
    workers: int = 0  # processes that render the SynthDFER set: 0 = all cores (the output is the same)

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise ConfigError("model", "must name an open_clip model, e.g. 'tgdfer-proxy-vit'")
        _check_int("clips", self.clips, NUM_CLASSES * 2, 99_999)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("min_frames", self.min_frames, 5, 10_000)
        _check_int("max_frames", self.max_frames, self.min_frames, 10_000)
        _check_int("size", self.size, 32, 1024)
        if self.size % 2:
            raise ConfigError("size", f"{self.size} is odd; SynthDFER frames need an even side")
        _check_int("steps", self.steps, 1, 10_000_000)
        _check_int("batch", self.batch, 1, 65_536)
        _check_int("warmup", self.warmup, 0, self.steps)
        _check_int("workers", self.workers, 0, 1024)
        for name, lo, hi in (("lr", 0.0, 1.0), ("weight_decay", 0.0, 10.0), ("min_intensity", 0.0, 1.0),
                             ("flip_p", 0.0, 1.0), ("brightness", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(name, f"{value!r} is out of range; expected {lo} <= {name} <= {hi}")
        if self.lr == 0 or self.min_intensity == 0:
            raise ConfigError("lr" if self.lr == 0 else "min_intensity", "must be > 0")
        if not self.prompt_sets or any(s not in PROMPT_SETS for s in self.prompt_sets):
            raise ConfigError("prompt_sets", f"{self.prompt_sets!r}: choose from {', '.join(PROMPT_SETS)}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError("crop_scale", f"{tuple(self.crop_scale)!r} must be (min, max) with 0 < min <= max <= 1")


def _check_int(name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(name, f"{value!r} is out of range; expected an integer {lo} <= {name} <= {hi}")


# ---------------------------------------------------------------------------------------------
# Data: the proxy's own SynthDFER set as labelled frames
# ---------------------------------------------------------------------------------------------

def _synth_config(cfg: ProxyConfig):
    from .synth import SynthConfig

    return SynthConfig(clips=cfg.clips, seed=cfg.seed, format="frames", size=cfg.size, folds=2,
                       min_frames=cfg.min_frames, max_frames=cfg.max_frames,
                       class_shares=(1.0,) * NUM_CLASSES, workers=cfg.workers)


def frame_classes(plan, min_intensity: float) -> np.ndarray:
    """Class of every frame of a planned clip (`synth.ClipPlan`), -1 for frames too weak to call.  # [T] int64

    The labelled expression at >= min_intensity -> the clip's class (Neutral clips: their
    expression-free span is Neutral anyway); the distractor at >= min_intensity -> its class;
    no expression at all -> Neutral.
    """
    out = np.full(plan.n_frames, -1, np.int64)
    quiet = (plan.distractor_intensity == 0) & ((plan.intensity == 0) | (plan.label == _NEUTRAL))
    out[quiet] = _NEUTRAL
    if plan.distractor >= 0:
        out[plan.distractor_intensity >= min_intensity] = plan.distractor
    out[plan.intensity >= min_intensity] = plan.label
    return out


def load_frames(data_dir: Path, cfg: ProxyConfig) -> tuple[torch.Tensor, np.ndarray]:
    """Every callable frame of the proxy's set: (frames [N, H, W, 3] uint8, classes [N] int64)."""
    from .synth import plan

    frames, classes = [], []
    for p in plan(_synth_config(cfg)):
        cls = frame_classes(p, cfg.min_intensity)  # [T]
        keep = np.flatnonzero(cls >= 0)
        if len(keep):
            frames.append(open_frames(data_dir / "frames" / p.clip_id).read(keep))
            classes.append(cls[keep])
    return torch.from_numpy(np.concatenate(frames)), np.concatenate(classes)


def _balanced_batch(rng: np.random.Generator, by_class: list[np.ndarray], batch: int) -> np.ndarray:
    """Frame indices, classes drawn uniformly (among classes that have frames), then a frame.  # [B]"""
    present = [c for c in by_class if len(c)]
    pick = rng.integers(len(present), size=batch)
    return np.array([present[k][rng.integers(len(present[k]))] for k in pick], np.int64)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def _build_model(cfg: ProxyConfig) -> torch.nn.Module:
    """The open_clip model with its config's random initialisation, drawn from `cfg.seed`."""
    import open_clip

    from .encoders import register_model_configs

    register_model_configs()
    if open_clip.get_model_config(cfg.model) is None:
        raise ConfigError("model", f"unknown open_clip model {cfg.model!r}; e.g. tgdfer-proxy-vit")
    torch.manual_seed(cfg.seed)
    return open_clip.create_model(cfg.model, pretrained=None, precision="fp32", device="cpu")


def _text_tower(model: torch.nn.Module):
    """The model's text path cut after the last EOT (exact under the causal mask, 3x fewer tokens), trainable."""
    from .text import FrozenTextEncoder

    text = FrozenTextEncoder(model)  # shares the model's modules, and freezes them: unfreeze for training
    model.requires_grad_(True)
    # The 49408-word table is most of the parameters: its random rows stay fixed, the layers above learn
    model.token_embedding.requires_grad_(False)
    return text


def _optimizer(model: torch.nn.Module, cfg: ProxyConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on weight matrices only (not gains, biases, embeddings, logit scale)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if plain else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr_at(step: int, cfg: ProxyConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * t))


def _augment(transform: ClipTransform, frames: torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
    """Each frame its own training-view transform: [B, H, W, 3] uint8 -> [B, 3, S, S] float32."""
    return torch.cat([transform(frames[i : i + 1], seed=int(s)) for i, s in enumerate(seeds)])


def _tokens(cfg: ProxyConfig) -> torch.Tensor:
    import open_clip

    texts = [t for name in cfg.prompt_sets for t in PROMPT_SETS[name]]
    return open_clip.get_tokenizer(cfg.model)(texts)  # [S * C, L]


def _loss(model: torch.nn.Module, text, pixels: torch.Tensor, tokens: torch.Tensor,
          labels: torch.Tensor) -> torch.Tensor:
    """Zero-shot classification loss, averaged over prompt sets: pixels [B, 3, S, S], tokens [S * C, L]."""
    img = F.normalize(model.encode_image(pixels), dim=-1)  # [B, D]
    txt = F.normalize(text.encode_tokens(tokens), dim=-1).view(-1, NUM_CLASSES, img.shape[1])  # [S, C, D]
    logits = model.logit_scale.exp() * torch.einsum("bd,scd->sbc", img, txt)  # [S, B, C]
    return F.cross_entropy(logits.flatten(0, 1), labels.repeat(txt.shape[0]))


def _train(model: torch.nn.Module, frames: torch.Tensor, classes: np.ndarray, cfg: ProxyConfig,
           progress: Callable[[int], None] | None) -> list[float]:
    """The optimisation loop; returns the loss of every step."""
    pp = model.visual.preprocess_cfg
    size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    aug = AugmentConfig(crop_scale=tuple(cfg.crop_scale), flip_p=cfg.flip_p, brightness=cfg.brightness)
    transform = ClipTransform(size, train=True, config=aug, mean=tuple(pp["mean"]), std=tuple(pp["std"]))
    by_class = [np.flatnonzero(classes == c) for c in range(NUM_CLASSES)]
    tokens = _tokens(cfg)
    text = _text_tower(model)
    opt = _optimizer(model, cfg)
    model.to(memory_format=torch.channels_last).train()  # convolutions: several times faster on the CPU
    losses = []
    for step in range(cfg.steps):
        idx = _balanced_batch(np.random.default_rng([cfg.seed, _SAMPLE_STREAM, step]), by_class, cfg.batch)
        seeds = np.random.default_rng([cfg.seed, _AUGMENT_STREAM, step]).integers(2**62, size=cfg.batch)
        pixels = _augment(transform, frames[idx], seeds).contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        loss = _loss(model, text, pixels, tokens, torch.from_numpy(classes[idx]))
        if not torch.isfinite(loss):
            raise TgdferError(f"proxy training diverged at step {step} (loss {loss.item()}); lower lr (now {cfg.lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if progress:
            progress(1)
    model.to(memory_format=torch.contiguous_format).eval()
    return losses


def _save_atomic(state: dict, out_file: Path) -> None:
    """torch.save into memory (so the bytes do not depend on the file name), then write and rename."""
    buf = io.BytesIO()
    torch.save(state, buf)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_file.name}.", suffix=".tmp", dir=out_file.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train_proxy(out_file: str | os.PathLike, cfg: ProxyConfig | None = None, *,
                workdir: str | os.PathLike | None = None, progress: Callable[[int], None] | None = None) -> Path:
    """Train a proxy CLIP on its own SynthDFER set and save its state dict to `out_file` (atomically).

    The SynthDFER set is written to a temporary folder under `workdir` (None: the system's temp
    dir) and removed afterwards. `progress` is called with 1 after every optimiser step
    (`cfg.steps` calls). Returns the absolute path of the weights file.
    """
    from .synth import generate

    cfg = cfg or ProxyConfig()
    out_file = Path(out_file).absolute()
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tgdfer-proxy-", dir=workdir))
    started = time.perf_counter()
    try:
        generate(tmp / "synth", _synth_config(cfg))
        frames, classes = load_frames(tmp / "synth", cfg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("proxy data: %d frames (per class %s) in %.1f s", len(classes),
                np.bincount(classes, minlength=NUM_CLASSES).tolist(), time.perf_counter() - started)
    with torch.random.fork_rng(devices=[]):
        model = _build_model(cfg)
        losses = _train(model, frames, classes, cfg, progress)
    logger.info("proxy trained: %d steps, loss %.3f -> %.3f, %.1f s in all", cfg.steps,
                float(np.mean(losses[:10])), float(np.mean(losses[-10:])), time.perf_counter() - started)
    _save_atomic(model.state_dict(), out_file)
    return out_file
