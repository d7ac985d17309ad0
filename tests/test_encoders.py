"""The open_clip loader: tiny configs, weights files round-trip, QuickGELU decisions, offline errors."""

import dataclasses
import hashlib
import logging
import warnings

import pytest
import torch

from tgdfer.encoders import (
    MODEL_CONFIG_DIR,
    EncoderConfig,
    WeightsSource,
    decide_quick_gelu,
    encode_images,
    encode_texts,
    load_encoder,
    register_model_configs,
)
from tgdfer.errors import ConfigError, TgdferError

TINY = "tgdfer-tiny-vit"  # CLIP layout
TINY_CUSTOM = "tgdfer-tiny-vit-customtext"  # CustomTextCLIP layout (text tower in model.text)
OPENAI_VITB32_SHA = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"  # from open_clip's URL


def _random(model=TINY, **kw):
    torch.manual_seed(0)
    return load_encoder(EncoderConfig(model=model, pretrained="none", **kw))


def _pixels(n=3, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))  # [N, 3, S, S]


@pytest.mark.parametrize("name", [TINY, TINY_CUSTOM])
def test_random_tiny_encoder_shapes_and_fingerprint(name, caplog):
    with caplog.at_level(logging.WARNING, logger="tgdfer.encoders"):
        enc = _random(name)
    assert "RANDOM weights" in caplog.text
    assert (enc.image_size, enc.embed_dim, enc.context_length) == (32, 32, 77)
    assert len(enc.mean) == len(enc.std) == 3
    assert not enc.model.training
    assert not any(p.requires_grad for p in enc.model.parameters())
    feats = encode_images(enc, _pixels())
    assert feats.shape == (3, 32) and feats.dtype == torch.float32
    tokens, emb = encode_texts(enc, ["happiness", "a face showing fear."])
    assert tokens.shape == (2, 77) and tokens.dtype == torch.int64
    assert emb.shape == (2, 32) and emb.dtype == torch.float32
    assert tokens[0, 0] == enc.tokenizer.sot_token_id
    assert enc.fingerprint == {"model": name, "pretrained": "none", "weights_sha256": None, "quick_gelu": False,
                               "precision": "fp32", "open_clip_version": enc.fingerprint["open_clip_version"]}


@pytest.mark.parametrize("name", [TINY, TINY_CUSTOM])
def test_encode_matches_open_clip_directly(name):
    enc = _random(name)
    x = _pixels()
    tokens, emb = encode_texts(enc, ["sadness", "anger"])
    with torch.no_grad():
        assert torch.equal(encode_images(enc, x), enc.model.encode_image(x))
        assert torch.equal(emb, enc.model.encode_text(tokens))
    feats = encode_images(enc, x)
    feats += 1  # a normal tensor, not an inference tensor: callers may modify it
    assert not feats.is_inference()


def test_cpu_images_go_through_the_tower_in_chunks_with_the_same_features(monkeypatch):
    """enc.cpu_batch images per forward (a CPU's faster batch): each image's feature is the one the
    whole batch in one forward gives, to float32 rounding, and every image is encoded exactly once."""
    enc = dataclasses.replace(_random(TINY), cpu_batch=7)
    x = torch.randn(23, 3, enc.image_size, enc.image_size)
    seen = []
    forward = enc.model.encode_image
    monkeypatch.setattr(enc.model, "encode_image", lambda px: seen.append(len(px)) or forward(px))
    chunked = encode_images(enc, x)
    with torch.no_grad():
        whole = forward(x)
    assert seen == [7, 7, 7, 2] and chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert encode_images(enc, x[:0]).shape == (0, whole.shape[1])


