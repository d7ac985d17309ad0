"""Which cached view each training clip uses in each epoch (stage 2: `train-head` on a store's views).

A store holds view 0 (the test-time view) and views 1..V-1 (augmented) of every clip. Each epoch a
training clip contributes one augmented view: `epoch_order` draws it, from the seed and the epoch
alone, so a run, its resume and the same run batched with other replicas draw the same views.
`distinct_views` is how many different ones a clip sees on average (docs/cache-study.md).
"""

from __future__ import annotations

import numpy as np


def epoch_order(rows: np.ndarray, views: int, seed: int, epoch: int,
                frames: int = 0, draw: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """This epoch's clip order and the augmented view each clip uses (depends only on seed, epoch).

    views [n] (one of 1..views-1 per clip; 0 when the store has only the test view), or with
    `frames` = T > 0, views [n, T]: an independent draw for every frame (view_mixing = "frame").
    `draw` = "random": an independent draw per clip and epoch, so views repeat (E epochs see
    (V-1)(1 - (1 - 1/(V-1))^E) distinct views on average); "cycle": each clip walks its own shuffled
    order of views 1..V-1 (a new order every V-1 epochs), so E epochs see min(E, V-1) distinct views.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(rows)
    shape = (len(order), frames) if frames else len(order)
    if views <= 1:
        return order, np.zeros(shape, dtype=np.int64)
    if draw == "cycle":
        if frames:
            raise ValueError("draw='cycle' chooses one view per clip (frames must be 0)")
        n_aug = views - 1
        turn, step = divmod(epoch - 1, n_aug)  # epochs count from 1
        # the keys of row r are draws r*n_aug .. (r+1)*n_aug - 1 of this turn's stream: a row's order does
        # not depend on how many rows the store has
        keys = np.random.default_rng([seed, turn, 0x6379636C65]).random((int(order.max()) + 1, n_aug))
        return order, np.argsort(keys[order], axis=1, kind="stable")[:, step] + 1
    return order, rng.integers(1, views, size=shape)


def distinct_views(views: int, epochs: int, draw: str = "random") -> float:
    """Expected number of distinct augmented views a clip trains on in `epochs` epochs (views = V, view 0 the test view)."""
    n_aug = views - 1
    if n_aug <= 0:
        return 0.0
    if draw == "cycle":
        return float(min(epochs, n_aug))
    return n_aug * (1.0 - (1.0 - 1.0 / n_aug) ** epochs)
