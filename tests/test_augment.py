"""Clip transforms: one draw per clip, reproducible per seed, eval = DFER-CLIP's plain resize."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from tgdfer.augment import AugmentConfig, ClipTransform
from tgdfer.config import build
from tgdfer.errors import ConfigError

S = 32  # output side: small keeps the tests fast


def smooth_image(h=40, w=56, phase=0.0) -> np.ndarray:
    """A smooth, left-right asymmetric RGB image `[h, w, 3]` uint8."""
    y, x = np.mgrid[0:h, 0:w]
    chans = [128 + 90 * np.sin(x / 6 + c + phase) * np.cos(y / 8) + 30 * (x / w) for c in range(3)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def clip(t=6, **kw) -> np.ndarray:
    """`[t, H, W, 3]` uint8, frames different from each other."""
    return np.stack([smooth_image(phase=0.4 * i, **kw) for i in range(t)])


ALL_ON = AugmentConfig(brightness=0.5, rotation_degrees=4.0)


def test_eval_is_dfer_clip_resize_then_clip_normalisation():
    frames = clip()
    out = ClipTransform(S, train=False)(frames)
    assert out.shape == (6, 3, S, S) and out.dtype == torch.float32 and type(out) is torch.Tensor
    # DFER-CLIP's test transform: PIL bilinear resize of each frame to S x S, then [0, 1].
    ref = np.stack([np.asarray(Image.fromarray(f).resize((S, S), Image.BILINEAR)) for f in frames])
    ref = torch.from_numpy(ref).permute(0, 3, 1, 2).float() / 255  # [T, 3, S, S]
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)
    assert (out - (ref - mean) / std).abs().max() <= 1.01 / 255 / min(OPENAI_DATASET_STD)
    # and with normalize="none", the [0, 1] pixels themselves, within one grey level
    plain = ClipTransform(S, normalize="none")(frames)
    assert (plain - ref).abs().max() <= 1.01 / 255
    assert ClipTransform(S)(frames, seed=1).equal(out)  # eval ignores the seed


def test_normalize_none_is_in_unit_range_and_custom_mean_std_are_used():
    frames = clip()
    plain = ClipTransform(S, normalize="none")(frames)
    assert 0.0 <= plain.min() and plain.max() <= 1.0 and plain.max() > 0.5
    custom = ClipTransform(S, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(frames)
    assert torch.allclose(custom, (plain - 0.5) / 0.25, atol=1e-5)


def test_train_output_shape_dtype_and_range():
    out = ClipTransform(S, train=True, config=ALL_ON, normalize="none")(clip(t=16), seed=0)
    assert out.shape == (16, 3, S, S) and out.dtype == torch.float32 and out.is_contiguous()
    assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("seed", range(8))
def test_train_draws_once_per_clip_so_identical_frames_stay_identical(seed):
    frames = np.repeat(smooth_image()[None], 5, axis=0)  # [5, H, W, 3], all the same
    out = ClipTransform(S, train=True, config=ALL_ON)(frames, seed=seed)
    plain = ClipTransform(S)(frames)
    assert not out[0].equal(plain[0])  # something was done to the frame...
    for t in range(1, 5):
        assert out[t].equal(out[0])  # ...and exactly the same to every frame


def test_train_is_deterministic_per_seed_whatever_the_global_rng_state():
    tf = ClipTransform(S, train=True, config=ALL_ON)
    frames = clip()
    torch.manual_seed(0)
    a = tf(frames, seed=42)
    torch.manual_seed(999)
    torch.rand(1000)
    state = torch.get_rng_state()
    b = tf(frames, seed=42)
    assert a.equal(b)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left as it was
    assert ClipTransform(S, train=True, config=ALL_ON)(frames, seed=42).equal(a)  # a new object too


def test_different_seeds_give_different_views():
    tf = ClipTransform(S, train=True, config=ALL_ON)
    frames = clip()
    outs = [tf(frames, seed=s) for s in range(6)]
    for i in range(6):
        for j in range(i + 1, 6):
            assert not outs[i].equal(outs[j])


@pytest.mark.parametrize("cfg", [AugmentConfig(), ALL_ON, AugmentConfig.reference("ferv39k")])
def test_draw_matches_torchvision_compose_on_the_same_seed(cfg):
    """Our split draw/apply gives exactly what v2.Compose(steps) gives after seeding the global RNG."""
    tf = ClipTransform(S, train=True, config=cfg, normalize="none")
    frames = clip()
    video = tv_tensors.Video(torch.from_numpy(frames).permute(0, 3, 1, 2))
    for seed in range(12):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ref = v2.Compose(tf._steps)(video).float() / 255
        # equal up to float rounding (any other crop, flip or factor moves pixels by >= 1/255)
        assert torch.allclose(tf(frames, seed=seed), ref.as_subclass(torch.Tensor), rtol=0, atol=1e-6), seed


@pytest.mark.parametrize("cfg", [AugmentConfig(crop_scale=(0.8, 1.0), brightness=0.3), AugmentConfig(rotation_degrees=4.0),
                                 AugmentConfig(brightness=0.0, flip_p=0.0)], ids=["proxy", "rotation", "crop-only"])
def test_per_frame_equals_one_clip_transform_a_frame_bit_for_bit(cfg):
    """The proxy's batched path (`per_frame`) draws and computes exactly what a call per frame does."""
    frames = torch.randint(0, 256, (24, 40, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    seeds = np.random.default_rng(1).integers(2**62, size=24)
    t = ClipTransform(32, train=True, config=cfg)
    want = torch.cat([t(frames[i:i + 1], seed=int(s)) for i, s in enumerate(seeds)])  # [24, 3, 32, 32]
    got = t.per_frame(frames, seeds)
    assert torch.equal(got, want)
    same = frames[:1].expand(24, -1, -1, -1)  # one image 24 times: any difference is the draw's
    assert len({tuple(g.flatten().tolist()) for g in t.per_frame(same, seeds)}) == 24  # every frame its own draw
    video = tv_tensors.Video(frames[:1].permute(0, 3, 1, 2))
    with torch.device("meta"):  # another default device (a notebook's cuda) leaves the draws on the CPU generator
        drawn = t._draw_many(video, [int(s) for s in seeds])
    assert repr(drawn) == repr(t._draw_many(video, [int(s) for s in seeds]))
    with pytest.raises(ValueError, match="seeds"):
        t.per_frame(frames, seeds[:3])
    with pytest.raises(ValueError, match="train=False"):
        ClipTransform(32).per_frame(frames, seeds)


def test_concurrent_threads_get_the_same_views_as_a_sequential_run():
    tf = ClipTransform(S, train=True, config=ALL_ON)
    frames = clip()
    seeds = list(range(24))
    sequential = [tf(frames, seed=s) for s in seeds]
    with ThreadPoolExecutor(2) as ex:  # concurrent calls, no more threads than a 2-core machine's cores
        threaded = list(ex.map(lambda s: tf(frames, seed=s), seeds))
    assert all(a.equal(b) for a, b in zip(sequential, threaded))


class _Views(torch.utils.data.Dataset):
    def __init__(self, tf, frames):
        self.tf, self.frames = tf, frames

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return self.tf(self.frames, seed=1000 + i)


def test_dataloader_workers_get_the_same_views_as_the_main_process():
    tf = ClipTransform(S, train=True, config=ALL_ON)
    ds = _Views(tf, clip(t=3))
    main = torch.stack([ds[i] for i in range(len(ds))])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    workers = torch.cat(list(loader))
    assert workers.equal(main)


def _flat_config(**kw):
    """Everything off (full-frame crop, no flip/brightness/rotation) except what `kw` turns on."""
    base = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, brightness=0.0, rotation_degrees=0.0)
    return AugmentConfig(**{**base, **kw})


def test_flip_happens_for_about_half_the_seeds():
    frames = clip(t=2, h=32, w=32)
    tf = ClipTransform(S, train=True, config=_flat_config(flip_p=0.5), normalize="none")
    plain = ClipTransform(S, normalize="none")(frames)
    flipped = [tf(frames, seed=s).equal(plain.flip(-1)) for s in range(40)]
    same = [tf(frames, seed=s).equal(plain) for s in range(40)]
    assert all(f != s for f, s in zip(flipped, same))  # every output is one or the other
    assert 8 <= sum(flipped) <= 32


def test_brightness_scales_the_whole_clip_within_its_range():
    frames = np.full((3, 32, 32, 3), 100, np.uint8)
    tf = ClipTransform(S, train=True, config=_flat_config(brightness=0.5), normalize="none")
    levels = [tf(frames, seed=s) for s in range(20)]
    for out in levels:
        assert out.min() == out.max()  # one factor for every pixel of every frame
    factors = np.array([float(out[0, 0, 0, 0]) * 255 / 100 for out in levels])
    assert factors.min() >= 0.5 - 0.01 and factors.max() <= 1.5 + 0.01
    assert factors.max() - factors.min() > 0.3


def test_rotation_blackens_the_corners_and_crop_scale_zooms():
    frames = np.full((2, 64, 64, 3), 200, np.uint8)
    rot = ClipTransform(64, train=True, config=_flat_config(rotation_degrees=4.0), normalize="none")
    corners = [rot(frames, seed=s)[:, :, 0, 0] for s in range(10)]
    assert sum(bool((c == 0).all()) for c in corners) >= 5  # nearest, black fill, as PIL rotate
    grid = np.zeros((1, 64, 64, 3), np.uint8)
    grid[:, :, ::8] = 255  # a vertical line every 8 columns: 8 lines across the frame
    flat = dict(crop_ratio=(1.0, 1.0), flip_p=0.0, brightness=0.0, rotation_degrees=0.0)
    zoom = ClipTransform(64, train=True, config=AugmentConfig(crop_scale=(0.25, 0.25), **flat), normalize="none")

    def lines(out):  # bright runs along the middle row
        m = (out[0, 0, 32] > 0.25).numpy()
        return int(m[0]) + int((m[1:] & ~m[:-1]).sum())

    assert lines(ClipTransform(64, normalize="none")(grid)) == 8
    for seed in range(5):
        assert 3 <= lines(zoom(grid, seed=seed)) <= 5  # a 32 x 32 crop holds 4 of them


def test_bad_inputs_and_missing_seed():
    tf = ClipTransform(S, train=True)
    with pytest.raises(ValueError, match="needs a seed"):
        tf(clip())
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\] uint8"):
        ClipTransform(S)(clip().astype(np.float32))
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\] uint8"):
        ClipTransform(S)(clip()[0])
    with pytest.raises(ConfigError, match="normalize"):
        ClipTransform(S, normalize="imagenet")


