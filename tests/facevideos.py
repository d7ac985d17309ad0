"""Test videos with a real face (scikit-image's astronaut, Eileen Collins) moving over a larger background.

`moving_face_clip` pastes the astronaut's head (a square patch around her face) at a known place in
every frame, so the true face box of each frame is known exactly: the face box hand-annotated on
the astronaut photograph (forehead to chin, cheek to cheek, as WIDER FACE boxes are drawn) moved
and scaled with the patch.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np
import skimage.data as skdata
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

ASTRONAUT_FACE = np.array([179.0, 60.0, 270.0, 177.0])  # x0, y0, x1, y1 in skimage.data.astronaut() (512 x 512)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    return TF.resize(t, [h, w], antialias=True).permute(1, 2, 0).contiguous().numpy()


def background(height: int, width: int, which: int = 0) -> np.ndarray:
    """A real photograph without a human face as background: [H, W, 3] uint8."""
    img = [skdata.coffee, skdata.rocket, skdata.hubble_deep_field][which % 3]()
    return _resize(img, height, width)


@functools.lru_cache(maxsize=1)
def head_patch() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's head: a square patch [P, P, 3] (2 x the face's longer side) and the face box in it."""
    a = skdata.astronaut()
    c = (ASTRONAUT_FACE[:2] + ASTRONAUT_FACE[2:]) / 2
    half = int(max(ASTRONAUT_FACE[2:] - ASTRONAUT_FACE[:2]))  # 117: the patch starts at y = 1
    x0, y0 = int(c[0]) - half, int(c[1]) - half
    return a[y0:y0 + 2 * half, x0:x0 + 2 * half], ASTRONAUT_FACE - [x0, y0, x0, y0]


def paste_head(img: np.ndarray, face: float, cx: float, cy: float, mirror: bool = False) -> np.ndarray:
    """Paste the astronaut's head into img [H, W, 3] (in place) with a face `face` px high centred near
    (cx, cy), kept inside the frame; `mirror` flips it (a second person). Returns the true face box [4]."""
    patch, box = head_patch()
    if mirror:
        patch, box = patch[:, ::-1], np.array([patch.shape[1] - box[2], box[1], patch.shape[1] - box[0], box[3]])
    height, width = img.shape[:2]
    side = int(round(patch.shape[0] * face / (box[3] - box[1])))
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    img[y0:y0 + side, x0:x0 + side] = _resize(patch, side, side)
    return box * (side / patch.shape[0]) + [x0, y0, x0, y0]


def moving_face_clip(n: int = 24, height: int = 240, width: int = 320, face: float = 70.0, which: int = 0,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames [n, H, W, 3] uint8 with the head moving along a smooth random path (face height about
    `face` px, slowly scaling), and the true face box of every frame [n, 4]."""
    rng = np.random.default_rng(seed)
    bg = background(height, width, which)
    frames, boxes = [], []
    start, end = rng.uniform(0.15, 0.85, 2), rng.uniform(0.15, 0.85, 2)
    wobble = rng.uniform(0, 2 * np.pi)
    for i in range(n):
        a = i / max(n - 1, 1)
        cx, cy = (start + (end - start) * a) * [width, height]
        img = bg.copy()
        boxes.append(paste_head(img, face * (1 + 0.15 * np.sin(2 * np.pi * a + wobble)), cx, cy))
        frames.append(img)
    return np.stack(frames), np.array(boxes)


def placed_faces_clip(subject: np.ndarray, others: Sequence[np.ndarray] = (), scene: Sequence[int] | int = 0,
                      height: int = 240, width: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """Frames with the subject at known places: `subject` [n, 3] rows (cx, cy, face height) per frame
    (a NaN row: not in that frame), `others` the same for other people (the mirrored head, pasted
    first), `scene` the background of each frame (a change is a shot cut). Returns frames
    [n, H, W, 3] uint8 and the subject's true face boxes [n, 4] (NaN where absent)."""
    subject = np.asarray(subject, float)
    n = len(subject)
    scene = np.broadcast_to(np.asarray(scene), (n,))
    bgs = {int(k): background(height, width, int(k)) for k in np.unique(scene)}
    frames, boxes = [], np.full((n, 4), np.nan)
    for i in range(n):
        img = bgs[int(scene[i])].copy()
        for other in others:
            if np.isfinite(other[i]).all():
                paste_head(img, other[i][2], other[i][0], other[i][1], mirror=True)
        if np.isfinite(subject[i]).all():
            boxes[i] = paste_head(img, subject[i][2], subject[i][0], subject[i][1])
        frames.append(img)
    return np.stack(frames), boxes


def write_folder(folder: Path, frames: np.ndarray) -> Path:
    """A DFEW-style frame folder of JPEGs (quality 95)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{folder.name}_{i + 1:05d}.jpg", quality=95)
    return folder


def write_mp4(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """An H.264 mp4 (PyAV, crf 18)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    return path


class FixedBox:
    """A plug-in detector for tests (`detector = "facevideos:FixedBox"`, `args = {box = [...]}`): the same box
    with score 1 in every frame."""

    def __init__(self, box: list[float]):
        self.box = np.asarray(box, float)

    def __call__(self, frames: np.ndarray) -> list[list[tuple[np.ndarray, float]]]:
        return [[(self.box.copy(), 1.0)] for _ in frames]
