"""The CUDA path: each stage run on a GPU agrees with the same stage on the CPU.

Skipped where torch sees no CUDA device (CI, the 2-core development machine); run on a GPU with
`python -m pytest tests/test_cuda.py`. Every test compares against the CPU, so a device-specific
bug (a tensor left on the CPU, a dtype autocast changes, a checkpoint that only loads where it was
written) fails here rather than in a user's run.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from test_train import make_planted_store
from tgdfer.augment import AugmentConfig
from tgdfer.encoders import load_encoder
from tgdfer.evaluation import forward, load_run, rescore
from tgdfer.extraction import extract
from tgdfer.frames import decode_jpegs
from tgdfer.head import HeadConfig
from tgdfer.model import build_head
from tgdfer.predict import load_predictor, predict_clip
from tgdfer.run import Replica, load_checkpoint
from tgdfer.store import FeatureStore
from tgdfer.training import TrainConfig, train, train_replicas

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL = dict(window=4, stride=2, heads=2, dim_head=8, mlp_dim=32)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return make_planted_store(tmp_path_factory.mktemp("cuda_planted") / "s.zarr", np.tile(np.arange(1, 6), 21))


@pytest.fixture(autouse=True)
def _no_tf32():
    """Compare fp32 with fp32: TF32 matmuls (a user's choice on Ampere and later) would round to 10 bits."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("visual_prompt", ["add", "prepend", "token"])
def test_head_forward_and_gradients_on_cuda_equal_the_cpu(planted, visual_prompt):
    """One head, the same weights on both devices: logits, loss and every gradient agree (Eq. 2-11)."""
    head_cfg = HeadConfig(learnable=True, visual_prompt=visual_prompt, **SMALL)
    with FeatureStore.open(planted) as store:
        cpu = build_head(head_cfg, store, torch.device("cpu"), seed=3)
        feats = torch.from_numpy(store.read_feats(rows=np.arange(12), views=0)).float()  # [12, T, D]
        labels = torch.tensor(store.clips["label"].to_numpy()[:12])
    gpu = copy.deepcopy(cpu).to("cuda")
    cpu.train(False), gpu.train(False)  # dropout off: the two devices draw different masks
    outs = {}
    for name, head, dev in (("cpu", cpu, "cpu"), ("cuda", gpu, "cuda")):
        head.zero_grad()
        out = head(feats.to(dev), labels.to(dev))
        loss = torch.nn.functional.cross_entropy(out.logits[0], labels.to(dev))  # logits [M=1, B, C]
        loss.backward()
        assert out.logits.device.type == dev
        outs[name] = (out.logits.detach().cpu(), loss.item(),
                      {k: p.grad.cpu() for k, p in head.named_parameters() if p.grad is not None})
    torch.testing.assert_close(outs["cuda"][0], outs["cpu"][0], rtol=1e-4, atol=1e-3)  # logits: cosines / 0.01
    assert outs["cuda"][1] == pytest.approx(outs["cpu"][1], rel=1e-4)
    assert outs["cuda"][2].keys() == outs["cpu"][2].keys() and outs["cpu"][2]
    for k, g in outs["cpu"][2].items():
        torch.testing.assert_close(outs["cuda"][2][k], g, rtol=1e-3, atol=1e-5 * max(1.0, float(g.abs().max())), msg=k)


def test_training_on_cuda_learns_and_its_run_rescores_on_the_cpu(planted, tmp_path):
    """Train on the GPU; the run folder then reads back on a CPU-only machine with the same numbers."""
    cfg = TrainConfig(store=str(planted), fold=1, out=str(tmp_path / "run"), epochs=6, batch_size=16,
                      milestones=(5,), device="cuda")
    res = train(HeadConfig(learnable=True, **SMALL), cfg)
    assert res.test.war > 0.6 and res.test.uar > 0.6  # chance is 1/7
    ckpt = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert all(t.device.type == "cpu" for t in ckpt["head_state"].values())  # written device-free
    again = rescore(tmp_path / "run", device="cpu")
    assert again.test.war == pytest.approx(res.test.war) and again.test.uar == pytest.approx(res.test.uar)


def test_fold_replicas_on_cuda_equal_each_fold_alone(planted, tmp_path):
    """The batched replica axis (all folds on one GPU) trains what separate runs train."""
    head = HeadConfig(learnable=False, **SMALL)
    base = TrainConfig(store=str(planted), epochs=3, batch_size=16, milestones=(), device="cuda")
    reps = [Replica(f, 0, str(tmp_path / f"together{f}")) for f in (1, 2, 3)]
    together = train_replicas(head, base, reps)
    for rep, res in zip(reps, together):
        alone = train(head, replace(base, fold=rep.fold, out=str(tmp_path / f"alone{rep.fold}")))
        # the same steps: float noise of other kernel shapes grows over epochs (0.4% after 3 seen on an H200)
        np.testing.assert_allclose(res.history["loss"].iloc[0], alone.history["loss"].iloc[0], rtol=1e-4)
        np.testing.assert_allclose(res.history["loss"], alone.history["loss"], rtol=2e-2)
        assert res.test.war == pytest.approx(alone.test.war, abs=1.5 / 21)  # one clip may flip in float noise


@pytest.mark.parametrize("precision,tol", [("fp32", 2**-9), ("bf16", 0.05)])
def test_extract_on_cuda_equals_the_cpu_store(tmp_path, clip_table, encoder_cfg, extract_config, ref, precision, tol):
    """Same frames, views and augmentation on the GPU: the store holds the CPU's features (fp16 / bf16 rounding)."""
    enc = replace(encoder_cfg, precision=precision)  # JPEGs decoded by the CPU workers (nvjpeg: the test below)
    result = extract(extract_config(tmp_path / "gpu.zarr", device="cuda", jpeg_decode="workers"), AugmentConfig(),
                     enc, clip_table, data_kind="dfew")
    assert result.ok and result.extracted == len(clip_table)
    with FeatureStore.open(tmp_path / "gpu.zarr") as s:
        feats, index = s.read_feats().astype(np.float32), s.read_frame_index()
    assert np.array_equal(index, ref["frame_index"])
    want = ref["feats"].astype(np.float32)
    cos = (feats * want).sum(-1) / (np.linalg.norm(feats, axis=-1) * np.linalg.norm(want, axis=-1))
    assert cos.min() > 1 - tol, f"{precision}: lowest cosine to the CPU store {cos.min():.5f}"


def test_end_to_end_bf16_on_cuda_fine_tunes_and_predicts_on_the_cpu(reference_store, encoder_cfg, tmp_path):
    """End-to-end under bf16 autocast on the GPU: finite losses, the tower moves, the run predicts on a CPU."""
    out = tmp_path / "e2e"
    enc = replace(encoder_cfg, precision="bf16")
    cfg = TrainConfig(store=str(reference_store), fold=1, out=str(out), epochs=2, batch_size=4, milestones=(),
                      device="cuda", seed=3, decode_workers=1, end_to_end=True, encoder_lr=0.05)
    res = train(HeadConfig(learnable=False, **SMALL), cfg, encoder=enc)
    assert np.isfinite(res.history["loss"]).all()
    ckpt = load_checkpoint(out / "last.safetensors")
    start = load_encoder(encoder_cfg).model.visual.state_dict()
    moved = [k for k, v in ckpt["encoder_state"].items() if not torch.equal(v.float(), start[k].float())]
    assert len(moved) > len(start) // 2
    assert all(v.dtype == start[k].dtype for k, v in ckpt["encoder_state"].items())  # autocast kept fp32 weights
    run = load_run(out, device="cpu")
    logits, _ = forward(run.head, run.feats[run.test])
    with FeatureStore.open(reference_store) as store:
        path = store.clips["path"].iloc[int(run.test[0])]
    pred = predict_clip(load_predictor(out, device="cpu", weights=encoder_cfg.pretrained), path)
    np.testing.assert_allclose(pred.logits, logits[0], atol=5e-2)  # bf16 features in other batch shapes; logits = cos / 0.01


def test_predict_on_cuda_equals_predict_on_the_cpu(reference_store, encoder_cfg, tmp_path):
    out = tmp_path / "run"
    train(HeadConfig(**SMALL), TrainConfig(store=str(reference_store), fold=1, out=str(out), epochs=1,
                                           batch_size=8, device="cpu"), encoder=encoder_cfg)
    with FeatureStore.open(reference_store) as store:
        path = store.clips["path"].iloc[0]
    cpu = predict_clip(load_predictor(out, device="cpu"), path)
    gpu = predict_clip(load_predictor(out, device="cuda"), path)
    np.testing.assert_allclose(gpu.probs, cpu.probs, atol=1e-3)
    np.testing.assert_allclose(gpu.influence, cpu.influence, atol=1e-3)
    assert gpu.predicted == cpu.predicted


def test_graphed_compiled_step_on_cuda_trains_what_the_eager_step_trains(planted, tmp_path):
    """train.compile = "graphs" (torch.compile, then CUDA graphs) against eager: 3 fold replicas batched,
    learnable prompts (the text tower inside the graph). Losses to 1e-4 in epoch 1 and 2e-2 over 3 (the
    float noise of other kernels grows with SGD steps, as between batched and single replicas above)."""
    import torch._dynamo

    head = HeadConfig(learnable=True, **SMALL)
    base = TrainConfig(store=str(planted), epochs=3, batch_size=16, milestones=(), device="cuda")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    runs = {}
    for mode in ("off", "graphs"):
        reps = [Replica(f, 0, str(tmp_path / f"{mode}{f}")) for f in (1, 2, 3)]
        runs[mode] = train_replicas(head, replace(base, compile=mode), reps)
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert not counters["inductor"]["cudagraph_skips"]  # captured, not run eagerly behind the compile
    for eager, graphed in zip(runs["off"], runs["graphs"]):
        np.testing.assert_allclose(graphed.history["loss"].iloc[0], eager.history["loss"].iloc[0], rtol=1e-4)
        np.testing.assert_allclose(graphed.history["loss"], eager.history["loss"], rtol=2e-2)
        assert graphed.test.war == pytest.approx(eager.test.war, abs=1.5 / 21)  # one clip may flip in float noise


def test_nvjpeg_decodes_the_cpu_pixels_within_a_few_levels(clip_table):
    """nvjpeg (batched, on the GPU) against libjpeg-turbo (the workers' decoder) on the test clips' frames.

    Their IDCT and chroma upsampling differ: bounds set before any GPU run (mean |difference| under
    1.5 of 255 levels, none over 40); tighten them to what a GPU run prints."""
    files = [f for path in clip_table["path"].iloc[:4] for f in sorted(Path(path).glob("*.jpg"))[:6]]
    data = [f.read_bytes() for f in files]
    cpu, gpu = decode_jpegs(data, device="cpu"), decode_jpegs(data, device="cuda")
    assert len(gpu) == len(cpu) == len(files) and all(g.device.type == "cuda" for g in gpu)
    diff = torch.cat([(g.cpu().int() - c.int()).abs().flatten() for g, c in zip(gpu, cpu)]).float()
    print(f"nvjpeg vs CPU over {len(files)} frames: mean |diff| {diff.mean():.3f}, max {diff.max():.0f}")
    assert all(g.shape == c.shape for g, c in zip(gpu, cpu))
    assert diff.mean() < 1.5 and diff.max() <= 40


def test_extract_with_nvjpeg_equals_the_cpu_store(tmp_path, clip_table, encoder_cfg, extract_config, ref):
    """jpeg_decode = "device" on CUDA (the default there): the same frames and views, features within
    cosine 1e-2 of the CPU store's (nvjpeg's and the CUDA resize's rounding, fp32 encoder)."""
    result = extract(extract_config(tmp_path / "nv.zarr", device="cuda", jpeg_decode="auto", workers=1),
                     AugmentConfig(), replace(encoder_cfg, precision="fp32"), clip_table, data_kind="dfew")
    assert result.ok and result.extracted == len(clip_table)
    with FeatureStore.open(tmp_path / "nv.zarr") as s:
        feats, index = s.read_feats().astype(np.float32), s.read_frame_index()
    assert np.array_equal(index, ref["frame_index"])
    want = ref["feats"].astype(np.float32)
    cos = (feats * want).sum(-1) / (np.linalg.norm(feats, axis=-1) * np.linalg.norm(want, axis=-1))
    print(f"nvjpeg store: lowest cosine to the CPU store {cos.min():.5f}, mean {cos.mean():.5f}")
    assert cos.min() > 1 - 1e-2, f"lowest cosine to the CPU store {cos.min():.5f}"