def test_accepts_read_only_numpy_and_torch_frames():
    frames = clip()
    ro = frames.copy()
    ro.flags.writeable = False
    ref = ClipTransform(S)(frames)
    assert ClipTransform(S)(ro).equal(ref)
    assert ClipTransform(S)(torch.from_numpy(frames)).equal(ref)


def test_config_defaults_presets_and_validation():
    d = AugmentConfig()
    assert d.crop_scale == (0.08, 1.0) and d.crop_ratio == (3 / 4, 4 / 3)
    assert (d.flip_p, d.brightness, d.rotation_degrees) == (0.5, 0.5, 0.0)
    assert AugmentConfig.reference("DFEW") == d
    f = AugmentConfig.reference("ferv39k")
    assert (f.brightness, f.rotation_degrees) == (0.0, 4.0)
    with pytest.raises(ConfigError, match="no DFER-CLIP recipe"):
        AugmentConfig.reference("affectnet")
    built = build(AugmentConfig, {"crop_scale": [0.5, 1], "rotation_degrees": 4}, "augment")
    assert built.crop_scale == (0.5, 1.0) and built.rotation_degrees == 4.0
    with pytest.raises(ConfigError, match=r"augment\.crop_scale: need 0 < min <= max <= 1"):
        build(AugmentConfig, {"crop_scale": [0.9, 0.5]}, "augment")
    with pytest.raises(ConfigError, match=r"augment\.flip_p"):
        build(AugmentConfig, {"flip_p": 1.5}, "augment")
    with pytest.raises(ConfigError, match=r"augment\.brightness"):
        build(AugmentConfig, {"brightness": -0.1}, "augment")
