"""TG-DFER head: per-equation checks (Eq. 7-12), every Table 3/4/5 variant, replica equivalence, config errors."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tgdfer.encoders import EncoderConfig, encode_texts, load_encoder
from tgdfer.errors import ConfigError
from tgdfer.head import FINE_PROMPT_SETS, POOLINGS, HeadConfig, TGDFERHead, frame_influence
from tgdfer.prompts import PROMPT_SETS
from tgdfer.text import FrozenTextEncoder

D, T, C = 32, 16, 7
TINY = HeadConfig(heads=2, dim_head=8, mlp_dim=32)  # small encoder layers, paper defaults elsewhere


@pytest.fixture(scope="module")
def encoder():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return load_encoder(EncoderConfig(model="tgdfer-tiny-vit", pretrained="none"), towers=("text",))


@pytest.fixture(scope="module")
def text(encoder):
    """Prompt sets as the store returns them: tokens [P, 77] int32, emb [P, D] float32 (numpy)."""
    out = {}
    for name, prompts in PROMPT_SETS.items():
        tokens, emb = encode_texts(encoder, list(prompts))
        out[name] = (tokens.numpy().astype(np.int32), emb.numpy())
    return out


@pytest.fixture(scope="module")
def text_encoder(encoder):
    return FrozenTextEncoder(encoder)


def _head(text, text_encoder=None, replicas=1, seeds=None, **changes):
    cfg = dataclasses.replace(TINY, **changes)
    return TGDFERHead(cfg, dim=D, frames=T, classes=C, text=text,
                      text_encoder=text_encoder if cfg.needs_text_encoder else None, replicas=replicas,
                      seeds=seeds if seeds is not None else list(range(replicas)))


def _feats(M, B, seed=0):
    return torch.randn(M, B, T, D, generator=torch.Generator().manual_seed(seed))


# -- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("window", 0), ("stride", 0), ("stride", 5), ("fine_depth", -1), ("coarse_depth", 1.5), ("heads", 0),
    ("dropout", 1.0), ("tau", 0.0), ("n_ctx", -1), ("text_prompt", "words"), ("visual_prompt", "append"),
    ("pooling", "median"), ("topk", 0), ("coarse_text", ""),
])
def test_impossible_config_values_name_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        HeadConfig(**{field: value})
    assert e.value.field == field


def test_learnable_prompts_need_context_tokens_but_fixed_ones_do_not():
    with pytest.raises(ConfigError, match="n_ctx"):
        HeadConfig(n_ctx=0)
    assert HeadConfig(n_ctx=0, learnable=False).fine_text == "class_sentences"


@pytest.mark.parametrize("changes, field", [({"window": 17}, "window"), ({"pooling": "topk", "topk": 17}, "topk")])
def test_windows_longer_than_the_clip_are_refused(text, changes, field):
    with pytest.raises(ConfigError) as e:
        _head(text, learnable=False, **changes)
    assert e.value.field == field


def test_missing_prompt_set_and_missing_encoder_are_config_errors(text, text_encoder):
    with pytest.raises(ConfigError, match="'descriptors'") as e:
        _head({k: v for k, v in text.items() if k != "descriptors"}, learnable=False, text_prompt="descriptors")
    assert e.value.field == "text_prompt"
    with pytest.raises(ConfigError) as e:
        _head(text, learnable=False, coarse_text="class_names_v2")
    assert e.value.field == "coarse_text"
    with pytest.raises(ConfigError, match="text_encoder=FrozenTextEncoder") as e:
        TGDFERHead(TINY, dim=D, frames=T, classes=C, text=text, text_encoder=None)
    assert e.value.field == "learnable"


def test_fine_prompt_sets_per_variant():
    assert {k: HeadConfig(text_prompt=k[0], learnable=k[1]).fine_text for k in FINE_PROMPT_SETS} == {
        ("class", True): "class_names", ("class", False): "class_sentences",
        ("descriptors", True): "descriptors", ("descriptors", False): "descriptors"}


# -- equations on hand-made tensors ------------------------------------------------------------------


def test_eq8_alignment_is_cosine_over_tau(text):
    head = _head(text, learnable=False, tau=0.5)
    e0, e1 = torch.eye(D)[0], torch.eye(D)[1]
    xi = torch.stack([e0, 3 * e1, e0 + e1])[None, None]  # [1, 1, 3, D]
    fine = torch.stack([e0, e1] + [torch.eye(D)[2]] * (C - 2))[None]  # [1, C, D], unit rows
    a = head.alignment(xi, fine)[0, 0, :, :2]
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(a, torch.tensor([[1.0, 0.0], [0.0, 1.0], [s, s]]) / 0.5)


def test_eq7_visual_prompt_weights_frames_by_softmax_over_time_and_has_unit_norm():
    xi = torch.randn(1, 2, 4, D)
    align = torch.zeros(1, 2, 4, 3)
    align[0, 0, 2, 0] = 1e4  # clip 0, class 0: all weight on frame 2
    vp = TGDFERHead.visual_prompt(xi, align)  # [1, 2, 3, D]
    torch.testing.assert_close(vp[0, 0, 0], F.normalize(xi[0, 0, 2], dim=-1))
    torch.testing.assert_close(vp[0, 1, 1], F.normalize(xi[0, 1].mean(0), dim=-1))  # uniform weights: the mean
    torch.testing.assert_close(vp.norm(dim=-1), torch.ones(1, 2, 3))


def test_eq9_10_enhanced_label_adds_the_visual_prompt_then_fuses_with_the_coarse_prompt(text):
    head = _head(text, learnable=False, visual_prompt="add")
    fine, vp = head.fine_prompt(), F.normalize(torch.randn(1, 3, C, D), dim=-1)
    coarse = F.normalize(torch.as_tensor(text["class_sentences"][1]), dim=-1)
    torch.testing.assert_close(head.enhanced_label(fine, vp), head.fusion(fine[:, None] + vp) + coarse)
    with torch.no_grad():
        head.fusion[2].weight.zero_()
        head.fusion[2].bias.zero_()
    torch.testing.assert_close(head.enhanced_label(fine, vp), coarse.expand(1, 3, C, D))  # MLP(.) = 0: X~ = X^CP


def test_eq11_frame_and_bag_scores(text):
    head = _head(text, learnable=False, fine_depth=0, coarse_depth=0, tau=0.1)  # X^I = X^v
    x = _feats(1, 3)
    out = head(x)
    fine = head.fine_prompt()
    label = head.enhanced_label(fine, head.visual_prompt(x, head.alignment(x, fine)))  # [1, 3, C, D]
    want = torch.einsum("btd,bcd->btc", F.normalize(x[0], dim=-1), F.normalize(label[0], dim=-1)) / 0.1
    torch.testing.assert_close(out.frame_logits[0], want)
    torch.testing.assert_close(out.logits, out.frame_logits.mean(dim=2))  # default pooling: mean over frames


def test_pooling_functions():
    s = torch.tensor([[[[1.0, 0.0], [3.0, 0.0], [2.0, 6.0]]]])  # [M=1, B=1, T=3, C=2]
    assert POOLINGS["mean"](s, 2).tolist() == [[[2.0, 2.0]]]
    assert POOLINGS["max"](s, 2).tolist() == [[[3.0, 6.0]]]
    assert POOLINGS["topk"](s, 2).tolist() == [[[2.5, 3.0]]]
    w = torch.tensor([1.0, 3.0, 2.0]).softmax(0)
    torch.testing.assert_close(POOLINGS["attention"](s, 2)[0, 0, 0], (w * torch.tensor([1.0, 3.0, 2.0])).sum())


def test_similarity_influence_is_min_max_normalised_target_class_score():
    s = torch.tensor([[[[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]]]])  # [1, 1, 3, 2]
    torch.testing.assert_close(frame_influence(s, torch.tensor([[0]]), "similarity"),
                               torch.tensor([[[0.0, 1.0, 0.5]]]))
    assert frame_influence(s, torch.tensor([[1]]), "similarity").tolist() == [[[0.0, 0.0, 0.0]]]  # flat: no NaN


def test_relative_influence_is_the_class_score_minus_its_mean_over_classes():
    s = torch.tensor([[[[1.0, 5.0], [3.0, 5.0], [2.0, 9.0]]]])  # [1, 1, 3, 2]
    # class 0 minus the frame's mean: -2, -1, -3.5 -> min-max 0.6, 1, 0 (similarity would give 0, 1, 0.5)
    torch.testing.assert_close(frame_influence(s, torch.tensor([[0]])), torch.tensor([[[0.6, 1.0, 0.0]]]))
    assert frame_influence(s, torch.tensor([[0]]), "relative").equal(frame_influence(s, torch.tensor([[0]])))
    # class 1: +2, +1, +3.5 -> 0.4, 0, 1, where the similarity influence is flat for frames 0 and 1
    torch.testing.assert_close(frame_influence(s, torch.tensor([[1]])), torch.tensor([[[0.4, 0.0, 1.0]]]))


def test_relative_influence_ignores_what_a_frame_adds_to_every_class_and_similarity_does_not():
    torch.manual_seed(0)
    s = torch.randn(2, 3, 6, 7)  # [M, B, T, C]
    shift = 10 * torch.randn(2, 3, 6, 1)  # one constant per frame, added to all classes: the bag softmax ignores it
    target = torch.randint(0, 7, (2, 3))
    torch.testing.assert_close(frame_influence(s + shift, target), frame_influence(s, target), atol=1e-5, rtol=0)
    moved = (frame_influence(s + shift, target, "similarity") - frame_influence(s, target, "similarity")).abs()
    assert moved.max() > 0.3


def test_unknown_influence_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="influence.*relative, similarity"):
        frame_influence(torch.zeros(1, 1, 3, 2), torch.tensor([[0]]), "raw")


def test_influence_follows_the_given_or_the_predicted_class(text):
    head = _head(text, learnable=False)
    x = _feats(1, 4)
    out = head(x)
    torch.testing.assert_close(out.influence, frame_influence(out.frame_logits, out.logits.argmax(-1)))
    given = head(x, target=torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(given.influence, frame_influence(out.frame_logits, torch.tensor([[0, 1, 2, 3]])))
    assert given.influence.amin(dim=2).eq(0).all() and given.influence.amax(dim=2).eq(1).all()


def test_visual_prompt_none_vs_add(text):
    x = _feats(1, 3)
    none, add = (_head(text, learnable=False, visual_prompt=v, seeds=[4]) for v in ("none", "add"))
    out_none, out_add = none(x), add(x)
    assert not torch.allclose(out_none.logits, out_add.logits)
    torch.testing.assert_close(out_none.alignment, out_add.alignment)  # same X^I and X^FP: A_I agrees
    assert none.enhanced_label(none.fine_prompt(), None).shape == (1, 1, C, D)  # one X~ for every clip
    y = x.clone()
    y[0, 1] += 1.0  # another clip changes: with "none" clip 0's scores do not move, with "add" neither
    torch.testing.assert_close(none(y).logits[0, 0], out_none.logits[0, 0])
    torch.testing.assert_close(add(y).logits[0, 0], out_add.logits[0, 0])


# -- every ablation variant ----------------------------------------------------------------------------

TABLE3 = [dict(fine_depth=f, coarse_depth=c) for f, c in
          [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (1, 7), (7, 1), (7, 7)]]
TABLE4 = [dict(stride=s, window=w) for s, w in
          [(None, 2), (None, 4), (None, 8), (1, 2), (1, 4), (1, 8), (2, 4), (2, 8), (3, 4)]]
TABLE5 = [dict(text_prompt=t, learnable=lrn, visual_prompt=v)
          for lrn in (False, True) for t in ("class", "descriptors") for v in ("none", "add", "prepend", "token")]
OTHERS = [dict(pooling=p) for p in ("max", "topk", "attention")] + [dict(class_specific_ctx=False, fusion_dim=8)]


def _variant_id(changes):
    return ",".join(f"{k}={v}" for k, v in changes.items())


@pytest.mark.parametrize("changes", TABLE3 + TABLE4 + TABLE5 + OTHERS, ids=_variant_id)
def test_variant_builds_and_gradients_reach_exactly_the_trainable_parameters(text, text_encoder, changes):
    head = _head(text, text_encoder, replicas=2, **changes)
    out = head(_feats(2, 3))
    assert out.logits.shape == (2, 3, C) and out.frame_logits.shape == (2, 3, T, C)
    assert out.influence.shape == (2, 3, T) and out.alignment.shape == (2, 3, T, C)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.frame_logits).all()
    F.cross_entropy(out.logits.flatten(0, 1), torch.tensor([0, 3, 6, 1, 2, 5])).backward()
    for name, p in head.named_parameters():
        assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in text_encoder.parameters())
    groups = head.param_groups()
    assert [id(p) for p in groups["prompt"]] == ([id(head.prompt.ctx)] if head.cfg.learnable else [])
    assert len(groups["prompt"]) + len(groups["head"]) == len(list(head.parameters()))
    if not head.cfg.needs_text_encoder:
        assert head.prompt is None  # built with text_encoder=None: fixed prompts never run the encoder


def test_stride_none_is_non_overlapping_windows(text):
    head = _head(text, learnable=False, stride=None, window=4)
    assert head.temporal.fine.index[:, 0].tolist() == [0, 4, 8, 12]


# -- replicas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [{}, dict(visual_prompt="prepend", class_specific_ctx=False,
                                              text_prompt="descriptors"), dict(visual_prompt="token"),
                                     dict(visual_prompt="token", learnable=False)], ids=_variant_id)
def test_three_replicas_equal_three_single_heads_forward_and_gradients(text, text_encoder, changes):
    seeds = [11, 22, 33]
    x, y = _feats(3, 4, seed=1), torch.tensor([[0, 1, 2, 3], [4, 5, 6, 0], [1, 1, 2, 2]])
    batched = _head(text, text_encoder, replicas=3, seeds=seeds, **changes)
    out = batched(x)
    sum(F.cross_entropy(out.logits[m], y[m]) for m in range(3)).backward()
    for m, seed in enumerate(seeds):
        single = _head(text, text_encoder, seeds=[seed], **changes)
        one = single(x[m:m + 1])
        torch.testing.assert_close(one.logits[0], out.logits[m], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(one.influence[0], out.influence[m], atol=1e-4, rtol=1e-4)
        F.cross_entropy(one.logits[0], y[m]).backward()
        for (name, p), q in zip(batched.named_parameters(), single.parameters()):
            torch.testing.assert_close(q.grad[0], p.grad[m], atol=1e-4, rtol=1e-3, msg=name)


def test_seeds_fix_the_init(text, text_encoder):
    a, b, c = (_head(text, text_encoder, replicas=2, seeds=s) for s in ([1, 2], [1, 2], [1, 3]))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert all(torch.equal(p[0], q[0]) and not torch.equal(p[1], q[1])
               for (n, p), q in zip(a.named_parameters(), c.parameters()) if "norm" not in n)
    with pytest.raises(ConfigError, match="2 seeds for 3 replicas"):
        _head(text, text_encoder, replicas=3, seeds=[1, 2])


def test_clip_batch_without_replica_axis_is_shared_by_all_replicas(text):
    head = _head(text, learnable=False, replicas=2)
    x = _feats(1, 3)[0]  # [B, T, D]
    torch.testing.assert_close(head(x).logits, head(x.expand(2, -1, -1, -1)).logits)
    torch.testing.assert_close(head(x.half()).logits, head(x.half().float()).logits)  # store features are float16
    with pytest.raises(ValueError, match=r"expected \[2, B, 16, 32\]"):
        head(torch.randn(2, 3, 8, D))


def test_state_dict_round_trip_without_the_text_encoder(text, text_encoder):
    head = _head(text, text_encoder, replicas=2, seeds=[1, 2])
    assert not any("transformer" in k or "token_embedding" in k for k in head.state_dict())
    other = _head(text, text_encoder, replicas=2, seeds=[5, 6])
    other.load_state_dict(head.state_dict())
    x = _feats(2, 3)
    torch.testing.assert_close(other(x).logits, head(x).logits)


@pytest.mark.parametrize("learnable", [False, True])
def test_token_visual_prompt_is_a_text_encoder_token_per_clip_and_class(text, text_encoder, learnable):
    """visual_prompt "token" (VPT's reading of "Prepend"): X^hat_bk = F_t([SOT, W V^P_bk, ctx_k, Tok(y'_k), EOT])."""
    head = _head(text, text_encoder, learnable=learnable, visual_prompt="token")
    x = head.forward_features(_feats(1, 2))
    fine = head.fine_prompt()
    vp = head.visual_prompt(x, head.alignment(x, fine))  # [1, 2, C, D]
    prompt = head.prompt if learnable else head.fixed_text
    tokens = prompt.embeddings(head.vp_token(vp).unsqueeze(3))  # [1, 2, C, L, W]
    assert tokens.shape[:3] == (1, 2, C)
    torch.testing.assert_close(tokens[0, 1, :, 1], head.vp_token(vp)[0, 1])  # the token right after SOT
    by_hand = text_encoder.encode_embeddings(tokens[0, 1], prompt.eot + 1)  # clip 1, every class: [C, D]
    label = head.enhanced_label(fine, vp)  # Eq. 10 on X^hat from the text encoder
    expected = head.fusion(F.normalize(by_hand, dim=-1)[None, None]) + F.normalize(head.coarse, dim=-1)
    torch.testing.assert_close(label[0, 1], expected[0, 0], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(label[0, 0], label[0, 1])  # each clip its own label features
    with pytest.raises(ConfigError, match="visual_prompt"):
        TGDFERHead(dataclasses.replace(TINY, learnable=False, visual_prompt="token"), dim=D, frames=T, classes=C,
                   text=text)
