"""A small "proxy CLIP" trained here on SynthDFER frames, standing in for CLIP's pretraining.

Measured (2 CPU cores, idle): training takes about 155 s (defaults; 160 s on one thread). On a held-out SynthDFER set
(seed 0, other people, 112 px, 16 frames a clip) the mean frame feature of a clip classifies
zero-shot at 0.34-0.35 with each prompt set (chance 0.14, majority 0.23), and the demo's TG-DFER
head on the proxy's features reaches test WAR 0.44, UAR 0.34 on fold 1 (400 clips). What made it
work, after recipes that did not (measured in session 2, see the issue notes): many people
(2,000 clips of 5-6 frames; 300 people over-fit them: 0.18 on new people), large class-balanced
batches (at 64 frames a batch the features collapsed), a cosine classifier with one learnable
prototype per class for the image tower (trained jointly with the text tower, the 7 class
embeddings collapsed to one direction within 5 steps), then the text tower trained to put every
prompt on its class's prototype.

Pretrained CLIP weights cannot be downloaded everywhere tgdfer runs (tests, `make demo` on a
machine without internet), and a randomly initialised encoder gives features with no class
information, so the TG-DFER head would have nothing to learn from. `train_proxy` trains a small
open_clip model in two stages: the image tower as a cosine classifier of single frames (one
learnable prototype per class, logits = 20 * cos), then the text tower so that every prompt of
every set in `prompts.PROMPT_SETS` lands on its class's prototype, which makes zero-shot
classification with the prompts reproduce the image stage's classifier. The saved
`model.state_dict()` is then an ordinary local weights file:

    path = train_proxy("cache/proxy/proxy.safetensors", ProxyConfig())
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

Determinism: initialisation, batches and augmentation all come from `seed`, and the saved bytes do
not depend on the file name. The weights are not bit-identical run to run, though: the default
config gave the same sha256 in two processes (session 13: `make`'s proxy and a fresh clone's), but
a 2-step config (clips=14, size=32, steps=2, text_steps=2) trained four times in one process gave
one of two files at random, with its data, initialisation and image stage identical every time and
the difference arising after them (the text stage; not found further, and not from the
augmentation thread: a synchronous one varied too). A file's sha256 is what a store's fingerprint
records, so `make demo` names `make clean-demo` after the proxy is trained again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .augment import AugmentConfig, ClipTransform
from .errors import ConfigError, TgdferError
from .progress import ProgressCallback, Stage, as_callback, every_tenth
from .frames import open_frames
from .labels import CLASSES, NUM_CLASSES
from .prompts import PROMPT_SETS

logger = logging.getLogger(__name__)

_NEUTRAL = CLASSES.index("Neutral")
_SAMPLE_STREAM, _AUGMENT_STREAM = 0, 1  # independent numpy streams, seeded by (seed, stream, step)


@dataclass
class ProxyConfig:
    """How to train the proxy CLIP (defaults: about 2.5 minutes on 2 CPU cores)."""

    model: str = "tgdfer-proxy-vit"  # open_clip model to train (a tgdfer config in model_configs/ or a built-in)
    clips: int = 2000  # clips in the proxy's own SynthDFER set: one person each, and many people is what generalises
    min_frames: int = 5  # shortest clip of that set
    max_frames: int = 6  # longest clip of that set
    seed: int = 1234  # the proxy's own seed (its SynthDFER set, init, batches); keep it != the evaluated set's
    size: int = 112  # frame side of the proxy's SynthDFER set (even, >= 32; the demo renders 112)
    steps: int = 600  # image-stage optimiser steps
    batch: int = 256  # frames per step, class-balanced (small batches collapse the features)
    lr: float = 2e-3  # AdamW peak learning rate (linear warm-up, then cosine to 0)
    text_steps: int = 300  # text-stage steps (prompts onto the image stage's class prototypes)
    text_lr: float = 1e-3  # text-stage AdamW learning rate
    warmup: int = 20  # warm-up steps
    weight_decay: float = 0.05  # AdamW weight decay of weight matrices (not of gains, biases, embeddings)
    min_intensity: float = 0.3  # expression strength at which a frame counts as showing its class
    prompt_sets: tuple[str, ...] = ("class_names", "class_sentences", "descriptors")  # text the images are matched to
    crop_scale: tuple[float, float] = (0.8, 1.0)  # random resized crop: area range (the face must stay in view)
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
        _check_int("text_steps", self.text_steps, 1, 10_000_000)
        _check_int("batch", self.batch, 1, 65_536)
        _check_int("warmup", self.warmup, 0, self.steps)
        _check_int("workers", self.workers, 0, 1024)
        for name, lo, hi in (("lr", 0.0, 1.0), ("text_lr", 0.0, 1.0), ("weight_decay", 0.0, 10.0), ("min_intensity", 0.0, 1.0),
                             ("flip_p", 0.0, 1.0), ("brightness", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(name, f"{value!r} is out of range; expected {lo} <= {name} <= {hi}")
        for name in ("lr", "text_lr", "min_intensity"):
            if getattr(self, name) == 0:
                raise ConfigError(name, "must be > 0")
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

    from .encoders import _quiet_open_clip, register_model_configs

    register_model_configs()
    if open_clip.get_model_config(cfg.model) is None:
        raise ConfigError("model", f"unknown open_clip model {cfg.model!r}; e.g. tgdfer-proxy-vit")
    torch.manual_seed(cfg.seed)
    with _quiet_open_clip():  # a random start is the point here: no "initialized randomly" warning
        return open_clip.create_model(cfg.model, pretrained=None, precision="fp32", device="cpu")


def _optimizer(model: torch.nn.Module, cfg: ProxyConfig, extra: list | None = None) -> torch.optim.AdamW:
    """AdamW; weight decay on weight matrices only (not gains, biases, embeddings, logit scale, `extra`)."""
    decay, no_decay = [], list(extra or [])
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


def _tokens(cfg: ProxyConfig) -> torch.Tensor:
    import open_clip

    texts = [t for name in cfg.prompt_sets for t in PROMPT_SETS[name]]
    return open_clip.get_tokenizer(cfg.model)(texts)  # [S * C, L]


PROTO_SCALE = 20.0  # cosine-classifier temperature of both stages (a fixed CLIP-like logit scale)


def _image_stage(model: torch.nn.Module, frames: torch.Tensor, classes: np.ndarray, cfg: ProxyConfig,
                 progress: ProgressCallback | None) -> tuple[torch.Tensor, list[float]]:
    """Train the image tower against one learnable prototype per class; returns (prototypes [C, D], losses).

    Cosine classifier: logits = PROTO_SCALE * cos(image feature, prototype). Class-balanced batches,
    each frame its own training-view augmentation, AdamW with warm-up and cosine decay.
    """
    pp = model.visual.preprocess_cfg
    size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
    aug = AugmentConfig(crop_scale=tuple(cfg.crop_scale), flip_p=cfg.flip_p, brightness=cfg.brightness)
    transform = ClipTransform(size, train=True, config=aug, mean=tuple(pp["mean"]), std=tuple(pp["std"]))
    by_class = [np.flatnonzero(classes == c) for c in range(NUM_CLASSES)]
    model.requires_grad_(False)
    model.visual.requires_grad_(True)
    gen = torch.Generator().manual_seed(cfg.seed)
    protos = torch.nn.Parameter(torch.randn(NUM_CLASSES, model.visual.output_dim, generator=gen) * 0.02)  # [C, D]
    opt = _optimizer(model, cfg, extra=[protos])
    model.train()
    losses = []
    stage = Stage(progress, "proxy image", cfg.steps, "step")

    def batch(step: int) -> tuple[np.ndarray, torch.Tensor]:
        """Step `step`'s frame indices [B] and augmented pixels [B, 3, S, S]: a function of the step alone."""
        idx = _balanced_batch(np.random.default_rng([cfg.seed, _SAMPLE_STREAM, step]), by_class, cfg.batch)
        seeds = np.random.default_rng([cfg.seed, _AUGMENT_STREAM, step]).integers(2**62, size=cfg.batch)
        return idx, transform.per_frame(frames[idx], seeds)  # each frame its own draw

    # The next batch is augmented in a thread while this one trains (the model draws no random
    # numbers, so the augmentation's seeded draws cannot interleave with its own).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tgdfer-proxy-augment") as pool:
        pending = pool.submit(batch, 0)
        for step in range(cfg.steps):
            idx, pixels = pending.result()
            if step + 1 < cfg.steps:
                pending = pool.submit(batch, step + 1)
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg)
            img = F.normalize(model.encode_image(pixels), dim=-1)  # [B, D]
            loss = F.cross_entropy(PROTO_SCALE * img @ F.normalize(protos, dim=-1).T, torch.from_numpy(classes[idx]))
            if not torch.isfinite(loss):
                raise TgdferError(f"proxy training diverged at step {step} (loss {loss.item()}); lower lr (now {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            stage.update(step + 1, {"loss": round(losses[-1], 4)}, log=every_tenth(step + 1, cfg.steps))
    model.eval()
    return F.normalize(protos.detach(), dim=-1), losses


def _text_stage(model: torch.nn.Module, protos: torch.Tensor, cfg: ProxyConfig,
                progress: ProgressCallback | None = None) -> list[float]:
    """Train the text tower (above its frozen word table) so every prompt of class k lands on prototype k.

    For each prompt set, cross-entropy of PROTO_SCALE * cos(prompt embedding, prototypes) plus
    (1 - cos) to its own prototype: afterwards zero-shot classification with any of the prompt
    sets reproduces the image stage's classifier.
    """
    from .text import FrozenTextEncoder

    text = FrozenTextEncoder(model)  # the model's text path cut after the last EOT; shares (and freezes) its modules
    model.requires_grad_(False)
    # The 49408-word table stays as initialised; everything above it learns
    for part in (text.transformer, text.ln_final, text.positional_embedding, text.text_projection):
        if part is not None:
            part.requires_grad_(True)
    tokens = _tokens(cfg)  # [S * C, L]
    target = torch.arange(NUM_CLASSES).repeat(len(cfg.prompt_sets))  # [S * C]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.text_lr, weight_decay=0.0)
    losses = []
    stage = Stage(progress, "proxy text", cfg.text_steps, "step")
    for step in range(cfg.text_steps):
        txt = F.normalize(text.encode_tokens(tokens), dim=-1)  # [S * C, D]
        cos = txt @ protos.T  # [S * C, C]
        loss = F.cross_entropy(PROTO_SCALE * cos, target) + (1 - cos[torch.arange(len(target)), target]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        stage.update(step + 1, {"loss": round(losses[-1], 4)}, log=every_tenth(step + 1, cfg.text_steps))
    model.requires_grad_(False)
    return losses


def _train(model: torch.nn.Module, frames: torch.Tensor, classes: np.ndarray, cfg: ProxyConfig,
           progress: ProgressCallback | None) -> list[float]:
    """Image stage, then text stage; returns the image stage's losses."""
    protos, losses = _image_stage(model, frames, classes, cfg, progress)
    text_losses = _text_stage(model, protos, cfg, progress)
    logger.info("proxy text stage: loss %.3f -> %.3f", text_losses[0], text_losses[-1])
    return losses


PROXY_FORMAT = "tgdfer-proxy/1"  # the weights file's metadata "format"


# The modules whose code decides the proxy's weights (its data, drawing, augmentation, prompts,
# training): a change to any of them makes a cached proxy stale (`trained_with`).
_CODE = ("proxy.py", "synth.py", "faces.py", "augment.py", "prompts.py", "labels.py", "frames.py")


def _config_record(cfg: ProxyConfig) -> str:
    """The ProxyConfig as the JSON the weights file records (tuples as lists, keys sorted)."""
    return json.dumps(asdict(cfg), sort_keys=True)


def code_digest(cfg: ProxyConfig) -> str:
    """sha256 over the code that trains the proxy: the modules in _CODE, the model config, torch and open_clip versions."""
    import hashlib

    import open_clip

    here = Path(__file__).parent
    h = hashlib.sha256(f"torch {torch.__version__} open_clip {open_clip.__version__}".encode())
    for name in _CODE:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    model_config = here / "model_configs" / f"{cfg.model}.json"
    if model_config.is_file():
        h.update(model_config.read_bytes())
    return h.hexdigest()


def _metadata(path: str | os.PathLike) -> dict:
    """A proxy weights file's header metadata ({} for a file that is not one of ours, or unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # not safetensors, unreadable: it records nothing we can use
        return {}
    return meta if meta.get("format") == PROXY_FORMAT else {}


def trained_with(path: str | os.PathLike, cfg: ProxyConfig) -> bool:
    """True when `path` is a proxy weights file trained with exactly `cfg` by this code (what `make test` reuses)."""
    meta = _metadata(path)
    try:
        config = json.loads(meta.get("config", ""))
    except ValueError:
        return False
    return config == json.loads(_config_record(cfg)) and meta.get("code") == code_digest(cfg)


def _save_atomic(state: dict, out_file: Path, cfg: ProxyConfig) -> None:
    """The state dict as safetensors bytes (data only: loading it runs no code), then write and rename.

    The header's metadata records the ProxyConfig (JSON) and the code's digest, so that a cached
    file can be matched to the settings and code it was trained with (`trained_with`).
    """
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in state.items()},
                metadata={"format": PROXY_FORMAT, "config": _config_record(cfg), "code": code_digest(cfg)})
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_file.name}.", suffix=".tmp", dir=out_file.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train_proxy(out_file: str | os.PathLike, cfg: ProxyConfig | None = None, *,
                workdir: str | os.PathLike | None = None, progress: Any = None) -> Path:
    """Train a proxy CLIP on its own SynthDFER set and save its state dict to `out_file` (atomically).

    The SynthDFER set is written to a temporary folder under `workdir` (None: the system's temp
    dir) and removed afterwards. `progress` (tgdfer.progress: a callable, a tqdm bar, a rich
    Progress) follows all three stages: "proxy data" (clips drawn), "proxy image" (cfg.steps
    steps), "proxy text" (cfg.text_steps steps). Returns the absolute path of the weights file.
    """
    from .synth import generate

    cfg = cfg or ProxyConfig()
    out_file = Path(out_file).absolute()
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tgdfer-proxy-", dir=workdir))
    started = time.perf_counter()
    progress = as_callback(progress)
    data = Stage(progress, "proxy data", cfg.clips, "clips")
    drawn = [0]

    def on_clips(n: int) -> None:
        drawn[0] += n
        data.update(drawn[0], log=every_tenth(drawn[0], cfg.clips))

    try:
        generate(tmp / "synth", _synth_config(cfg), progress=on_clips)
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
    _save_atomic(model.state_dict(), out_file, cfg)
    return out_file