def test_the_cpu_batch_keeps_the_largest_activation_within_the_budget():
    """The tiny ViT's largest module output is its MLP's hidden layer: (32/16)^2 + 1 = 5 tokens x 256
    = 5,120 bytes an image in float32; the batch is the largest power of two <= 128 within the budget."""
    from tgdfer.encoders import cpu_image_batch

    enc = _random(TINY)
    assert enc.cpu_batch == 128  # 128 x 5 KiB is far under 24 MiB
    visual = enc.model.visual
    assert cpu_image_batch(visual, enc.image_size, budget=5120 * 10) == 8
    assert cpu_image_batch(visual, enc.image_size, budget=5120 * 16) == 16  # exactly at the budget
    assert cpu_image_batch(visual, enc.image_size, budget=5120 * 16 - 1) == 8
    assert cpu_image_batch(visual, enc.image_size, budget=100) == 1
    assert cpu_image_batch(visual, enc.image_size, budget=5120 * 1000, most=32) == 32
    assert not any(m._forward_hooks for m in visual.modules())  # the probe's hooks are gone
    text_only = load_encoder(EncoderConfig(model=TINY, pretrained="none"), towers=("text",))
    assert text_only.cpu_batch == 128  # no image tower, nothing to probe


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_file_round_trip_gives_identical_features(tmp_path, suffix, caplog):
    enc = _random()
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pt":
        torch.save(enc.model.state_dict(), path)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(path))
    torch.manual_seed(123)  # a different random init: identical features prove the file was loaded
    with caplog.at_level(logging.WARNING, logger="tgdfer.encoders"):
        again = load_encoder(EncoderConfig(model=TINY, pretrained=str(path)))
    x = _pixels()
    assert torch.equal(encode_images(again, x), encode_images(enc, x))
    assert torch.equal(encode_texts(again, ["fear"])[1], encode_texts(enc, ["fear"])[1])
    fp = again.fingerprint
    assert fp["pretrained"] == "file"
    assert fp["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert fp["quick_gelu"] is False
    assert "quick_gelu=False" in caplog.text and "set quick_gelu=true" in caplog.text  # decision logged loudly


@pytest.mark.parametrize("name", [TINY, TINY_CUSTOM])
def test_a_model_loaded_from_a_file_skips_random_init_and_equals_one_built_in_full(tmp_path, name):
    # load_encoder builds a model it loads from a file without drawing open_clip's random init first; every
    # tensor the model holds (parameters, persistent and non-persistent buffers) must equal those of a model
    # built in full, initialised randomly, then loaded from the same state dict
    from safetensors.torch import save_file

    from tgdfer.encoders import _SkipRandomInit
    from tgdfer.weights import load_into

    with _SkipRandomInit():
        drawn = torch.zeros(4).normal_()
        layer = torch.nn.Linear(3, 2)
    assert torch.equal(drawn, torch.zeros(4))  # skipped: the tensor kept its values
    assert layer.weight.shape == (2, 3)

    enc = _random(name)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(path))
    torch.manual_seed(5)
    import open_clip
    full = open_clip.create_model(name, pretrained=None)  # random init drawn, then replaced
    load_into(full, dict(enc.model.state_dict()))
    loaded = load_encoder(EncoderConfig(model=name, pretrained=str(path))).model
    ours = {**dict(loaded.named_parameters()), **dict(loaded.named_buffers())}
    theirs = {**dict(full.named_parameters()), **dict(full.named_buffers())}
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_openai_style_torchscript_archive_gets_quick_gelu(tmp_path, caplog):
    """OpenAI ships TorchScript archives trained with QuickGELU; a plain model name must still get it."""
    import open_clip

    register_model_configs()
    torch.manual_seed(0)
    ref = open_clip.create_model(TINY, quick_gelu=True).eval()
    mask = ref._buffers.pop("attn_mask")  # OpenAI's archives keep the causal mask out of the state dict
    ref.attn_mask = mask
    path = tmp_path / "clip-checkpoint.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, OpenAI's files are not
        torch.jit.save(torch.jit.script(ref), str(path))
    with caplog.at_level(logging.WARNING, logger="tgdfer.encoders"):
        enc = load_encoder(EncoderConfig(model=TINY, pretrained=str(path)))
    assert enc.fingerprint["quick_gelu"] is True
    assert "TorchScript" in enc.quick_gelu_reason and "quick_gelu=True" in caplog.text
    x = _pixels()
    with torch.no_grad():
        expected = ref.encode_image(x)
    torch.testing.assert_close(encode_images(enc, x), expected, rtol=1e-5, atol=1e-6)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tgdfer.encoders"):
        wrong = load_encoder(EncoderConfig(model=TINY, pretrained=str(path), quick_gelu=False))
    assert "set explicitly" in wrong.quick_gelu_reason and "will not match" in caplog.text
    assert (encode_images(wrong, x) - expected).abs().max() > 1e-3  # nn.GELU: silently different features


