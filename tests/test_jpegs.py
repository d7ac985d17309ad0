"""JPEG frames decoded by the main process on the encoder's device (`extract.jpeg_decode`, tgdfer.jpegs).

On the CPU that path must give the workers' pixels bit for bit, hence the same store; nvjpeg on a
GPU is compared in tests/test_cuda.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tgdfer.augment import AugmentConfig
from tgdfer.errors import ConfigError
from tgdfer.extraction import ClipViews, ExtractConfig, extract
from tgdfer.jpegs import batch_pixels
from tgdfer.store import FeatureStore

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _items(table, cfg, augment, jpegs, rows=range(5)):
    dataset = ClipViews(table, np.asarray(rows), cfg, augment, 24, MEAN, STD, jpegs=jpegs)
    return dataset, [dataset[k] for k in range(len(dataset))]


@pytest.mark.parametrize("augment", [AugmentConfig(), AugmentConfig.reference("ferv39k")], ids=["dfew", "ferv39k"])
def test_device_decode_on_the_cpu_gives_the_workers_pixels_bit_for_bit(clip_table, extract_config, augment, tmp_path):
    """Views 0 (resize) and 1..3 (crop, flip, brightness; FERV39k: rotation) from bytes decoded in one call."""
    table = clip_table.copy()
    png = tmp_path / "png"  # a clip of PNG frames: not JPEG, so its worker decodes it as before
    png.mkdir()
    for f in sorted(Path(table["path"][4]).iterdir()):
        Image.open(f).save(png / (f.stem + ".png"))
    table.loc[4, "path"] = str(png)
    cfg = extract_config("unused.zarr", views=4)
    _, old = _items(table, cfg, augment, jpegs=False)
    dataset, new = _items(table, cfg, augment, jpegs=True)
    assert [it["jpegs"] is not None for it in new] == [True] * 4 + [False]
    assert all(it["pixels"] is None for it in new[:4]) and new[4]["pixels"] is not None
    pixels, errors = batch_pixels(new, new[4]["pixels"][None], torch.device("cpu"), dataset.test_tf, dataset.train_tf)
    assert not errors and pixels.dtype == torch.uint8 and pixels.shape == (5, 4, cfg.frames, 3, 24, 24)
    for k in range(5):
        assert np.array_equal(new[k]["index"], old[k]["index"])
        assert torch.equal(pixels[k], old[k]["pixels"]), k
    assert not torch.equal(pixels[0, 1], pixels[0, 2])  # the views differ: each drew its own augmentation


def test_a_store_extracted_with_device_decode_on_the_cpu_equals_the_reference(tmp_path, clip_table, encoder_cfg,
                                                                               extract_config, ref):
    result = extract(extract_config(tmp_path / "d.zarr", workers=1, jpeg_decode="device"), AugmentConfig(),
                     encoder_cfg, clip_table, data_kind="dfew")
    assert result.ok and result.extracted == len(clip_table)
    with FeatureStore.open(tmp_path / "d.zarr") as s:
        assert s.read_feats().tobytes() == ref["feats"].tobytes()
        assert np.array_equal(s.read_frame_index(), ref["frame_index"])


def test_a_damaged_jpeg_fails_its_clip_alone_with_the_workers_message(tmp_path, clip_table, encoder_cfg,
                                                                       extract_config):
    table = clip_table.iloc[:4].copy()
    bad = tmp_path / "bad"
    shutil.copytree(table["path"].iat[1], bad)
    for f in bad.iterdir():  # every frame cut 20 bytes into its scan: the header reads, the pixels do not
        data = f.read_bytes()
        f.write_bytes(data[: data.index(b"\xff\xda") + 20])
    table.loc[table.index[1], "path"] = str(bad)
    _, items = _items(table, extract_config("unused.zarr"), AugmentConfig(), jpegs=True, rows=[1])
    assert items[0]["jpegs"] is not None and items[0]["error"] is None  # headers pass: the decode finds it
    results, feats = {}, {}
    for mode in ("workers", "device"):
        results[mode] = extract(extract_config(tmp_path / f"{mode}.zarr", jpeg_decode=mode, batch_clips=4),
                                AugmentConfig(), encoder_cfg, table, data_kind="dfew")
        with FeatureStore.open(tmp_path / f"{mode}.zarr") as s:
            feats[mode] = s.read_feats()[[0, 2, 3]]
    assert results["device"].failed == 1 and results["device"].extracted == 3
    assert results["device"].failures == results["workers"].failures
    clip, why = results["device"].failures[0]
    assert clip == table["clip_id"].iat[1] and str(bad) in why and "not a readable image" in why
    assert feats["device"].tobytes() == feats["workers"].tobytes()


def test_jpeg_decode_setting_is_checked():
    with pytest.raises(ConfigError, match="jpeg_decode"):
        ExtractConfig(jpeg_decode="gpu")
