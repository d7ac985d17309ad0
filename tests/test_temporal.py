"""Multi-grained temporal network (Eq. 2-5): window indexing, frame averaging, depth 0, replica batching."""

import math

import pytest
import torch
import torch.nn.functional as F

from tgdfer.temporal import (
    CoarseTemporal,
    FineTemporal,
    MultiGrained,
    ReplicaEncoderLayer,
    ReplicaLinear,
    window_average_matrix,
    window_starts,
)

LAYER = dict(heads=2, dim_head=8, mlp_dim=16, dropout=0.0, pos_std=0.5)  # tiny encoder layers


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _make_identity(encoder):
    """Zero every residual branch's output so the encoder passes its input through unchanged."""
    with torch.no_grad():
        for layer in encoder.layers:
            for lin in (layer.proj, layer.fc2):
                lin.weight.zero_()
                lin.bias.zero_()


@pytest.mark.parametrize("frames, window, stride, starts", [
    (16, 4, 1, list(range(13))),  # paper default: N = 13 windows
    (16, 4, 3, [0, 3, 6, 9, 12]),  # (T - w) % s == 0: Eq. 3 covers everything
    (16, 4, 4, [0, 4, 8, 12]),  # non-overlapping (stride None)
    (16, 8, 3, [0, 3, 6, 8]),  # Eq. 3 gives 0, 3, 6 (frames 14, 15 uncovered): one more window at T - w
    (10, 4, 4, [0, 4, 6]),
    (4, 4, 1, [0]),
])
def test_window_starts_follow_eq3_plus_an_end_window(frames, window, stride, starts):
    assert window_starts(frames, window, stride) == starts
    n_eq3 = math.floor((frames - window) / stride) + 1
    assert starts[:n_eq3] == [i * stride for i in range(n_eq3)]


@pytest.mark.parametrize("args", [(16, 17, 1), (16, 4, 5), (16, 4, 0)])
def test_window_starts_rejects_impossible_windows(args):
    with pytest.raises(ValueError):
        window_starts(*args)


def test_window_average_matrix_averages_over_covering_windows():
    a = window_average_matrix(6, [0, 2], 4)  # windows 0..3 and 2..5
    assert a.shape == (6, 8)
    torch.testing.assert_close(a.sum(dim=1), torch.ones(6))
    assert a[0, 0] == 1.0 and a[5, 7] == 1.0  # frames in one window
    assert a[2, 2] == a[2, 4] == 0.5 and a[3, 3] == a[3, 5] == 0.5  # frames in both windows
    assert (a > 0).sum() == 8


def test_fine_module_maps_windows_back_to_frames_by_averaging():
    M, B, T, D, w, s = 2, 3, 7, 4, 4, 2  # starts 0, 2 and the end window 3
    fine = FineTemporal(M, D, T, w, s, 1, **LAYER)
    fine.reset_parameters(_gens(0, 1))
    _make_identity(fine.encoder)  # E_f = identity: X^fine_t = X_t + mean of P^f over t's windows
    x = torch.randn(M, B, T, D)
    pos = fine.pos.detach()  # [M, w, D]
    expected = torch.empty(M, B, T, D)
    for t in range(T):
        slots = [t - start for start in (0, 2, 3) if 0 <= t - start < w]
        expected[:, :, t] = x[:, :, t] + pos[:, slots].mean(dim=1)[:, None]
    torch.testing.assert_close(fine(x), expected)


def test_fine_module_only_mixes_frames_within_windows():
    fine = FineTemporal(1, 8, 16, 4, 1, 1, **LAYER)
    fine.reset_parameters(_gens(3))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 16, 8, generator=g)
    y = x.clone()
    # frame 15 is in the window starting at 12 only (w = 4, s = 1, starts 0..12). Not a constant shift of
    # its features: the pre-norm LayerNorm removes that, and frames 12-14 then differed by rounding only.
    y[:, :, 15] += torch.randn(8, generator=g)
    diff = (fine(x) - fine(y)).abs().amax(dim=(0, 1, 3))  # [T]
    assert torch.all(diff[:12] == 0) and torch.all(diff[12:] > 1e-3), diff


