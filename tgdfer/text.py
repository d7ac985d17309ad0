"""Frozen open_clip text tower that takes token embeddings, and the learnable prompt context (Eq. 6).

`FrozenTextEncoder` runs open_clip's text path from embeddings instead of token ids (add the
positional embedding, the transformer WITH the causal mask, ln_final at the EOT token, the
projection), for both open_clip layouts: CLIP keeps the tower in `model.token_embedding`,
`model.transformer`, ... and CustomTextCLIP in `model.text`. Its weights are frozen, but gradients
flow through it to its inputs, which is what CoOp-style context learning needs.

Under the causal mask a token only sees the tokens before it, so everything after the last EOT
position of a batch is dead weight: the sequences are cut at max(eot) + 1 (exact, and at 32
instead of 77 tokens about twice as fast on a CPU).

`PromptLearner` holds M replicas of the learnable context and encodes the prompts of all classes
of all replicas in one text-encoder pass ([M*C] sequences) per step; the result does not depend
on the clips. With `extra` tokens (visual_prompt = "token": V^P as a prompt token, VPT's reading
of Table 5's "Prepend") it encodes one sequence per clip and class instead ([M*B*C]).

Shape legend: M replicas, C classes (prompts), N sequences, L tokens, W text width, D embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, TgdferError
from .temporal import init_normal_

_POOLS = ("argmax", "eos")  # open_clip pool types that take the EOT token


class FrozenTextEncoder(nn.Module):
    """open_clip's text tower, frozen, fed token embeddings: `encode_embeddings(x, eot_index) -> [N, D]`."""

    def __init__(self, model: Any):
        """`model`: an open_clip CLIP / CustomTextCLIP, or a `tgdfer.encoders.LoadedEncoder` holding one."""
        super().__init__()
        model = getattr(model, "model", model)  # LoadedEncoder -> its open_clip model
        text = getattr(model, "text", None)
        tower = text if isinstance(text, nn.Module) else model  # CustomTextCLIP keeps the tower in .text
        if getattr(tower, "token_embedding", None) is None or getattr(tower, "transformer", None) is None:
            raise TgdferError(f"{type(model).__name__} has no open_clip TextTransformer text tower (token_embedding, "
                              "transformer); load the encoder with its text tower (towers including 'text')")
        pool = getattr(tower, "pool_type", None) or getattr(tower, "text_pool_type", "argmax")
        if pool not in _POOLS or getattr(tower, "cls_emb", None) is not None:
            raise TgdferError(f"the text tower pools with {pool!r} (or appends a CLS token); learnable prompts "
                              "need an EOT-pooled CLIP-style tower (pool_type argmax or eos)")
        if getattr(tower, "attn_mask", None) is None:
            raise TgdferError("the text tower has no causal attention mask; learnable prompts need CLIP's "
                              "causal text tower")
        self.pool = pool
        self.eos_id = getattr(tower, "eos_id", None) or getattr(tower, "text_eos_id", None)
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding  # [L, W]
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection  # [W, D] Parameter, nn.Linear or None
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)  # [L, L] additive causal mask
        self.requires_grad_(False)
        self.eval()

    @property
    def width(self) -> int:
        """W, the width of token embeddings (and of learnable context vectors)."""
        return int(self.token_embedding.weight.shape[1])

    @property
    def context_length(self) -> int:
        """L, the longest sequence the positional embedding covers."""
        return int(self.positional_embedding.shape[0])

    @property
    def dim(self) -> int:
        """D, the width of the output embeddings."""
        p = self.text_projection
        if p is None:
            return self.width
        return int(p.out_features if isinstance(p, nn.Linear) else p.shape[1])

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        return super().train(False)  # frozen: always in eval mode

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [N, L] -> token embeddings [N, L, W] (no gradient: the table is frozen)."""
        return self.token_embedding(tokens.long())

    def eot_index(self, tokens: torch.Tensor) -> torch.Tensor:
        """Position [N] of each sequence's EOT token, as open_clip's text_global_pool finds it."""
        if self.pool == "eos":
            return (tokens == self.eos_id).int().argmax(dim=-1)
        return tokens.argmax(dim=-1)  # CLIP's EOT id is the largest in the vocabulary

    def encode_embeddings(self, x: torch.Tensor, eot_index: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Text embeddings [N, D] of token embeddings x [N, L, W] whose EOT tokens sit at `eot_index` [N].

        The sequences are cut after `length` tokens (default max(eot_index) + 1, which reads the
        index on the host; pass it when it is known to avoid a device sync).
        """
        length = int(eot_index.max()) + 1 if length is None else length
        cast = self.transformer.get_cast_dtype()
        x = x[:, :length].to(cast) + self.positional_embedding[:length].to(cast)  # [N, L', W]
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]  # [N, W]; ln_final is per token
        x = self.ln_final(x)
        p = self.text_projection
        if p is None:
            return x
        if isinstance(p, nn.Linear):
            return p(x)
        # float64, then back: a float32 [N, W] x [W, D] product's summation order depends on the
        # thread count for some N (7 prompts at 2 threads), float64's differences vanish in the cast
        return (x.double() @ p.double()).to(x.dtype)  # [N, D]

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [N, L] -> [N, D], the same as open_clip's `encode_text` (cut after the last EOT)."""
        return self.encode_embeddings(self.embed_tokens(tokens), self.eot_index(tokens))