@pytest.mark.parametrize(
    "model, src, expected, reason",
    [
        # open_clip 3.3 only warns for ViT-B-32 + "openai"; tgdfer must switch QuickGELU on itself
        ("ViT-B-32", WeightsSource("tag", tag="openai"), True, "ViT-B-32/openai has quick_gelu=True"),
        ("ViT-B-32", WeightsSource("tag", tag="laion2b_s34b_b79k"), False, "quick_gelu=False"),
        ("ViT-B-32-quickgelu", WeightsSource("none"), True, "model config ViT-B-32-quickgelu"),
        ("ViT-B-32", WeightsSource("none"), False, "random weights"),
        ("ViT-B-32", WeightsSource("file", path="/w/x.pt", sha256=OPENAI_VITB32_SHA), True,
         "ViT-B-32/openai checkpoint"),
        ("ViT-B-32", WeightsSource("file", path="/w/x.pt", sha256="d867053b" + "0" * 56), True, "laion400m_e31"),
        ("ViT-B-32", WeightsSource("file", path="/w/ViT-B-32.pt", sha256="ab" * 32), True, "OpenAI's release name"),
        ("ViT-B-32", WeightsSource("file", path="/hf/models--timm--vit_base_patch32_clip_224.openai/snapshots/1/"
                                   "open_clip_pytorch_model.bin", sha256="ab" * 32), True, "Hugging Face cache"),
        ("ViT-B-32", WeightsSource("file", path="/w/my-quickgelu-run.pt", sha256="ab" * 32), True, "says quickgelu"),
        ("ViT-B-32", WeightsSource("file", path="/w/finetuned.bin", sha256="ab" * 32), False, "set quick_gelu=true"),
        ("ViT-B-32", WeightsSource("file", path="/w/finetuned.bin", sha256="ab" * 32, torchscript=True), True,
         "TorchScript"),
    ],
)
def test_decide_quick_gelu(model, src, expected, reason):
    decided, why = decide_quick_gelu(model, src)
    assert decided is expected
    assert reason in why


def test_explicit_quick_gelu_wins_and_warns_on_conflict(caplog):
    with caplog.at_level(logging.WARNING, logger="tgdfer.encoders"):
        assert decide_quick_gelu("ViT-B-32", WeightsSource("tag", tag="openai"), explicit=False)[0] is False
    assert "will not match" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tgdfer.encoders"):
        assert decide_quick_gelu("ViT-B-32", WeightsSource("none"), explicit=True)[0] is True
    assert "will not match" in caplog.text  # config has no quick_gelu: still a conflict worth a warning


def _act(enc):
    return type(enc.model.visual.transformer.resblocks[0].mlp.gelu).__name__


def test_quick_gelu_setting_reaches_the_built_model(tmp_path):
    import json

    import open_clip

    assert _act(_random()) == "GELU"
    assert _act(load_encoder(EncoderConfig(model=TINY, pretrained="none", quick_gelu=True))) == "QuickGELU"
    # a *-quickgelu config switched off explicitly must build nn.GELU (force_quick_gelu cannot do that)
    tiny = json.loads((MODEL_CONFIG_DIR / f"{TINY}.json").read_text())
    (tmp_path / "tgdfer-test-tiny-quickgelu.json").write_text(json.dumps({**tiny, "quick_gelu": True}))
    open_clip.add_model_config(tmp_path)
    assert _act(load_encoder(EncoderConfig(model="tgdfer-test-tiny-quickgelu", pretrained="none"))) == "QuickGELU"
    off = load_encoder(EncoderConfig(model="tgdfer-test-tiny-quickgelu", pretrained="none", quick_gelu=False))
    assert _act(off) == "GELU" and off.fingerprint["quick_gelu"] is False


