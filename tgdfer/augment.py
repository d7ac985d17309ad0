"""Clip transforms: frames `[T, H, W, 3]` uint8 -> encoder input `[T, 3, S, S]` float32.

Test time (view 0) only resizes to S x S. Train time (views >= 1) applies DFER-CLIP's
augmentation with torchvision.transforms.v2 to the whole clip as one `tv_tensors.Video`, so a
single parameter draw (crop box, flip, brightness factor, angle) covers all T frames.

Reference: github.com/zengqunzhao/DFER-CLIP, dataloader/video_dataloader.py and
dataloader/video_transform.py. Train: DFEW = ColorJitter(brightness=0.5) -> GroupRandomSizedCrop
-> GroupRandomHorizontalFlip; FERV39K = RandomRotation(4) -> GroupRandomSizedCrop -> flip;
MAFW = crop -> flip. GroupRandomSizedCrop is Inception-style: area 0.08..1.0 of the frame, aspect
ratio 3/4..4/3, bilinear resize to S. Flip probability 0.5. Test: GroupResize(S), bilinear.
Pixels are scaled to [0, 1] with no mean/std (`normalize="none"`); CLIP's own preprocessing
normalises with its mean/std (`normalize="clip"`, the default).
Differences from the reference, all inside torchvision: the aspect ratio is drawn log-uniformly
(reference: uniform, then width/height swapped with probability 1/2), and when 10 tries find no
crop box, the fallback is a centre crop (reference: short-side resize and a random crop).

Seeding: v2 transforms draw from torch's global CPU generator (torch.rand / torch.randint /
Tensor.uniform_ in torchvision 0.29). `ClipTransform` draws one clip's parameters under a lock,
inside `torch.random.fork_rng`, from `torch.default_generator` seeded with the clip's seed, then
applies the kernels outside the lock: the output depends only on (frames, seed), the caller's RNG
state is left as it was, and threads or DataLoader workers do not disturb each other. (A foreign
thread that draws from torch's global generator during those microseconds can still shift the
draw; torchvision offers no per-call generator.)
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from .errors import ConfigError

Normalize = Literal["clip", "none"]

# Serialises only the parameter draw (tens of microseconds), never the pixel work.
_DRAW_LOCK = threading.Lock()


@dataclass
class AugmentConfig:
    """Train-time clip augmentation. Defaults: DFER-CLIP's DFEW recipe (see module docstring)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)  # crop area / frame area (DFER-CLIP: 0.08..1)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio range (DFER-CLIP: 3/4..4/3)
    flip_p: float = 0.5  # horizontal flip probability (DFER-CLIP: 0.5)
    brightness: float = 0.5  # factor uniform in [1-b, 1+b], 0 = off (DFER-CLIP: 0.5, DFEW only)
    rotation_degrees: float = 0.0  # angle uniform in [-d, d], 0 = off (DFER-CLIP: 4, FERV39K only)

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError("crop_scale", f"need 0 < min <= max <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ConfigError("crop_ratio", f"need 0 < min <= max, got {self.crop_ratio}")
        if not 0 <= self.flip_p <= 1:
            raise ConfigError("flip_p", f"must be in [0, 1], got {self.flip_p}")
        if self.brightness < 0:
            raise ConfigError("brightness", f"must be >= 0 (0 = off), got {self.brightness}")
        if not 0 <= self.rotation_degrees <= 180:
            raise ConfigError("rotation_degrees", f"must be in [0, 180], got {self.rotation_degrees}")

    @classmethod
    def reference(cls, dataset: str) -> AugmentConfig:
        """DFER-CLIP's per-dataset recipe: "dfew", "ferv39k" or "mafw"."""
        recipes = {
            "dfew": cls(brightness=0.5, rotation_degrees=0.0),
            "ferv39k": cls(brightness=0.0, rotation_degrees=4.0),
            "mafw": cls(brightness=0.0, rotation_degrees=0.0),
        }
        key = dataset.lower()
        if key not in recipes:
            raise ConfigError(
                "dataset", f"{dataset!r} has no DFER-CLIP recipe; use one of {', '.join(recipes)}"
            )
        return recipes[key]


class ClipTransform:
    """Frames `[T, H, W, 3]` uint8 -> `[T, 3, size, size]` float32, the same for every frame.

    train=False: resize to size x size (bilinear, antialiased), nothing random.
    train=True: rotation, brightness, random resized crop, flip per `config`, one draw per clip
    from `seed` (e.g. `sampling.view_seed(seed, clip_id, view)`).
    normalize: "clip" = (x - mean) / std with `mean`/`std` (default: open_clip's OpenAI CLIP
    constants; pass the loaded model's own to match it), "none" = pixels in [0, 1].
    """

    def __init__(
        self,
        size: int = 224,
        train: bool = False,
        config: AugmentConfig | None = None,
        normalize: Normalize = "clip",
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ):
        if size < 1:
            raise ConfigError("size", f"must be >= 1, got {size}")
        if normalize not in ("clip", "none"):
            raise ConfigError("normalize", f"{normalize!r} is not one of 'clip', 'none'")
        self.size, self.train, self.normalize = int(size), bool(train), normalize
        self.config = config or AugmentConfig()
        self.mean, self.std = _mean_std(normalize, mean, std)
        resize = v2.Resize((self.size, self.size), antialias=True)  # bilinear, like PIL's
        self._steps = self._build_steps() if self.train else [resize]

    def _build_steps(self) -> list[v2.Transform]:
        """The v2 transforms in DFER-CLIP's order (photometric/rotation, crop, flip)."""
        cfg = self.config
        steps: list[v2.Transform] = []
        if cfg.rotation_degrees > 0:  # nearest, no expand, black fill: as PIL's Image.rotate
            steps.append(v2.RandomRotation(cfg.rotation_degrees))
        if cfg.brightness > 0:
            steps.append(v2.ColorJitter(brightness=cfg.brightness))
        steps.append(
            v2.RandomResizedCrop(self.size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True)
        )
        if cfg.flip_p > 0:
            steps.append(v2.RandomHorizontalFlip(cfg.flip_p))
        return steps

    def __call__(self, frames: np.ndarray | torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Transform one clip; `seed` is required when train=True and ignored otherwise.

        Equal, bit for bit, to `self.to_float(self.pixels(frames, seed))`.
        """
        return self.to_float(self.pixels(frames, seed))

    def pixels(self, frames: np.ndarray | torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Every step but the float conversion: `[T, H, W, 3]` uint8 -> `[T, 3, size, size]` uint8, contiguous.

        What extraction's DataLoader workers hand over (a quarter of the float32 bytes); the main
        process turns a whole batch into encoder input with `to_float` on the encoder's device.
        """
        video = _to_video(frames)  # [T, 3, H, W] uint8
        if self.train:
            if seed is None:
                raise ValueError("a train-time ClipTransform needs a seed (see sampling.view_seed)")
            for step, params in self._draw(video, int(seed)):
                video = step.transform(video, params)
        else:
            video = self._steps[0](video)
        return video.as_subclass(torch.Tensor).contiguous()

    def per_frame(self, frames: np.ndarray | torch.Tensor, seeds: np.ndarray) -> torch.Tensor:
        """Every frame its own train-time draw: `[B, H, W, 3]` uint8 -> `[B, 3, size, size]` float32.

        Equal, bit for bit, to `torch.cat([self(frames[i:i + 1], seed=s) for i, s in enumerate(seeds)])`
        (the proxy CLIP's image batches), at a fraction of its cost: the parameters are drawn under
        one lock, brightness, flip and normalisation run on the whole batch, and only the steps that
        change a frame's geometry (crop, rotation) run frame by frame.
        """
        if not self.train:
            raise ValueError("per_frame draws train-time augmentation; this ClipTransform has train=False")
        video = _to_video(frames)  # [B, 3, H, W] uint8
        if len(seeds) != len(video):
            raise ValueError(f"{len(video)} frames but {len(seeds)} seeds")
        plans = self._draw_many(video[:1], [int(s) for s in seeds])  # [B] of {step index: params}
        x = video.as_subclass(torch.Tensor)
        for k, step in enumerate(self._steps):
            params = [plan.get(k) for plan in plans]
            if isinstance(step, v2.RandomHorizontalFlip):
                hit = torch.tensor([p is not None for p in params], device=x.device)
                x = torch.where(hit.view(-1, 1, 1, 1), x.flip(-1), x)
            elif isinstance(step, v2.ColorJitter) and _brightness_only(params):
                factor = torch.tensor([p["brightness_factor"] for p in params], dtype=torch.float32, device=x.device)
                nhwc = x.permute(0, 2, 3, 1)  # the frames' own memory order: a fast elementwise pass
                x = nhwc.mul(factor.view(-1, 1, 1, 1)).clamp_(0, 255).to(torch.uint8).permute(0, 3, 1, 2)  # as F.adjust_brightness
            else:  # a step that moves pixels differently per frame
                x = torch.cat([step.transform(tv_tensors.Video(x[i:i + 1]), p).as_subclass(torch.Tensor)
                               for i, p in enumerate(params)])
        return self.to_float(x)

    def to_float(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 `[..., 3, S, S]` (any leading dims, any device) -> normalised float32 on the same device.

        Elementwise (a subtraction and a multiplication, each rounded once), so a batch converted at
        once, on any device, equals its clips converted one by one, bit for bit.
        """
        # Contiguous uint8 first: float maths on the channels-last view is several times slower.
        out = video.as_subclass(torch.Tensor).contiguous().to(torch.float32)  # [..., 3, S, S]
        mean = torch.tensor(self.mean, device=out.device).view(3, 1, 1) * 255.0
        scale = 1.0 / (torch.tensor(self.std, device=out.device).view(3, 1, 1) * 255.0)
        return out.sub_(mean).mul_(scale)  # (x / 255 - mean) / std

    def _draw(self, video: tv_tensors.Video, seed: int) -> list[tuple[v2.Transform, dict[str, Any]]]:
        """One clip's parameters, drawn exactly as `v2.Compose(self._steps)(video)` would draw them."""
        plan = self._draw_many(video, [seed])[0]
        return [(self._steps[k], params) for k, params in plan.items()]

    def _draw_many(self, video: tv_tensors.Video, seeds: list[int]) -> list[dict[int, dict[str, Any]]]:
        """For each seed, {step index: parameters} of the steps it applies, as v2.Compose would draw them.

        Every step before the crop keeps the frame size, so all parameters can be drawn from
        the input. RandomHorizontalFlip's coin is v2's own (`torch.rand(1) >= p` skips it).
        """
        plans = []
        # A default device other than the CPU (`with torch.device("cuda")`) would move the draws to
        # its generator; the context costs a Python call per torch call, so it is entered only then.
        on_cpu = torch.get_default_device().type == "cpu"
        with _DRAW_LOCK, torch.random.fork_rng(devices=[]), contextlib.nullcontext() if on_cpu else torch.device("cpu"):
            for seed in seeds:
                # default_generator only: torch.manual_seed would also reseed every CUDA device.
                torch.default_generator.manual_seed(seed)
                plan = {}
                for k, step in enumerate(self._steps):
                    if isinstance(step, v2.RandomHorizontalFlip) and torch.rand(1) >= step.p:
                        continue
                    plan[k] = step.make_params([video])
                plans.append(plan)
        return plans

    def __repr__(self) -> str:
        return (f"ClipTransform(size={self.size}, train={self.train}, normalize={self.normalize!r}, "
                f"steps={[type(s).__name__ for s in self._steps]})")


def _brightness_only(params: list[dict[str, Any] | None]) -> bool:
    """ColorJitter parameters that change brightness alone (contrast, saturation and hue off)."""
    return all(p is not None and p["brightness_factor"] is not None and p["contrast_factor"] is None
               and p["saturation_factor"] is None and p["hue_factor"] is None for p in params)


def _mean_std(normalize: str, mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if normalize == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if mean is None or std is None:
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        mean = OPENAI_DATASET_MEAN if mean is None else mean
        std = OPENAI_DATASET_STD if std is None else std
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError("normalize", f"need 3 means and 3 positive stds, got {mean}, {std}")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _to_video(frames: np.ndarray | torch.Tensor) -> tv_tensors.Video:
    """`[T, H, W, 3]` uint8 (numpy or torch) -> tv_tensors.Video `[T, 3, H, W]` (a view, no copy)."""
    if isinstance(frames, np.ndarray):
        if not frames.flags.writeable:
            frames = frames.copy()
        frames = torch.from_numpy(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8 or len(frames) < 1:
        raise ValueError(
            f"frames must be [T, H, W, 3] uint8 with T >= 1, got {tuple(frames.shape)} {frames.dtype}"
        )
    # The permuted view is channels-last in memory: torchvision's fast uint8 resize path.
    return tv_tensors.Video(frames.permute(0, 3, 1, 2))