class PromptLearner(nn.Module):
    """Eq. 6: P_k = [SOT][c_1 .. c_n][Tok(y'_k)][EOT], context vectors c learnable per replica.

    The context is class-specific ([M, C, n, W]) or shared by all classes ([M, n, W]); n_ctx = 0
    (`allow_empty`) keeps the fixed prompt text only, for per-clip tokens (`forward(extra)`). The
    text encoder is held by reference, not as a submodule: it is frozen, so it stays out of
    `parameters()` and `state_dict()`; `.to()` moves it along.
    """

    def __init__(self, encoder: FrozenTextEncoder, tokens: torch.Tensor, *, n_ctx: int = 8,
                 class_specific: bool = True, replicas: int = 1, init_std: float = 0.02, extra_tokens: int = 0,
                 allow_empty: bool = False):
        """`tokens` [C, L]: the prompts' token ids as the tokenizer writes them ([SOT] text [EOT] 0 ...).

        `extra_tokens`: room kept for that many per-clip tokens after SOT (`forward(extra)`).
        """
        super().__init__()
        tokens = torch.as_tensor(tokens).long()
        C, L = tokens.shape
        eot = encoder.eot_index(tokens)  # [C]
        if n_ctx < (0 if allow_empty else 1):
            raise ConfigError("n_ctx", f"learnable prompts need at least one context token, got {n_ctx}")
        if int(eot.max()) + n_ctx + extra_tokens >= min(L, encoder.context_length):
            k = int(eot.argmax())
            raise ConfigError("n_ctx", f"prompt {k} has {int(eot[k]) - 1} tokens; with {n_ctx} context tokens, start "
                              f"and end tokens it exceeds the {min(L, encoder.context_length)}-token context; "
                              "use fewer context tokens or a shorter prompt")
        self._encoder = (encoder,)  # a tuple hides it from nn.Module registration (see class docstring)
        self.n_ctx, self.class_specific, self.init_std = n_ctx, class_specific, init_std
        self.length = int(eot.max()) + n_ctx + 1  # L', cut after the last EOT of the shifted prompts
        with torch.no_grad():
            emb = encoder.embed_tokens(tokens.to(encoder.token_embedding.weight.device)).float()  # [C, L, W]
        self.register_buffer("prefix", emb[:, :1].clone())  # [C, 1, W] SOT
        self.register_buffer("suffix", emb[:, 1:self.length - n_ctx].clone())  # [C, L'-1-n, W] text, EOT
        self.register_buffer("eot", eot + n_ctx)  # [C] EOT position after the context is inserted
        shape = (replicas, C, n_ctx, encoder.width) if class_specific else (replicas, n_ctx, encoder.width)
        self.ctx = nn.Parameter(torch.empty(shape)) if n_ctx else None  # c, [M, C, n, W] or [M, n, W]
        self.replicas = replicas

    @property
    def encoder(self) -> FrozenTextEncoder:
        return self._encoder[0]

    def _apply(self, fn: Any, recurse: bool = True) -> PromptLearner:
        super()._apply(fn, recurse)
        self.encoder._apply(fn, recurse)  # keep the frozen encoder on the prompts' device
        return self

    def reset_parameters(self, gens: Sequence[torch.Generator]) -> None:
        """Normal(0, init_std) per replica from its generator (CoOp / DFER-CLIP use std 0.02)."""
        for m, g in enumerate(gens):
            if self.ctx is not None:
                init_normal_(self.ctx[m], self.init_std, g)

    def embeddings(self, extra: torch.Tensor | None = None) -> torch.Tensor:
        """The prompts as token embeddings [M, C, L', W], context inserted after SOT (Eq. 6).

        With `extra` [M, B, C, k, W] (per-clip tokens, e.g. the visual prompt): [M, B, C, k + L', W],
        the extra tokens right after SOT, before the context.
        """
        M, (C, _, W) = self.replicas, self.prefix.shape
        parts = [self.prefix.expand(M, -1, -1, -1)]
        if self.ctx is not None:
            parts.append(self.ctx if self.class_specific else self.ctx[:, None].expand(M, C, self.n_ctx, W))
        parts.append(self.suffix.expand(M, -1, -1, -1))
        if extra is None:
            return torch.cat(parts, dim=2)  # Eq. 6
        B = extra.shape[1]
        parts = [p.to(extra.dtype)[:, None].expand(-1, B, -1, -1, -1) for p in parts]
        return torch.cat([parts[0], extra, *parts[1:]], dim=3)  # [M, B, C, 1 + k + n + text, W]

    def forward(self, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt embeddings [M, C, D] of all classes of all replicas, one text-encoder pass; with
        per-clip `extra` tokens [M, B, C, k, W], one sequence per clip and class: [M, B, C, D]."""
        x = self.embeddings(extra)
        if extra is None:
            M, C, Lc, W = x.shape
            out = self.encoder.encode_embeddings(x.reshape(M * C, Lc, W), self.eot.repeat(M), length=self.length)
            return out.reshape(M, C, -1)  # [M*C, D] -> [M, C, D]
        M, B, C, Lc, W = x.shape
        k = extra.shape[3]
        eot = (self.eot + k).repeat(M * B)  # [M*B*C]
        out = self.encoder.encode_embeddings(x.reshape(M * B * C, Lc, W), eot, length=self.length + k)
        return out.reshape(M, B, C, -1)