def test_failed_download_offline_raises_with_local_file_hint(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: patch it too
    cfg = EncoderConfig(model="ViT-B-32", pretrained="openai", cache_dir=str(tmp_path))  # empty cache
    with pytest.raises(TgdferError, match=r"could not download weights for ViT-B-32/openai") as info:
        load_encoder(cfg)
    assert "--pretrained /path/to/ViT-B-32.pt" in str(info.value)
    assert ".safetensors" in str(info.value)


def test_unknown_pretrained_and_model_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="pretrained: .*missing.pt.*openai") as info:
        load_encoder(EncoderConfig(model="ViT-B-32", pretrained=str(tmp_path / "missing.pt")))
    assert info.value.field == "pretrained"
    with pytest.raises(ConfigError, match="unknown open_clip model 'ViT-Q-99'"):
        load_encoder(EncoderConfig(model="ViT-Q-99", pretrained="none"))
    with pytest.raises(ConfigError, match="precision"):
        EncoderConfig(precision="fp64")
    with pytest.raises(ConfigError, match="towers"):
        load_encoder(EncoderConfig(model=TINY, pretrained="none"), towers=("audio",))


def test_broken_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(TgdferError, match=r"broken\.pt: cannot read it as weights"):
        load_encoder(EncoderConfig(model=TINY, pretrained=str(bad)))
    wrong_layout = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(3)}, wrong_layout)
    with pytest.raises(TgdferError, match="other.pt"):
        load_encoder(EncoderConfig(model=TINY, pretrained=str(wrong_layout)))


def test_bf16_autocast_on_cpu_is_close_to_fp32():
    enc = _random()
    x = _pixels(4)
    ref = encode_images(enc, x)
    low = encode_images(dataclasses.replace(enc, precision="bf16"), x)
    assert low.dtype == torch.float32
    assert not torch.equal(low, ref)  # autocast really ran in bf16
    rel = (low - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert rel.max() < 0.05
    _, emb_ref = encode_texts(enc, ["disgust"])
    _, emb_low = encode_texts(dataclasses.replace(enc, precision="bf16"), ["disgust"])
    assert ((emb_low - emb_ref).norm() / emb_ref.norm()) < 0.05


def test_fp16_on_cpu_falls_back_to_bf16(caplog):
    with caplog.at_level(logging.WARNING, logger="tgdfer.encoders"):
        enc = _random(precision="fp16")
    assert enc.precision == "bf16" and enc.fingerprint["precision"] == "bf16"
    assert "using bf16" in caplog.text


@pytest.mark.parametrize("name", [TINY, TINY_CUSTOM])
def test_single_tower_loading(name):
    full = _random(name)
    text_only = load_encoder(EncoderConfig(model=name, pretrained="none"), towers=("text",))
    assert text_only.model.visual is None
    assert text_only.image_size == 32  # preprocessing facts survive dropping the tower
    tokens, emb = encode_texts(text_only, ["neutral", "surprise"])
    assert emb.shape == (2, 32)
    with pytest.raises(TgdferError, match="image tower"):
        encode_images(text_only, _pixels())

    image_only = load_encoder(EncoderConfig(model=name, pretrained="none"), towers=("image",))
    n_full = sum(p.numel() for p in full.model.parameters())
    n_image = sum(p.numel() for p in image_only.model.parameters())
    n_visual = sum(p.numel() for p in full.model.visual.parameters())
    assert n_image == n_visual + 1  # visual tower + logit_scale; the 3.2M-parameter text tower is gone
    assert n_image < n_full
    assert encode_images(image_only, _pixels()).shape == (3, 32)
    with pytest.raises(TgdferError, match="text tower"):
        encode_texts(image_only, ["fear"])
