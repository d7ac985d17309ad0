"""Multi-grained temporal network (paper Sec. 3.2, Eq. 2-5) with a replica dimension.

Every trainable tensor carries a leading replica axis M, so M independently initialised copies of
one architecture (DFEW folds x seeds) train as one batched computation: linear layers are batched
matmuls (`torch.baddbmm`), attention folds the replicas into the batch axis of
`scaled_dot_product_attention`. Replica m draws its initial values from its own
`torch.Generator`, in an order that does not depend on M, so replica m of an M-replica network
starts exactly where a 1-replica network with the same seed starts.

Encoder layers follow DFER-CLIP's temporal transformer (github.com/zengqunzhao/DFER-CLIP,
models/Temporal_Model.py): pre-norm residual blocks, attention with a bias-free qkv projection
(8 heads x 64 per head) and an output projection, a feed-forward of width 1024 with tanh-GELU,
dropout 0.

Shape legend: M replicas, B clips, T frames, D width, N sequences (clips x windows), S sequence
length (window w or T), H heads, K windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Generators = Sequence[torch.Generator]  # one per replica, consumed in module order


def window_starts(frames: int, window: int, stride: int) -> list[int]:
    """First frame of each fine window (Eq. 3), plus one window aligned to the end if a tail is uncovered.

    Eq. 3 gives N = floor((T - w) / s) + 1 windows starting at i * s. When (T - w) % s != 0 the
    last frames belong to no window; an extra window starting at T - w covers them, so every frame
    gets a fine-grained feature computed the same way.
    """
    if not 1 <= window <= frames or not 1 <= stride <= window:
        raise ValueError(f"need 1 <= window <= frames and 1 <= stride <= window; "
                         f"got T={frames}, w={window}, s={stride}")
    starts = list(range(0, frames - window + 1, stride))  # Eq. 3: N = floor((T - w) / s) + 1
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts


def window_average_matrix(frames: int, starts: Sequence[int], window: int) -> torch.Tensor:
    """[T, K*w] matrix that maps window outputs (flattened window-major) to frames by averaging.

    Entry (t, k*w + j) is 1 / (windows containing frame t) when window k's j-th frame is t.
    """
    hits = torch.zeros(frames, len(starts) * window)
    for k, start in enumerate(starts):
        for j in range(window):
            hits[start + j, k * window + j] = 1.0
    return hits / hits.sum(dim=1, keepdim=True)  # every frame is covered, so no division by zero


def init_uniform_(t: torch.Tensor, bound: float, gen: torch.Generator) -> None:
    """Fill `t` with U(-bound, bound) drawn on the CPU from `gen` (so the values do not depend on t's device)."""
    with torch.no_grad():
        t.copy_(torch.empty(t.shape).uniform_(-bound, bound, generator=gen))


def init_normal_(t: torch.Tensor, std: float, gen: torch.Generator) -> None:
    """Fill `t` with N(0, std^2) drawn on the CPU from `gen`."""
    with torch.no_grad():
        t.copy_(torch.empty(t.shape).normal_(0.0, std, generator=gen))


class ReplicaLinear(nn.Module):
    """M independent linear layers applied to M inputs: x [M, ..., I] -> [M, ..., O]."""

    def __init__(self, replicas: int, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(replicas, d_in, d_out))  # [M, I, O], x @ W
        self.bias = nn.Parameter(torch.empty(replicas, d_out)) if bias else None  # [M, O]

    def reset_parameters(self, gens: Generators) -> None:
        """nn.Linear's default init (uniform +-1/sqrt(fan_in)) for each replica from its generator."""
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        for m, g in enumerate(gens):
            init_uniform_(self.weight[m], bound, g)
            if self.bias is not None:
                init_uniform_(self.bias[m], bound, g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(shape[0], -1, shape[-1])  # [M, *, I]
        if self.bias is None:
            y = torch.bmm(x, self.weight)
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)  # [M, *, O]
        return y.reshape(*shape[:-1], y.shape[-1])


class ReplicaLayerNorm(nn.Module):
    """M independent LayerNorms over the last axis: x [M, ..., D]."""

    def __init__(self, replicas: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(replicas, dim))  # [M, D]
        self.bias = nn.Parameter(torch.zeros(replicas, dim))  # [M, D]

    def reset_parameters(self, gens: Generators) -> None:
        with torch.no_grad():
            self.weight.fill_(1.0)
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        view = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)  # [M, 1.., D] broadcasts over the middle axes
        y = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return y * self.weight.view(view) + self.bias.view(view)


class ReplicaEncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer (DFER-CLIP layout) on x [M, N, S, D]."""

    def __init__(self, replicas: int, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.heads, self.dim_head, self.dropout = heads, dim_head, dropout
        inner = heads * dim_head
        self.norm1 = ReplicaLayerNorm(replicas, dim)
        self.qkv = ReplicaLinear(replicas, dim, 3 * inner, bias=False)
        self.proj = ReplicaLinear(replicas, inner, dim)
        self.norm2 = ReplicaLayerNorm(replicas, dim)
        self.fc1 = ReplicaLinear(replicas, dim, mlp_dim)
        self.fc2 = ReplicaLinear(replicas, mlp_dim, dim)

    def reset_parameters(self, gens: Generators) -> None:
        for layer in (self.norm1, self.qkv, self.proj, self.norm2, self.fc1, self.fc2):
            layer.reset_parameters(gens)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        M, N, S, _ = x.shape
        qkv = self.qkv(x).view(M * N, S, 3, self.heads, self.dim_head)  # replicas folded into the batch axis
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [M*N, H, S, dh]
        out = F.scaled_dot_product_attention(q, k, v)  # DFER-CLIP has no dropout on attention weights
        out = out.transpose(1, 2).reshape(M, N, S, self.heads * self.dim_head)  # [M, N, S, H*dh]
        return F.dropout(self.proj(out), self.dropout, self.training)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.gelu(self.fc1(x), approximate="tanh"), self.dropout, self.training)
        return F.dropout(self.fc2(h), self.dropout, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.feed_forward(self.norm2(x))


class ReplicaEncoder(nn.Module):
    """`depth` encoder layers on x [M, N, S, D] (depth >= 1)."""

    def __init__(self, replicas: int, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int,
                 dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            ReplicaEncoderLayer(replicas, dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth))

    def reset_parameters(self, gens: Generators) -> None:
        for layer in self.layers:
            layer.reset_parameters(gens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class FineTemporal(nn.Module):
    """Eq. 2-3: E_f over overlapping windows with positional embedding P^f; window outputs averaged back to frames."""

    def __init__(self, replicas: int, dim: int, frames: int, window: int, stride: int, depth: int, *,
                 heads: int, dim_head: int, mlp_dim: int, dropout: float, pos_std: float):
        super().__init__()
        self.window, self.pos_std = window, pos_std
        starts = window_starts(frames, window, stride)
        index = torch.tensor([[s + j for j in range(window)] for s in starts])  # [K, w] frame of each window slot
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("average", window_average_matrix(frames, starts, window), persistent=False)  # [T, K*w]
        self.pos = nn.Parameter(torch.empty(replicas, window, dim))  # P^f [M, w, D]
        self.encoder = ReplicaEncoder(replicas, dim, depth, heads, dim_head, mlp_dim, dropout)

    def reset_parameters(self, gens: Generators) -> None:
        for m, g in enumerate(gens):
            init_normal_(self.pos[m], self.pos_std, g)
        self.encoder.reset_parameters(gens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, B, T, D] -> X^fine [M, B, T, D]."""
        M, B, _, D = x.shape
        K, w = self.index.shape
        windows = x[:, :, self.index]  # Eq. 3: X'_i = frames i*s .. i*s+w-1, [M, B, K, w, D]
        windows = windows + self.pos[:, None, None]  # Eq. 2: + P^f
        out = self.encoder(windows.reshape(M, B * K, w, D))  # Eq. 2: E_f on all windows at once, [M, B*K, w, D]
        out = out.reshape(M, B, K * w, D)  # window-major slots
        return torch.einsum("tj,mbjd->mbtd", self.average, out)  # each frame: mean over the windows holding it


class CoarseTemporal(nn.Module):
    """Eq. 4: E_c over all T frames with positional embedding P^c."""

    def __init__(self, replicas: int, dim: int, frames: int, depth: int, *, heads: int, dim_head: int,
                 mlp_dim: int, dropout: float, pos_std: float):
        super().__init__()
        self.pos_std = pos_std
        self.pos = nn.Parameter(torch.empty(replicas, frames, dim))  # P^c [M, T, D]
        self.encoder = ReplicaEncoder(replicas, dim, depth, heads, dim_head, mlp_dim, dropout)

    def reset_parameters(self, gens: Generators) -> None:
        for m, g in enumerate(gens):
            init_normal_(self.pos[m], self.pos_std, g)
        self.encoder.reset_parameters(gens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, B, T, D] -> X^coarse [M, B, T, D]."""
        return self.encoder(x + self.pos[:, None])  # Eq. 4


class MultiGrained(nn.Module):
    """Eq. 5: X^I = FC([X^fine, X^coarse]); a module of depth 0 is absent.

    With one module left the FC takes that module's output alone (the removed module's half of
    the concatenation is dropped); with both absent X^I = X^v.
    """

    def __init__(self, replicas: int, dim: int, frames: int, *, window: int, stride: int, fine_depth: int,
                 coarse_depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float, pos_std: float):
        super().__init__()
        layer = dict(heads=heads, dim_head=dim_head, mlp_dim=mlp_dim, dropout=dropout, pos_std=pos_std)
        self.fine = (FineTemporal(replicas, dim, frames, window, stride, fine_depth, **layer)
                     if fine_depth > 0 else None)
        self.coarse = CoarseTemporal(replicas, dim, frames, coarse_depth, **layer) if coarse_depth > 0 else None
        branches = (self.fine is not None) + (self.coarse is not None)
        self.fc = ReplicaLinear(replicas, branches * dim, dim) if branches else None

    def reset_parameters(self, gens: Generators) -> None:
        for module in (self.fine, self.coarse, self.fc):
            if module is not None:
                module.reset_parameters(gens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """X^v [M, B, T, D] -> X^I [M, B, T, D]."""
        parts = [branch(x) for branch in (self.fine, self.coarse) if branch is not None]
        if not parts:
            return x  # Table 3 (a): no temporal module
        return self.fc(torch.cat(parts, dim=-1))  # Eq. 5, [M, B, T, k*D] -> [M, B, T, D]