def test_coarse_module_adds_its_positional_embedding():
    coarse = CoarseTemporal(2, 4, 5, 1, **LAYER)
    coarse.reset_parameters(_gens(0, 1))
    _make_identity(coarse.encoder)
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(coarse(x), x + coarse.pos.detach()[:, None])  # Eq. 4 with E_c = identity


def test_replica_linear_is_one_linear_per_replica():
    lin = ReplicaLinear(3, 5, 4)
    lin.reset_parameters(_gens(0, 1, 2))
    x = torch.randn(3, 2, 6, 5)
    out = lin(x)
    for m in range(3):
        torch.testing.assert_close(out[m], F.linear(x[m], lin.weight[m].T, lin.bias[m]))
    assert lin.weight.abs().max() <= 1 / math.sqrt(5)  # nn.Linear's default bound


def _reference_layer(layer, m, x):
    """Replica m of a ReplicaEncoderLayer written out naively: x [N, S, D]."""
    def ln(norm, v):
        return F.layer_norm(v, v.shape[-1:], norm.weight[m], norm.bias[m])

    H, dh = layer.heads, layer.dim_head
    h = ln(layer.norm1, x)
    q, k, v = (h @ layer.qkv.weight[m]).split(H * dh, dim=-1)
    q, k, v = (t.reshape(*t.shape[:2], H, dh).transpose(1, 2) for t in (q, k, v))  # [N, H, S, dh]
    attn = (q @ k.transpose(-1, -2) / math.sqrt(dh)).softmax(-1) @ v
    attn = attn.transpose(1, 2).reshape(*x.shape[:2], H * dh)
    x = x + attn @ layer.proj.weight[m] + layer.proj.bias[m]
    h = F.gelu(ln(layer.norm2, x) @ layer.fc1.weight[m] + layer.fc1.bias[m], approximate="tanh")
    return x + h @ layer.fc2.weight[m] + layer.fc2.bias[m]


def test_encoder_layer_matches_a_naive_per_replica_layer():
    layer = ReplicaEncoderLayer(3, 8, heads=2, dim_head=4, mlp_dim=16, dropout=0.0)
    layer.reset_parameters(_gens(0, 1, 2))
    with torch.no_grad():  # non-trivial norms so a mixed-up replica would show
        layer.norm1.weight.uniform_(0.5, 1.5)
        layer.norm2.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 4, 5, 8)
    out = layer(x)
    for m in range(3):
        torch.testing.assert_close(out[m], _reference_layer(layer, m, x[m]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fine_depth, coarse_depth, fc_in, prefixes", [
    (1, 1, 16, {"fine", "coarse", "fc"}),
    (0, 2, 8, {"coarse", "fc"}),
    (2, 0, 8, {"fine", "fc"}),
    (0, 0, None, set()),
])
def test_depth_zero_removes_a_module(fine_depth, coarse_depth, fc_in, prefixes):
    net = MultiGrained(1, 8, 16, window=4, stride=1, fine_depth=fine_depth, coarse_depth=coarse_depth, **LAYER)
    net.reset_parameters(_gens(0))
    names = {n for n, _ in net.named_parameters()}
    assert {n.split(".")[0] for n in names} == prefixes
    if fine_depth:
        assert len(net.fine.encoder.layers) == fine_depth
    if coarse_depth:
        assert len(net.coarse.encoder.layers) == coarse_depth
    x = torch.randn(1, 2, 16, 8)
    if fc_in is None:
        assert net(x) is x  # Table 3 (a): X^I = X^v
    else:
        assert net.fc.weight.shape == (1, fc_in, 8) and net(x).shape == x.shape


def test_replicas_start_like_single_models_with_their_seeds():
    kw = dict(window=4, stride=2, fine_depth=1, coarse_depth=2, **LAYER)
    batched = MultiGrained(3, 8, 16, **kw)
    batched.reset_parameters(_gens(5, 6, 7))
    for m, seed in enumerate((5, 6, 7)):
        single = MultiGrained(1, 8, 16, **kw)
        single.reset_parameters(_gens(seed))
        for (name, p), q in zip(batched.named_parameters(), single.parameters()):
            assert torch.equal(p[m], q[0]), name
    assert not torch.equal(batched.coarse.pos[0], batched.coarse.pos[1])
