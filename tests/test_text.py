"""Frozen text tower on embeddings and the learnable prompt context (Eq. 6), both open_clip layouts."""

import pytest
import torch

from tgdfer.encoders import EncoderConfig, load_encoder
from tgdfer.errors import ConfigError, TgdferError
from tgdfer.prompts import CLASS_NAMES, DESCRIPTORS
from tgdfer.text import FrozenTextEncoder, PromptLearner

LAYOUTS = ["tgdfer-tiny-vit", "tgdfer-tiny-vit-customtext"]  # CLIP and CustomTextCLIP


@pytest.fixture(scope="module", params=LAYOUTS)
def enc(request):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return load_encoder(EncoderConfig(model=request.param, pretrained="none"), towers=("text",))


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_encode_tokens_equals_open_clip_encode_text(enc):
    text = FrozenTextEncoder(enc)
    tokens = enc.tokenizer(list(DESCRIPTORS) + ["a"])  # [P, 77], prompts of very different lengths
    with torch.no_grad():
        torch.testing.assert_close(text.encode_tokens(tokens), enc.model.encode_text(tokens), atol=1e-5, rtol=1e-5)
    assert (text.width, text.dim, text.context_length) == (64, 32, 77)


def test_cut_after_the_last_eot_equals_the_full_context(enc):
    text = FrozenTextEncoder(enc)
    tokens = enc.tokenizer(list(CLASS_NAMES))
    eot = text.eot_index(tokens)
    x = text.embed_tokens(tokens)
    with torch.no_grad():
        cut = text.encode_embeddings(x, eot)  # cut at max(eot) + 1 = 4 tokens
        full = text.encode_embeddings(x, eot, length=77)
    assert int(eot.max()) + 1 < 10
    torch.testing.assert_close(cut, full, atol=1e-5, rtol=1e-5)


def _context_of(enc, words, n):
    """Token embeddings of `words` (n tokens, without SOT/EOT) as a context [n, W]."""
    tokens = enc.tokenizer([words])
    return FrozenTextEncoder(enc).embed_tokens(tokens)[0, 1:1 + n].detach()


@pytest.mark.parametrize("class_specific", [True, False])
def test_context_set_to_real_words_equals_encoding_the_sentence(enc, class_specific):
    text = FrozenTextEncoder(enc)
    learner = PromptLearner(text, enc.tokenizer(list(CLASS_NAMES)), n_ctx=4, class_specific=class_specific)
    ctx = _context_of(enc, "a photo of a", 4)  # [4, W]
    with torch.no_grad():
        learner.ctx.copy_(ctx.expand_as(learner.ctx))
        got = learner()  # [1, C, D]
        want = enc.model.encode_text(enc.tokenizer([f"a photo of a {c}" for c in CLASS_NAMES]))
    assert got.shape == (1, len(CLASS_NAMES), 32)
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=1e-5)
    assert learner.length == int(learner.eot.max()) + 1 < 77  # the pass ran on the cut sequence


def test_gradients_reach_the_context_and_not_the_frozen_encoder(enc):
    text = FrozenTextEncoder(enc)
    learner = PromptLearner(text, enc.tokenizer(list(DESCRIPTORS)), n_ctx=8, replicas=2)
    learner.reset_parameters(_gens(0, 1))
    learner().square().sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in enc.model.parameters())
    assert [n for n, _ in learner.named_parameters()] == ["ctx"]
    assert not any(k.startswith(("_encoder", "encoder")) for k in learner.state_dict())


def test_replicas_encode_like_single_learners(enc):
    text = FrozenTextEncoder(enc)
    tokens = enc.tokenizer(list(CLASS_NAMES))
    batched = PromptLearner(text, tokens, n_ctx=3, replicas=3)
    batched.reset_parameters(_gens(4, 5, 6))
    with torch.no_grad():
        out = batched()  # [3, C, D]
        for m, seed in enumerate((4, 5, 6)):
            single = PromptLearner(text, tokens, n_ctx=3)
            single.reset_parameters(_gens(seed))
            assert torch.equal(single.ctx[0], batched.ctx[m])
            torch.testing.assert_close(out[m], single()[0], atol=1e-5, rtol=1e-5)
    assert batched.ctx.std().item() == pytest.approx(0.02, rel=0.2)  # the reference init


def test_context_that_does_not_fit_is_a_config_error(enc):
    long_prompt = " ".join(["face"] * 70)  # 70 tokens + SOT + EOT
    with pytest.raises(ConfigError, match="n_ctx.*exceeds the 77-token context"):
        PromptLearner(FrozenTextEncoder(enc), enc.tokenizer([long_prompt]), n_ctx=8)
    with pytest.raises(ConfigError, match="n_ctx"):
        PromptLearner(FrozenTextEncoder(enc), enc.tokenizer(["happy"]), n_ctx=0)


def test_encoder_without_text_tower_is_refused():
    torch.manual_seed(0)
    image_only = load_encoder(EncoderConfig(model=LAYOUTS[0], pretrained="none"), towers=("image",))
    with pytest.raises(TgdferError, match="text tower"):
        FrozenTextEncoder(image_only)


def test_moving_the_learner_moves_its_frozen_encoder():
    torch.manual_seed(0)
    own = load_encoder(EncoderConfig(model=LAYOUTS[1], pretrained="none"), towers=("text",))  # changed in place
    learner = PromptLearner(FrozenTextEncoder(own), own.tokenizer(list(CLASS_NAMES)), n_ctx=2)
    learner.reset_parameters(_gens(0))
    learner.to(torch.float64)
    assert own.model.text.token_embedding.weight.dtype == torch.float64
    assert learner().dtype == torch.float64
