"""The same command gives the same bytes whatever the thread count and however many replicas train together.

What used to differ (docs/training.md, Reproducibility): MKL sums some float32 products in
another order at 2 threads than at 1 (7 rows on one CPU, 1 row on another) unless `import tgdfer`
has set its strict mode, which moved the stored text embeddings (~5e-7), the learnable prompts'
projection in every step and the logits at inference (~2e-6); and a replica's last partial batch had another width
alone than when padded to a larger replica's. Replicas trained together vs alone: tests/test_train.py.
"""

import itertools
import os
import subprocess
import sys

import numpy as np
import torch
from typer.testing import CliRunner

from test_train import make_planted_store
from tgdfer.cli import app
from tgdfer.encoders import EncoderConfig, encode_texts, load_encoder
from tgdfer.evaluation import rescore
from tgdfer.prompts import build_prompt_sets
from tgdfer.run import load_checkpoint
from tgdfer.text import FrozenTextEncoder
from tgdfer.threads import MKL_STRICT, reproducible_blas


def _at_threads(n, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def test_import_asks_mkl_for_thread_independent_products_unless_the_user_chose():
    assert reproducible_blas({}) == MKL_STRICT
    assert reproducible_blas({"MKL_CBWR": "COMPATIBLE"}) == "COMPATIBLE"
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    code = "import os, sys, tgdfer; print(os.environ['MKL_CBWR'], 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == [MKL_STRICT, "False"]  # set before torch is even imported


def test_float32_products_are_the_same_bytes_at_1_and_2_threads():
    # MKL's default order depends on the thread count for some shapes, which differ by CPU (1-row
    # products on an AVX-512 Xeon, 7-row ones on an AVX2 EPYC); strict mode makes every shape equal
    gen = torch.Generator().manual_seed(0)
    for m, k, n in itertools.product([1, 2, 3, 7, 16, 21, 48], [64, 256, 768], [7, 128, 512]):
        a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        one, two = (_at_threads(t, lambda: a @ b) for t in (1, 2))
        assert torch.equal(one, two), (m, k, n)


def test_text_embeddings_are_the_same_bytes_at_1_and_2_threads():
    enc = load_encoder(EncoderConfig(model="tgdfer-tiny-vit", pretrained="none"), towers=("text",))
    frozen = FrozenTextEncoder(enc)
    for name, prompts in build_prompt_sets(None).items():  # 7 prompts a set: the row count that differed
        one, two = (_at_threads(n, lambda: encode_texts(enc, prompts)[1]) for n in (1, 2))
        assert torch.equal(one, two), name  # what the store keeps
        tokens = enc.tokenizer(prompts)
        with torch.no_grad():  # the learnable prompts' path (projection in float64)
            one, two = (_at_threads(n, lambda: frozen.encode_tokens(tokens)) for n in (1, 2))
        assert torch.equal(one, two), name


def _train_head(threads, store, out, *extra):
    """`tgdfer --threads N train-head ...` in this process; the worker's thread count is restored after."""
    before = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, ["--threads", str(threads), "train-head", "--store", str(store),
                                          "--out", str(out), "--epochs", "3", "--set", "head.learnable=true", *extra])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output


def test_one_point_gives_the_same_predictions_at_1_and_2_threads_alone_or_batched(tmp_path):
    store = make_planted_store(tmp_path / "s.zarr", np.tile(np.arange(1, 6), 21))
    # fold 1 alone at 1 thread; folds 1 and 2 as one batched run at 2 threads (-> b/fold1). In one
    # process, one after the other: what the thread count changes is torch's summation order, which
    # `--threads` sets here as in a process of its own (a process per run cost 20 s of imports).
    _train_head(1, store, tmp_path / "a", "--fold", "1")
    _train_head(2, store, tmp_path / "b", "--folds", "1,2")
    a, b = tmp_path / "a", tmp_path / "b" / "fold1"
    sa, sb = (load_checkpoint(r / "last.safetensors")["head_state"] for r in (a, b))
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    scores = [_at_threads(n, lambda: rescore(run, device="cpu")) for run in (a, b) for n in (1, 2)]
    assert len(scores[0].logits) == 21
    for s in scores[1:]:
        assert np.array_equal(s.rows, scores[0].rows)
        assert np.array_equal(s.logits, scores[0].logits)  # every clip's logits to the bit, so its prediction
        assert s.test.war == scores[0].test.war
