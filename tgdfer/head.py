"""The TG-DFER head (paper Sec. 3.2-3.3, Eq. 2-12) on frozen CLIP frame features, with a replica dimension.

`TGDFERHead.forward_features` is the multi-grained temporal network (`tgdfer.temporal`, Eq. 2-5):
X^v -> X^I. `forward_head` does the rest: the fine prompt X^FP (learnable context through the
frozen text encoder, Eq. 6, or fixed embeddings from the store), the visual prompt (Eq. 7-8),
the enhanced label feature X~ (Eq. 9-10), frame and bag scores (Eq. 11) and the per-frame
influence (Eq. 12, `frame_influence`: by default the frame's class score minus its mean over the
classes). Every interpretation of what the paper leaves open is listed in
docs/paper-mapping.md.

All trainable tensors carry a leading replica axis M: M copies of one architecture (DFEW folds x
seeds) train together as one batched computation, each initialised from its own seed exactly as
a 1-replica head with that seed would be.

Shape legend: M replicas, B clips, T frames, D width, C classes, L tokens, P prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .temporal import MultiGrained, ReplicaLinear
from .text import FrozenTextEncoder, PromptLearner

TEXT_PROMPTS = ("class", "descriptors")
VISUAL_PROMPTS = ("none", "add", "prepend", "token")
# (text_prompt, learnable) -> prompt set read from the store for the fine prompt X^FP:
# learnable variants put the context in front of the set's tokens, fixed ones use its embeddings.
FINE_PROMPT_SETS: Mapping[tuple[str, bool], str] = {
    ("class", True): "class_names",
    ("class", False): "class_sentences",
    ("descriptors", True): "descriptors",
    ("descriptors", False): "descriptors",
}


def _mean(s: torch.Tensor, k: int) -> torch.Tensor:
    return s.mean(dim=2)


def _max(s: torch.Tensor, k: int) -> torch.Tensor:
    return s.amax(dim=2)


def _topk(s: torch.Tensor, k: int) -> torch.Tensor:
    return s.topk(k, dim=2).values.mean(dim=2)


def _attention(s: torch.Tensor, k: int) -> torch.Tensor:
    return (s.softmax(dim=2) * s).sum(dim=2)  # frames weighted by their own softmax over T, per class


# Bag pooling: frame scores [M, B, T, C] -> bag scores [M, B, C]; k is HeadConfig.topk.
POOLINGS: Mapping[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "mean": _mean, "max": _max, "topk": _topk, "attention": _attention,
}


@dataclass
class HeadConfig:
    """Architecture of the TG-DFER head; defaults are the paper's best settings (Tables 3-5)."""

    window: int = 4  # w, frames per fine-grained window (Eq. 3; Table 4 best 4)
    stride: int | None = 1  # s, frames between window starts (Table 4 best 1); None = non-overlapping, s = w
    fine_depth: int = 1  # n_f, layers of E_f (Eq. 2); 0 removes the fine module (Table 3 "X")
    coarse_depth: int = 1  # n_c, layers of E_c (Eq. 4); 0 removes the coarse module (Table 3 "X")
    heads: int = 8  # attention heads of E_f and E_c (DFER-CLIP's temporal transformer: 8)
    dim_head: int = 64  # width of one attention head (DFER-CLIP: 64)
    mlp_dim: int = 1024  # hidden width of the encoder layers' feed-forward (DFER-CLIP: 1024)
    dropout: float = 0.0  # dropout in the encoder layers (DFER-CLIP: 0)
    pos_init_std: float = 0.02  # init std of P^f and P^c (ViT convention; DFER-CLIP draws randn, std 1)
    text_prompt: Literal["class", "descriptors"] = "class"  # source of the fine prompt X^FP (Table 5)
    learnable: bool = True  # learnable context before the prompt (Eq. 6); False = fixed store embeddings
    n_ctx: int = 8  # learnable context tokens (DFER-CLIP: 8)
    class_specific_ctx: bool = True  # one context per class (DFER-CLIP) rather than one shared context
    coarse_text: str = "class_sentences"  # store prompt set of the coarse prompt X^CP (Eq. 10)
    coarse_learnable: bool = False  # X^CP with its own learnable context, "in a similar manner" to X^FP (Eq. 6)
    visual_prompt: Literal["none", "add", "prepend", "token"] = "add"  # V^P placement (Table 5; best WAR: add);
    #   prepend: [V^P, X^FP] on the feature axis; token: V^P as a text-encoder input token (VPT)
    fusion_dim: int = 0  # hidden width of Eq. 10's MLP; 0 = D
    tau: float = 0.01  # temperature of Eq. 8 and 11 (paper: 0.01)
    pooling: Literal["mean", "max", "topk", "attention"] = "mean"  # frame scores -> bag score (paper silent)
    topk: int = 2  # frames averaged by pooling "topk"
    influence: Literal["relative", "similarity"] = "relative"  # Eq. 12 shown by evaluate/predict (and Table 6)

    def __post_init__(self) -> None:
        for name in ("window", "heads", "dim_head", "mlp_dim", "topk"):
            if _bad_int(getattr(self, name), 1):
                raise ConfigError(name, f"must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("fine_depth", "coarse_depth", "n_ctx", "fusion_dim"):
            if _bad_int(getattr(self, name), 0):
                raise ConfigError(name, f"must be an integer >= 0, got {getattr(self, name)!r}")
        if self.stride is not None and (_bad_int(self.stride, 1) or self.stride > self.window):
            raise ConfigError("stride", f"must be 1..window ({self.window}) or None (non-overlapping windows), got "
                              f"{self.stride!r}; a stride above the window leaves frames in no window")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"must be in [0, 1), got {self.dropout!r}")
        if not self.pos_init_std >= 0.0:
            raise ConfigError("pos_init_std", f"must be >= 0, got {self.pos_init_std!r}")
        if not self.tau > 0.0:
            raise ConfigError("tau", f"must be > 0, got {self.tau!r}")
        for name, allowed in (("text_prompt", TEXT_PROMPTS), ("visual_prompt", VISUAL_PROMPTS), ("pooling", POOLINGS),
                              ("influence", INFLUENCES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, f"{getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if (self.learnable or self.coarse_learnable) and self.n_ctx < 1:
            raise ConfigError("n_ctx", "learnable prompts need n_ctx >= 1 (or set learnable = false)")
        if not self.coarse_text or not isinstance(self.coarse_text, str):
            raise ConfigError("coarse_text", "must name a prompt set of the store, e.g. 'class_sentences'")

    @property
    def fine_text(self) -> str:
        """Store prompt set the fine prompt X^FP comes from."""
        return FINE_PROMPT_SETS[(self.text_prompt, self.learnable)]

    @property
    def needs_text_encoder(self) -> bool:
        """Learnable context (Eq. 6, fine or coarse) and V^P as a prompt token run the frozen text encoder every step."""
        return self.learnable or self.coarse_learnable or self.visual_prompt == "token"

    @property
    def effective_stride(self) -> int:
        """s, with None resolved to the window width (non-overlapping windows)."""
        return self.window if self.stride is None else self.stride

    def check_frames(self, frames: int) -> None:
        """ConfigError if the windows or top-k do not fit clips of `frames` frames."""
        if self.window > frames:
            raise ConfigError("window", f"{self.window} frames do not fit clips of {frames} frames")
        if self.pooling == "topk" and self.topk > frames:
            raise ConfigError("topk", f"{self.topk} frames do not fit clips of {frames} frames")


def _bad_int(value: object, low: int) -> bool:
    return isinstance(value, bool) or not isinstance(value, int) or value < low


@dataclass
class HeadOutput:
    """What `TGDFERHead.forward_head` returns."""

    logits: torch.Tensor  # [M, B, C] bag scores, already / tau: cross-entropy input (Eq. 11 before softmax)
    frame_logits: torch.Tensor  # [M, B, T, C] cos(X^I_t, X~_k) / tau
    influence: torch.Tensor  # [M, B, T] Eq. 12 for the target class, default (class-relative) mode of frame_influence
    alignment: torch.Tensor  # [M, B, T, C] A_I = cos(X^I, X^FP) / tau (Eq. 8)


class TGDFERHead(nn.Module):
    """TG-DFER on frame features: temporal network, text and visual prompts, bag prediction."""

    def __init__(self, cfg: HeadConfig, *, dim: int, frames: int, classes: int,
                 text: Mapping[str, tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]],
                 text_encoder: FrozenTextEncoder | None = None, replicas: int = 1,
                 seeds: Sequence[int] | None = None):
        """`text`: prompt set name -> (tokens [P, L] int, emb [P, D] float), as `FeatureStore.text` gives them.

        `seeds` (one per replica) fix each replica's init; None draws them from torch's global RNG.
        `text_encoder` is needed only for learnable prompts.
        """
        super().__init__()
        cfg.check_frames(frames)
        if replicas < 1:
            raise ConfigError("replicas", f"must be >= 1, got {replicas}")
        if seeds is None:
            seeds = torch.randint(0, 2**62, (replicas,)).tolist()
        if len(seeds) != replicas:
            raise ConfigError("seeds", f"got {len(seeds)} seeds for {replicas} replicas")
        self.cfg, self.dim, self.frames, self.classes = cfg, dim, frames, classes
        self.replicas, self.seeds = replicas, [int(s) for s in seeds]
        self.temporal = MultiGrained(
            replicas, dim, frames, window=cfg.window, stride=cfg.effective_stride, fine_depth=cfg.fine_depth,
            coarse_depth=cfg.coarse_depth, heads=cfg.heads, dim_head=cfg.dim_head, mlp_dim=cfg.mlp_dim,
            dropout=cfg.dropout, pos_std=cfg.pos_init_std)
        token = cfg.visual_prompt == "token"
        self.prompt = self._build_prompt(text, text_encoder, extra_tokens=int(token)) if cfg.learnable else None
        if self.prompt is None:
            self.register_buffer("fine_fixed", self._text_emb(text, cfg.fine_text, "text_prompt"))  # [C, D]
        self.register_buffer("coarse", self._text_emb(text, cfg.coarse_text, "coarse_text"))  # fixed X^CP [C, D]
        self.coarse_prompt = self._build_prompt(text, text_encoder, prompt_set=cfg.coarse_text) \
            if cfg.coarse_learnable else None  # X^CP = F_t([SOT][ctx][Tok(label)][EOT]), its own context
        fusion_in = 2 * dim if cfg.visual_prompt == "prepend" else dim  # prepend: [V^P, X^FP]
        hidden = cfg.fusion_dim or dim
        self.fusion = nn.Sequential(ReplicaLinear(replicas, fusion_in, hidden), nn.GELU(),
                                    ReplicaLinear(replicas, hidden, dim))  # Eq. 10's MLP
        self.fixed_text = self.vp_token = None
        if token:  # V^P -> one token of the text encoder's input (VPT), in front of the fine prompt
            if self.prompt is None:  # fixed prompts: their text only, no context, with room for the token
                self.fixed_text = self._build_prompt(text, text_encoder, extra_tokens=1, n_ctx=0)
            self.vp_token = ReplicaLinear(replicas, dim, text_encoder.width)  # D -> W, token space
        self.reset_parameters()

    def _text_set(self, text: Mapping, name: str, field: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in text:
            raise ConfigError(field, f"needs prompt set {name!r}, which is not among {sorted(text)}; "
                              "extract it into the store or choose another")
        tokens, emb = (a.detach().cpu() if torch.is_tensor(a) else torch.as_tensor(np.asarray(a)) for a in text[name])
        if emb.shape != (self.classes, self.dim) or tokens.shape[0] != self.classes:
            raise ConfigError(field, f"prompt set {name!r} has embeddings {tuple(emb.shape)} and tokens "
                              f"{tuple(tokens.shape)}; expected {self.classes} prompts of width {self.dim}")
        return tokens.long(), emb.float()

    def _text_emb(self, text: Mapping, name: str, field: str) -> torch.Tensor:
        return self._text_set(text, name, field)[1]

    def _build_prompt(self, text: Mapping, encoder: FrozenTextEncoder | None, extra_tokens: int = 0,
                      n_ctx: int | None = None, prompt_set: str | None = None) -> PromptLearner:
        cfg = self.cfg
        if encoder is None:
            field = "learnable" if cfg.learnable else "visual_prompt"
            raise ConfigError(field, "learnable prompts and visual_prompt 'token' run the frozen text encoder each "
                              "step; pass text_encoder=FrozenTextEncoder(...) (or set learnable = false and "
                              "another visual_prompt)")
        if encoder.dim != self.dim:
            raise ConfigError("text_encoder", f"text embeddings are {encoder.dim} wide but features are {self.dim}")
        tokens, _ = self._text_set(text, prompt_set or cfg.fine_text, "coarse_text" if prompt_set else "text_prompt")
        return PromptLearner(encoder, tokens, n_ctx=cfg.n_ctx if n_ctx is None else n_ctx,
                             class_specific=cfg.class_specific_ctx, replicas=self.replicas,
                             extra_tokens=extra_tokens, allow_empty=n_ctx == 0)

    def reset_parameters(self) -> None:
        """Initialise every replica from its seed; the draw order does not depend on the replica count."""
        gens = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.temporal.reset_parameters(gens)
        if self.prompt is not None:
            self.prompt.reset_parameters(gens)
        for layer in self.fusion:
            if isinstance(layer, ReplicaLinear):
                layer.reset_parameters(gens)
        if self.vp_token is not None:
            self.vp_token.reset_parameters(gens)
        if self.coarse_prompt is not None:
            self.coarse_prompt.reset_parameters(gens)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"prompt": learnable contexts, "head": every other trainable parameter} (lr 1e-3 / 1e-2 in the paper)."""
        groups: dict[str, list[nn.Parameter]] = {"prompt": [], "head": []}
        for name, p in self.named_parameters():
            if p.requires_grad:
                groups["prompt" if name.startswith(("prompt.", "coarse_prompt.")) else "head"].append(p)
        return groups

    # -- forward --------------------------------------------------------------------------------

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Frame features X^v [M, B, T, D] (or [B, T, D], shared by all replicas) -> X^I [M, B, T, D]."""
        if feats.dim() == 3:
            feats = feats.unsqueeze(0).expand(self.replicas, -1, -1, -1)
        if feats.dim() != 4 or feats.shape[0] != self.replicas or feats.shape[2:] != (self.frames, self.dim):
            raise ValueError(f"features {tuple(feats.shape)}: expected [{self.replicas}, B, {self.frames}, {self.dim}]")
        return self.temporal(feats.to(self.coarse.dtype))  # Eq. 2-5; store features are float16

    def fine_prompt(self) -> torch.Tensor:
        """X^FP [M, C, D], L2-normalised: learnable context through the text encoder (Eq. 6) or fixed."""
        if self.prompt is not None:
            fine = self.prompt()  # Eq. 6, one text-encoder pass for all replicas and classes
        else:
            fine = self.fine_fixed.expand(self.replicas, -1, -1)
        return F.normalize(fine.to(self.coarse.dtype), dim=-1)

    def alignment(self, xi: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """A_I [M, B, T, C] = cos(X^I [M, B, T, D], X^FP [M, C, D]) / tau."""
        return torch.einsum("mbtd,mcd->mbtc", F.normalize(xi, dim=-1), fine) / self.cfg.tau  # Eq. 8

    @staticmethod
    def visual_prompt(xi: torch.Tensor, align: torch.Tensor) -> torch.Tensor:
        """V^P [M, B, C, D]: per class, the frames of X^I [M, B, T, D] weighted by A_I [M, B, T, C]."""
        weights = align.softmax(dim=2)  # Eq. 7, N: the weights are normalised over the T frames ...
        return F.normalize(torch.einsum("mbtc,mbtd->mbcd", weights, xi), dim=-1)  # ... and the sum to unit length

    def enhanced_label(self, fine: torch.Tensor, vp: torch.Tensor | None) -> torch.Tensor:
        """X~ [M, B, C, D] from X^FP [M, C, D] and V^P [M, B, C, D]; [M, 1, C, D] for visual_prompt "none"."""
        mode = self.cfg.visual_prompt
        if mode == "none":
            x_hat = fine.unsqueeze(1)  # [M, 1, C, D]: one label feature for every clip
        elif mode == "add":
            x_hat = fine.unsqueeze(1) + vp  # Eq. 9
        elif mode == "prepend":  # V^P in front of X^FP on the feature axis, fused by the MLP of Eq. 10
            x_hat = torch.cat([vp, fine.unsqueeze(1).expand_as(vp)], dim=-1)  # [M, B, C, 2D]
        else:  # token (VPT): F_t([SOT, W V^P, (context), Tok(y'), EOT]), one text pass per clip and class
            prompt = self.prompt if self.prompt is not None else self.fixed_text
            x_hat = F.normalize(prompt(extra=self.vp_token(vp).unsqueeze(3)).to(fine.dtype), dim=-1)  # [M, B, C, D]
        return self.fusion(x_hat) + self.coarse_label()  # Eq. 10

    def coarse_label(self) -> torch.Tensor:
        """X^CP, L2-normalised: fixed [C, D] (broadcast), or through the text encoder [M, 1, C, D]."""
        if self.coarse_prompt is None:
            return F.normalize(self.coarse, dim=-1)
        return F.normalize(self.coarse_prompt().to(self.coarse.dtype), dim=-1).unsqueeze(1)  # Eq. 6 for X^CP

    def forward_head(self, xi: torch.Tensor, target: torch.Tensor | None = None,
                     fine: torch.Tensor | None = None) -> HeadOutput:
        """X^I [M, B, T, D] -> HeadOutput.

        `target` ([B] or [M, B] class ids) picks the class whose influence is reported; None = the
        predicted class. `fine` is a precomputed `fine_prompt()` (e.g. reused across evaluation batches).
        """
        fine = self.fine_prompt() if fine is None else fine  # X^FP [M, C, D]
        align = self.alignment(xi, fine)  # Eq. 8
        vp = None if self.cfg.visual_prompt == "none" else self.visual_prompt(xi, align)  # Eq. 7
        label = self.enhanced_label(fine, vp).expand(-1, xi.shape[1], -1, -1)  # Eq. 9-10, X~ [M, B, C, D]
        frame_logits = torch.einsum("mbtd,mbcd->mbtc", F.normalize(xi, dim=-1),
                                    F.normalize(label, dim=-1)) / self.cfg.tau  # Eq. 11, per frame
        logits = POOLINGS[self.cfg.pooling](frame_logits, self.cfg.topk)  # Eq. 11, frames -> bag
        target = logits.argmax(dim=-1) if target is None else target.to(logits.device).expand(logits.shape[:2])
        return HeadOutput(logits=logits, frame_logits=frame_logits,
                          influence=frame_influence(frame_logits, target, self.cfg.influence), alignment=align)

    def forward(self, feats: torch.Tensor, target: torch.Tensor | None = None) -> HeadOutput:
        """Frame features [M, B, T, D] (or [B, T, D]) -> HeadOutput."""
        return self.forward_head(self.forward_features(feats), target)


INFLUENCES = ("relative", "similarity")  # frame_influence modes; the first is the default


def frame_influence(frame_logits: torch.Tensor, target: torch.Tensor, mode: str = "relative") -> torch.Tensor:
    """Eq. 12: the frames' scores [M, B, T, C] for class `target` [M, B], min-max normalised over T -> [M, B, T].

    mode "relative" (default): frame t's contribution to the class-k decision, s_tk - mean_j s_tj.
    With mean pooling the bag softmax ignores whatever a frame adds to every class, so only this
    part is fixed by training. mode "similarity": the raw score s_tk = cos(X^I_t, X~_k) / tau, whose
    class-independent part is left free by the bag loss and can rank frames either way
    (docs/paper-mapping.md, "Influence (Eq. 12)").
    """
    if mode not in INFLUENCES:
        raise ConfigError("influence", f"{mode!r} is not one of {', '.join(INFLUENCES)}")
    if mode == "relative":
        frame_logits = frame_logits - frame_logits.mean(dim=3, keepdim=True)
    T = frame_logits.shape[2]
    s = frame_logits.gather(3, target.long()[:, :, None, None].expand(-1, -1, T, 1)).squeeze(3)  # [M, B, T]
    low = s.amin(dim=2, keepdim=True)
    span = s.amax(dim=2, keepdim=True) - low
    return ((s - low) / span.clamp_min(1e-12)).detach()  # for visualisation only, never trained on
