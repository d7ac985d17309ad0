"""Face stage (`tgdfer.facetrack`): tracks on real faces, crops, store boxes and fingerprint, predict.

Real faces: scikit-image's astronaut photograph, her head moved over real backgrounds with the
true face box known in every frame (tests/facevideos.py). The detector is CenterFace (the
`faces` extra, part of the `test` extra that `make test` installs: a missing detector fails these
tests rather than skipping them).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from tgdfer.augment import AugmentConfig
from tgdfer.cli import app
from tgdfer.encoders import load_encoder
from tgdfer.errors import ConfigError, FrameReadError, TgdferError
from tgdfer.extract import extract
from tgdfer import facetrack
from tgdfer.facetrack import (FacesConfig, FaceStage, box_iou, crop_frames, detection_frames, fill_and_smooth,
                              import_detector, main_track, make_detector, square_crop_boxes)
from tgdfer.live import LiveFeatures
from tgdfer.readers import DTYPES
from tgdfer.sampling import view_indices
from tgdfer.store import FeatureStore, export_hdf5

from facevideos import background, moving_face_clip, write_folder, write_mp4

CENTERFACE = FacesConfig(detector="centerface")
runner = CliRunner()


def fraction_above(iou: np.ndarray, threshold: float = 0.7) -> float:
    return float(np.mean(iou >= threshold))


# -- pure track functions ---------------------------------------------------------------------------


def test_main_track_prefers_the_large_persistent_face_and_leaves_gaps():
    big = lambda x: (np.array([x, 10.0, x + 40, 60]), 0.9)  # noqa: E731  moves 10 px per frame
    small = (np.array([200.0, 10, 215, 28]), 0.95)  # a smaller face, always there
    ghost = (np.array([100.0, 100, 180, 190]), 0.99)  # a larger false positive in one frame only
    dets = [[big(0), small], [small, ghost], [big(20), small], [big(30), small, (np.array([0, 0, 50, 50.0]), 0.3)]]
    track = main_track(dets, min_score=0.5)
    assert np.isnan(track[1]).all()  # the main face was not found there
    np.testing.assert_array_equal(track[[0, 2, 3], 0], [0, 20, 30])


def test_fill_and_smooth_keeps_steady_motion_and_interpolates_gaps():
    frames = np.array([0, 3, 6, 9, 12, 15])
    truth = np.stack([frames * 2.0, frames * 1.0, frames * 2.0 + 50, frames * 1.0 + 60], 1)  # linear motion
    boxes = truth.copy()
    boxes[[1, 4]] = np.nan
    np.testing.assert_allclose(fill_and_smooth(frames, boxes, smooth=3), truth, atol=1e-9)
    jitter = truth + np.random.default_rng(0).normal(0, 3, truth.shape)
    assert np.abs(fill_and_smooth(frames, jitter, 5) - truth).mean() < np.abs(jitter - truth).mean()


def test_square_crop_boxes_are_square_inside_the_frame():
    boxes = np.array([[-10.0, -5, 30, 45], [290, 200, 330, 250], [100, 100, 130, 120], [0, 0, 400, 300]])
    crop = square_crop_boxes(boxes, margin=0.5, width=320, height=240)
    side = crop[:, 2] - crop[:, 0]
    np.testing.assert_array_equal(side, crop[:, 3] - crop[:, 1])
    assert (crop[:, :2] >= 0).all() and (crop[:, 2] <= 320).all() and (crop[:, 3] <= 240).all()
    assert side.tolist() == [75, 75, 45, 240]  # 1.5 x the longer side, at most the frame's height
    assert crop[2].tolist() == [92, 88, 137, 133]  # centred on the face (rounded to whole pixels)


def test_detectors_come_from_the_registry_and_import_paths_only_when_asked(monkeypatch):
    """A name read from a file is looked up, never imported; `import_detector` (--allow-import) imports it."""
    monkeypatch.setattr(facetrack, "_DETECTORS", dict(facetrack._DETECTORS))
    with pytest.raises(ConfigError, match="never imports.*--faces facevideos:FixedBox --allow-import"):
        make_detector(FacesConfig(detector="facevideos:FixedBox", args={"box": [1, 2, 3, 4]}))
    import_detector("facevideos:FixedBox")
    det = make_detector(FacesConfig(detector="facevideos:FixedBox", args={"box": [1, 2, 3, 4]}))
    (found,) = det(np.zeros((1, 8, 8, 3), np.uint8))
    assert found[0][0].tolist() == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="faces.detector: unknown detector 'retina'.*register_detector"):
        make_detector(FacesConfig(detector="retina"))
    with pytest.raises(ConfigError, match="cannot import 'nowhere.mod:X'"):
        import_detector("nowhere.mod:X")
    with pytest.raises(ConfigError, match="faces.args"):
        make_detector(FacesConfig(detector="facevideos:FixedBox", args={"nope": 1}))
    with pytest.raises(ConfigError, match="on_missing"):
        FacesConfig(on_missing="skip")


# -- real faces -------------------------------------------------------------------------------------


@pytest.mark.parametrize("every", [1, 4])
def test_track_follows_a_moving_real_face(every):
    """IoU >= 0.7 with the true box on >= 95% of frames, detecting on every frame or every 4th."""
    stage = FaceStage(FacesConfig(detector="centerface", every=every))
    ious = []
    for k, face in enumerate((36, 60, 90)):  # face heights in a 320 x 240 frame
        frames, truth = moving_face_clip(n=16, face=face, which=k, seed=k)
        grid = detection_frames(len(frames), 8, every)
        track = stage.track(grid, frames[grid], f"clip{k}")
        ious.append(box_iou(track.face_boxes(np.arange(len(frames))), truth))
    ious = np.concatenate(ious)
    assert fraction_above(ious) >= 0.95, np.round(ious, 2)


def test_a_clip_without_a_face_fails_or_falls_back_to_the_centre():
    frames = np.stack([background(120, 160, which=k) for k in range(3)])
    grid = np.arange(3)
    with pytest.raises(FrameReadError, match="somewhere/clip.mp4: no face found in the 3 frames searched"):
        FaceStage(CENTERFACE).track(grid, frames, "somewhere/clip.mp4")
    track = FaceStage(FacesConfig(detector="centerface", on_missing="center")).track(grid, frames, "x")
    assert track.fallback and not track.detected.any()
    assert track.crop_boxes(np.array([0, 2]), margin=0.25).tolist() == [[20, 0, 140, 120]] * 2


# -- extract, store, live, predict on moved-face videos -----------------------------------------------

N_FACE_CLIPS = 4
T = 6


@pytest.fixture(scope="module")
def face_data(tmp_path_factory):
    """4 moved-face clips (frame folders, 320 x 240), their true boxes, the same clips pre-cropped
    around the true face (what a face-cropped dataset ships), and one clip with no face."""
    root = tmp_path_factory.mktemp("faces")
    rows, pre_rows, truth = [], [], {}
    for k in range(N_FACE_CLIPS):
        frames, boxes = moving_face_clip(n=12, face=(50, 70)[k % 2], which=k, seed=10 + k)
        cid = f"c{k}"
        write_folder(root / "raw" / cid, frames)
        crops = crop_frames(frames, square_crop_boxes(boxes, CENTERFACE.margin, 320, 240), CENTERFACE.size)
        write_folder(root / "cropped" / cid, crops)
        truth[cid] = boxes
        rows.append((cid, str(root / "raw" / cid), k % 3, 1 + k % 2, None, 12))
        pre_rows.append((cid, str(root / "cropped" / cid), k % 3, 1 + k % 2, None, 12))
    write_folder(root / "raw" / "empty", np.stack([background(240, 320, 2)] * 12))

    def table(rs):
        return pd.DataFrame({c: pd.array(list(v), dtype=DTYPES[c]) for c, v in zip(DTYPES, zip(*rs))})

    empty = ("empty", str(root / "raw" / "empty"), 0, 2, None, 12)
    return {"root": root, "raw": table(rows), "cropped": table(pre_rows), "truth": truth,
            "with_empty": table(rows + [empty])}


@pytest.fixture(scope="module")
def face_store(face_data, encoder_cfg, extract_config):
    path = face_data["root"] / "faces.zarr"
    result = extract(extract_config(path, views=2, frames=T), AugmentConfig(), encoder_cfg, face_data["with_empty"],
                     data_kind="csv", faces=CENTERFACE)
    assert result.extracted == N_FACE_CLIPS and result.failed == 1
    return path


def test_extract_stores_crop_boxes_that_follow_the_face(face_store, face_data):
    with FeatureStore.open(face_store) as s:
        boxes, index, failures = s.read_boxes(), s.read_frame_index(), s.failures
        assert s.fingerprint["faces"] == CENTERFACE.fingerprint()
    assert boxes.shape == (N_FACE_CLIPS + 1, 2, T, 4)
    assert np.isfinite(boxes[:N_FACE_CLIPS]).all() and np.isnan(boxes[N_FACE_CLIPS]).all()
    (reason,) = failures["reason"]
    assert failures["clip_id"].tolist() == ["empty"] and "empty: no face found" in reason
    ious = []
    for row in range(N_FACE_CLIPS):
        true_face = face_data["truth"][f"c{row}"][index[row]]  # [V, T, 4] at the sampled frames
        ious.append(box_iou(boxes[row], square_crop_boxes(true_face, CENTERFACE.margin, 320, 240)).ravel())
    ious = np.concatenate(ious)
    print(f"stored crop boxes vs true crops: IoU >= 0.7 on {fraction_above(ious):.2f}, min {ious.min():.3f}, "
          f"mean {ious.mean():.3f}")
    assert fraction_above(ious) >= 0.95


def test_hdf5_export_keeps_the_boxes(face_store, tmp_path):
    h5 = export_hdf5(face_store, tmp_path / "faces.h5", allow_pending=True)
    with FeatureStore.open(face_store) as z, FeatureStore.open(h5) as h:
        np.testing.assert_array_equal(z.read_boxes(), h.read_boxes())
        np.testing.assert_array_equal(z.read_boxes([2, 0]), h.read_boxes([2, 0]))


def test_another_face_setting_is_another_store(face_store, face_data, encoder_cfg, extract_config):
    cfg = extract_config(face_store, views=2, frames=T)
    with pytest.raises(TgdferError, match=r"fingerprint.faces.margin: stored 0.25, requested 0.5"):
        extract(cfg, AugmentConfig(), encoder_cfg, face_data["with_empty"], data_kind="csv",
                faces=FacesConfig(detector="centerface", margin=0.5))
    with pytest.raises(TgdferError, match=r"fingerprint.faces.detector: stored 'centerface', not requested"):
        extract(cfg, AugmentConfig(), encoder_cfg, face_data["with_empty"], data_kind="csv")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_features_of_moved_faces_match_the_pre_cropped_clips(face_store, face_data, encoder_cfg, extract_config,
                                                              tmp_path):
    """View 0 of the face-cropped raw clips ~ view 0 of the clips cropped around the true box.

    They differ only by where the detector puts the box (the stored boxes have IoU >= 0.7 with the
    true ones) and by the resampling. Random tiny-ViT features of any two images are already
    similar (a common direction), so the assertion is relative: the features of the whole raw frames
    (no face stage) are the baseline the face crops must beat by a wide margin. Measured: cosine
    0.998 mean / 0.993 min for the face crops, 0.960 mean / 0.985 max for the whole frames.
    """
    runs = {}
    for name, table, faces in (("cropped", face_data["cropped"], None), ("whole", face_data["raw"], None)):
        path = tmp_path / f"{name}.zarr"
        extract(extract_config(path, views=1, frames=T), AugmentConfig(), encoder_cfg, table, data_kind="csv",
                faces=faces)
        with FeatureStore.open(path) as s:
            runs[name] = s.read_feats(views=0)  # [N, T, D]
    with FeatureStore.open(face_store) as s:
        faces = s.read_feats(np.arange(N_FACE_CLIPS), views=0)
    near, far = cosines(faces, runs["cropped"]), cosines(runs["whole"], runs["cropped"])
    print(f"cosine to the pre-cropped features: face crops mean {near.mean():.3f} min {near.min():.3f}; "
          f"whole frames mean {far.mean():.3f} max {far.max():.3f}")
    assert near.min() >= 0.98
    assert (1 - near).mean() < 0.25 * (1 - far).mean()


def test_end_to_end_reads_the_stored_crops(face_store, encoder_cfg):
    with FeatureStore.open(face_store) as s:
        live = LiveFeatures(load_encoder(encoder_cfg), s, workers=1)
        try:
            rows = np.arange(N_FACE_CLIPS)
            again = live.view0(rows).numpy()  # [n, T, D]
            stored = s.read_feats(rows, views=0).astype(np.float32)
        finally:
            live.close()
    np.testing.assert_allclose(again, stored, atol=2e-2 * np.abs(stored).max())


@pytest.fixture(scope="module")
def face_run(tmp_path_factory, face_store, encoder_cfg):
    from tgdfer.head import HeadConfig
    from tgdfer.train import TrainConfig, train

    out = tmp_path_factory.mktemp("face_run") / "run"
    train(HeadConfig(learnable=False), TrainConfig(store=str(face_store), fold=1, out=str(out), epochs=1,
                                                   batch_size=4, device="cpu"), encoder=encoder_cfg)
    return out


def test_predict_follows_the_stores_face_stage(face_run, face_store, face_data):
    from tgdfer.evaluate import forward, load_run
    from tgdfer.predict import load_predictor, predict_clip

    predictor = load_predictor(face_run, device="cpu")
    assert predictor.faces == CENTERFACE
    lr = load_run(face_run, "cpu")
    with FeatureStore.open(face_store) as s:
        feats, boxes = s.read_feats(views=0), s.read_boxes()
    np.testing.assert_array_equal(lr.boxes, boxes[:, 0])  # evaluate's frame strips show the same crops
    row = int(lr.test[0])
    pred = predict_clip(predictor, face_data["raw"]["path"].iat[row])
    np.testing.assert_array_equal(pred.boxes, boxes[row, 0])
    logits, _ = forward(lr.head, torch.from_numpy(feats[[row]]))
    np.testing.assert_allclose(pred.logits, logits[0], atol=5e-2)
    none = load_predictor(face_run, device="cpu", faces="none")
    assert not none.faces.enabled and predict_clip(none, face_data["raw"]["path"].iat[row]).boxes is None


def test_evaluate_strips_of_a_face_store(face_run, tmp_path):
    result = runner.invoke(app, ["evaluate", str(face_run), "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    strips = sorted(tmp_path.rglob("strip_*.png"))
    assert strips, sorted(p.name for p in tmp_path.rglob("*"))


def test_predict_cli_faces_on_raw_video(face_run, run_without_faces, tmp_path):
    frames, truth = moving_face_clip(n=20, face=60, which=1, seed=5)
    video = write_mp4(tmp_path / "raw.mp4", frames)
    empty = write_folder(tmp_path / "empty", np.stack([background(120, 160, 0)] * 4))
    result = runner.invoke(app, ["predict", str(run_without_faces), str(video), str(empty), "--json", "--faces",
                                 "centerface", "--device", "cpu", "--figure", str(tmp_path / "fig")])
    assert result.exit_code == 1, result.output  # the face-less clip failed, the video did not
    doc = json.loads(result.stdout)
    assert doc["faces"]["detector"] == "centerface"
    ok, bad = doc["predictions"]
    assert not bad["ok"] and "no face found" in bad["error"]
    index = np.array([f["frame"] for f in ok["frames"]])
    assert index.tolist() == view_indices(20, "raw", 0, 0, len(index)).tolist()
    crop = np.array([f["box"] for f in ok["frames"]])
    assert fraction_above(box_iou(crop, square_crop_boxes(truth[index], 0.25, 320, 240))) >= 0.95
    assert (tmp_path / "fig" / "raw_influence.png").is_file()


@pytest.fixture(scope="module")
def run_without_faces(tmp_path_factory, reference_store, encoder_cfg):
    """A head trained on the pre-cropped SynthDFER reference store (no face stage)."""
    from tgdfer.head import HeadConfig
    from tgdfer.train import TrainConfig, train

    out = tmp_path_factory.mktemp("noface_run") / "run"
    train(HeadConfig(learnable=False), TrainConfig(store=str(reference_store), fold=1, out=str(out), epochs=1,
                                                   batch_size=8, device="cpu"), encoder=encoder_cfg)
    return out


# -- SynthDFER raw-video mode -----------------------------------------------------------------------


def test_synth_canvas_pastes_the_same_face_clip_and_writes_its_true_boxes(tmp_path):
    from tgdfer.synth import SynthConfig, canvas_offsets, face_boxes, generate, place_on_canvas, plan, render

    cfg = SynthConfig(clips=3, seed=4, format="frames", size=32, canvas=96, min_frames=5, max_frames=7, folds=2,
                      workers=1)
    generate(tmp_path / "s", cfg)
    boxes = pd.read_csv(tmp_path / "s" / "boxes.csv", dtype={"clip_id": str})
    plans = plan(cfg)
    assert len(boxes) == sum(p.n_frames for p in plans)
    for p in plans:
        crop = render(p, cfg)  # [T, 32, 32, 3]: exactly the clip canvas = 0 writes
        canvas = place_on_canvas(p, cfg, crop)  # [T, 96, 96, 3]
        at = canvas_offsets(p, cfg)  # [T, 2]
        assert canvas.shape == (p.n_frames, 96, 96, 3) and len(np.unique(at, axis=0)) > 1  # it moves
        for t, (x, y) in enumerate(at):
            np.testing.assert_array_equal(canvas[t, y:y + 32, x:x + 32], crop[t])
        truth = boxes[boxes.clip_id == p.clip_id][["x0", "y0", "x1", "y1"]].to_numpy()
        np.testing.assert_allclose(truth, face_boxes(p, cfg) + np.tile(at, 2), atol=0.01)
        side = truth[:, 2:] - truth[:, :2]
        assert (side > 0.45 * 32).all() and (side < 33).all()  # the face oval fills most of the face clip
        assert (truth[:, :2] >= at - 1).all() and (truth[:, 2:] <= at + 33).all()
    with pytest.raises(ConfigError, match="canvas: must be 0 or an even frame side larger than size"):
        SynthConfig(size=32, canvas=32)
