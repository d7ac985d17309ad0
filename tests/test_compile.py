"""`train.compile`: the training step (forward + loss, text tower included) through torch.compile.

Compiling the step's forward and backward with inductor takes 1-5 minutes on the 2-core
development machine (C++ kernels built with gcc; seconds once torch's on-disk cache holds them),
so the test is marked slow: `make test-slow` runs it, `make test` does not. The CUDA-graph path
("graphs") is tested in tests/test_cuda.py.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from test_train import make_planted_store
from tgdfer.errors import ConfigError
from tgdfer.head import HeadConfig
from tgdfer.model import build_head
from tgdfer.run import Replica, load_checkpoint
from tgdfer.store import FeatureStore
from tgdfer.training import TrainConfig, head_step, train_replicas

SMALL = dict(window=4, stride=2, heads=2, dim_head=8, mlp_dim=32)


def test_compile_setting_is_checked():
    with pytest.raises(ConfigError, match="compile"):
        TrainConfig(compile="yes")
    assert head_step("off") is head_step("off")  # one function per mode for the process


@pytest.mark.slow
def test_compiled_step_trains_what_the_eager_step_trains(tmp_path):
    """3 fold replicas batched, learnable prompts (the text tower inside the compiled step), 2 epochs.

    Inductor's CPU kernels sum in another order than eager ATen: the first epoch's losses agree to
    1e-5 (measured 1.3e-6), the second's to 1e-3 (measured 2.0e-4: logits are cosines / 0.01, so
    rounding grows with each SGD step); every weight's move over the 2 epochs to 1% of its largest.
    """
    import torch._dynamo

    store = make_planted_store(tmp_path / "s.zarr", np.tile(np.arange(1, 6), 21))
    head = HeadConfig(learnable=True, **SMALL)
    base = TrainConfig(store=str(store), epochs=2, batch_size=16, milestones=(1,), device="cpu")
    with FeatureStore.open(store) as s:
        init = {k: p.detach().clone() for k, p in build_head(head, s, torch.device("cpu"), seed=0).named_parameters()}
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    runs = {}
    for mode in ("off", "on"):
        reps = [Replica(f, 0, str(tmp_path / f"{mode}{f}")) for f in (1, 2, 3)]
        runs[mode] = train_replicas(head, replace(base, compile=mode), reps)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # the whole step, no graph break
    assert not torch._dynamo.utils.counters["graph_break"]
    for eager, compiled in zip(runs["off"], runs["on"]):
        e, c = eager.history["loss"].to_numpy(), compiled.history["loss"].to_numpy()
        np.testing.assert_allclose(c[0], e[0], rtol=1e-5)
        np.testing.assert_allclose(c, e, rtol=1e-3)
        a = load_checkpoint(eager.run / "last.safetensors")["head_state"]
        b = load_checkpoint(compiled.run / "last.safetensors")["head_state"]
        assert a.keys() == b.keys() and init.keys() <= a.keys() and "prompt.ctx" in init
        for k in init:  # every weight moved by what eager moved it (to 1% of the largest move)
            moved = a[k] - init[k]
            assert moved.abs().max() > 0, k
            torch.testing.assert_close(b[k] - init[k], moved, rtol=0, atol=1e-2 * float(moved.abs().max()), msg=k)
