"""M runs of one architecture as one batched head: the replica axis, and how state moves across it.

Every trainable tensor of a TGDFERHead carries a leading replica axis [M, ...] (tgdfer.temporal),
so one forward and one SGD step train M runs (DFEW folds x seeds) at once. This module holds
what that axis needs beyond the head itself: padding the replicas' batches to one width,
an optimiser step that leaves some replicas untouched, and slicing / stacking the head's and the
optimiser's state between an M-replica head and the 1-replica checkpoints each run folder keeps.
(Which runs exist and where their folders are: tgdfer.run.replica_runs.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .head import TGDFERHead


def pad_batches(parts: Sequence[np.ndarray], fill: int = 0, width: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-replica index arrays of different lengths [n_m, ...] -> ([M, B, ...] padded with `fill`, [M, B] mask).

    B is `width` (at least the longest part), else the longest part. A fixed width keeps a replica's
    numbers independent of the others it runs with: a float32 sum over 14 rows and over 16 rows of
    which 2 are zero come out in another order (see docs/training.md, Reproducibility).
    """
    width = max(1, width, max(len(p) for p in parts))
    out = np.full((len(parts), width, *np.shape(parts[0])[1:]), fill, dtype=np.int64)
    mask = np.zeros((len(parts), width), dtype=bool)
    for m, p in enumerate(parts):
        out[m, :len(p)], mask[m, :len(p)] = p, True
    return out, mask


def masked_step(opt: torch.optim.Optimizer, frozen: np.ndarray) -> None:
    """`opt.step()` that leaves the replicas in `frozen` ([M] bool) untouched.

    A replica with no clips at this step has zero gradients, but SGD's weight decay and momentum
    would still move it; its parameter and momentum slices are restored after the step.
    """
    if not frozen.any():
        opt.step()
        return
    saved = []
    for group in opt.param_groups:
        for p in group["params"]:
            idx = torch.as_tensor(np.flatnonzero(frozen), device=p.device)
            buf = opt.state.get(p, {}).get("momentum_buffer")
            saved.append((p, idx, p.detach()[idx].clone(), None if buf is None else buf[idx].clone()))
    opt.step()
    with torch.no_grad():
        for p, idx, value, buf in saved:
            p[idx] = value
            new = opt.state.get(p, {}).get("momentum_buffer")
            if new is not None:
                new[idx] = buf if buf is not None else 0.0  # no momentum yet: as if never stepped


def replica_head_state(head: TGDFERHead, m: int) -> dict[str, torch.Tensor]:
    """Replica m's weights as the state dict of a 1-replica head (what `evaluate` loads)."""
    stacked = {name for name, _ in head.named_parameters()}  # every parameter has the replica axis first
    return {k: v[m:m + 1].clone() if k in stacked else v for k, v in head.state_dict().items()}


def stack_head_states(head: TGDFERHead, states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """1-replica state dicts -> the state dict of an M-replica head (inverse of replica_head_state)."""
    stacked = {name for name, _ in head.named_parameters()}
    return {k: torch.cat([s[k] for s in states]) if k in stacked else v for k, v in states[0].items()}


def replica_opt_state(opt_state: dict, m: int) -> dict:
    """Replica m's slice of an optimiser state dict (momentum buffers [M, ...] -> [1, ...])."""
    state = {i: {k: v[m:m + 1].clone() if torch.is_tensor(v) and v.dim() else v for k, v in s.items()}
             for i, s in opt_state["state"].items()}
    return {"state": state, "param_groups": opt_state["param_groups"]}


def stack_opt_states(states: Sequence[dict]) -> dict:
    """1-replica optimiser state dicts -> one over stacked parameters (inverse of replica_opt_state)."""
    out = {}
    for i, s in states[0]["state"].items():
        out[i] = {k: torch.cat([st["state"][i][k] for st in states]) if torch.is_tensor(v) and v.dim() else v
                  for k, v in s.items()}
    return {"state": out, "param_groups": states[0]["param_groups"]}

