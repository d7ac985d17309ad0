"""How a frame is meant to be shown: the eight right-angle orientations, a video's pixel aspect, and
transparency shown over white.

Phones store a portrait recording as landscape pixels and say how to turn them: a video by a
display matrix (the container's `tkhd` matrix, FFmpeg's DISPLAYMATRIX side data on each decoded
frame), a JPEG or PNG by its EXIF Orientation tag. Anamorphic video (DV, DVD, some camcorders)
stores pixels wider or narrower than tall and records their sample aspect ratio. Players and
viewers apply both; FFmpeg's decoders (PyAV) and PIL's `Image.open` do not. tgdfer's frame sources
apply them, so a face stands upright in its proportions whichever way the camera was held, and
every backend gives the same pixels (decord turns rotated videos itself but gets mirrors wrong, nor
scales; `frames.open_frames` reads any such video with PyAV and this module). A frame with an alpha
plane, image (RGBA PNG) or video (VP9 with alpha, ProRes 4444, QuickTime Animation, PNG in MOV), is
shown over white (`over_background`, one function for both), as a browser on its default page shows it;
FFmpeg's and PIL's RGB conversions drop the alpha and show the colours stored under it.

    op = from_exif(6)                   # "rot270": turn 90 degrees clockwise to show
    op = from_display_matrix(matrix)    # matrix: the 9 int32 of FFmpeg's DISPLAYMATRIX
    shown = apply(frame, op)            # frame [H, W, C] -> [H', W', C] (a view, no copy)
    rgb = over_background(rgba)         # [H, W, 4] -> [H, W, 3] over white
    rgb = video_frame_rgb(av_frame, sar=stream_sar(stream))  # a decoded PyAV frame as shown

An orientation is one of ORIENTATIONS, named by what turns the stored pixels into the shown ones
("rot90": 90 degrees counter-clockwise; "transpose": rows become columns; "transverse": the
other diagonal).
"""

from __future__ import annotations

import logging
import math
import warnings
from fractions import Fraction
from pathlib import Path
from struct import error as struct_error
from typing import Literal, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

Orientation = Literal["identity", "rot90", "rot180", "rot270", "hflip", "vflip", "transpose", "transverse"]
ORIENTATIONS = ("identity", "rot90", "rot180", "rot270", "hflip", "vflip", "transpose", "transverse")

# EXIF Orientation tag (0x0112, its values from TIFF 6.0) -> what shows the stored pixels upright
_EXIF: dict[int, Orientation] = {
    1: "identity", 2: "hflip", 3: "rot180", 4: "vflip",
    5: "transpose", 6: "rot270", 7: "transverse", 8: "rot90",
}
EXIF_ORIENTATION_TAG = 0x0112

# FFmpeg's display matrix [a b u; c d v; x y w] maps a stored pixel (p, q) to the shown (a p + c q, b p + d q)
# (libavutil/display.h; p to the right, q down). Its 2x2 part (a, b, c, d), rounded, for each orientation:
_MATRIX: dict[tuple[int, int, int, int], Orientation] = {
    (1, 0, 0, 1): "identity",
    (0, -1, 1, 0): "rot90",  # (p, q) -> (q, -p): the right edge goes up, counter-clockwise
    (-1, 0, 0, -1): "rot180",
    (0, 1, -1, 0): "rot270",
    (-1, 0, 0, 1): "hflip",
    (1, 0, 0, -1): "vflip",
    (0, 1, 1, 0): "transpose",
    (0, -1, -1, 0): "transverse",
}


def from_exif(tag: Optional[int]) -> Orientation:
    """The orientation an EXIF Orientation value asks for; "identity" for none or an invalid value."""
    return _EXIF.get(tag, "identity") if isinstance(tag, int) else "identity"


def from_display_matrix(matrix: Optional[Sequence[int]], where: str = "") -> Orientation:
    """The orientation FFmpeg's display matrix (9 int32, 16.16 fixed point in its 2x2 part) asks for.

    "identity" when there is none. A matrix that is not a right-angle turn or mirror (a rotation by
    some other angle, a shear) is left unapplied, with a warning naming `where`: frames keep their
    stored orientation.
    """
    if matrix is None:
        return "identity"
    a, b, _, c, d = (float(v) / 65536.0 for v in list(matrix)[:5])
    scale = math.hypot(a, b) or 1.0
    key = tuple(int(round(v / scale)) for v in (a, b, c, d))
    near = all(abs(v / scale - k) < 0.02 for v, k in zip((a, b, c, d), key))
    op = _MATRIX.get(key) if near else None
    if op is None:
        angle = math.degrees(math.atan2(-b, a))
        log.warning("%s: the display matrix turns frames by %.1f degrees (not a multiple of 90) or shears them; "
                    "frames are used as stored", where or "a video", angle)
        return "identity"
    return op


def apply(frame: np.ndarray, op: Orientation) -> np.ndarray:
    """`frame` [H, W, ...] as shown: [H, W, ...] or [W, H, ...] after a quarter turn (a view)."""
    if op == "identity":
        return frame
    if op == "rot90":
        return np.rot90(frame, 1)
    if op == "rot180":
        return frame[::-1, ::-1]
    if op == "rot270":
        return np.rot90(frame, -1)
    if op == "hflip":
        return frame[:, ::-1]
    if op == "vflip":
        return frame[::-1]
    if op == "transpose":
        return frame.swapaxes(0, 1)
    if op == "transverse":
        return frame[::-1, ::-1].swapaxes(0, 1)
    raise ValueError(f"unknown orientation {op!r}")


def shown_size(height: int, width: int, op: Orientation) -> tuple[int, int]:
    """(H, W) of a stored `height` x `width` frame once shown with `op`."""
    return (width, height) if op in ("rot90", "rot270", "transpose", "transverse") else (height, width)


def image_orientation(im) -> Orientation:
    """The orientation a PIL image's EXIF asks for, from the EXIF block its header holds (JPEG's APP1,
    PNG's eXIf before the pixels); nothing is decoded. "identity" without one, or when it is damaged."""
    from PIL import Image

    data = im.info.get("exif")
    if not data:
        return "identity"
    try:
        with warnings.catch_warnings():  # PIL warns of a corrupt block, once per frame
            warnings.simplefilter("ignore")
            exif = Image.Exif()
            exif.load(data)
            return from_exif(exif.get(EXIF_ORIENTATION_TAG))
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct_error):  # damaged: as stored
        return "identity"


# ---------------------------------------------------------------------------- transparency


BACKGROUND = (255, 255, 255)  # what a transparent frame, image or video, is shown over


def over_background(rgba: np.ndarray) -> np.ndarray:
    """`rgba` [H, W, 4] uint8 (straight, not premultiplied alpha) shown over `BACKGROUND`: [H, W, 3] uint8,
    Porter and Duff's "over", rounded to nearest (alpha 0: the background; 255: the colour as stored)."""
    rgba = rgba.astype(np.uint16)  # 255 * 255 + 127 fits
    alpha = rgba[..., 3:]  # [H, W, 1]
    shown = (rgba[..., :3] * alpha + np.array(BACKGROUND, np.uint16) * (255 - alpha) + 127) // 255
    return shown.astype(np.uint8)


def has_alpha(video_format) -> bool:
    """Whether a PyAV VideoFormat (a decoded frame's `format`) holds an alpha plane (yuva420p, argb, rgba,
    yuva444p12le, ...). A palette format (pal8) counts as none: its alpha lives in the palette."""
    return any(c.is_alpha for c in video_format.components)


# ---------------------------------------------------------------------------- decoded video frames (PyAV)


def video_frame_rgb(frame, where: str | Path = "", seen: dict | None = None, sar: Fraction | None = None,
                    size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded PyAV frame `[H, W, 3]` uint8 RGB as shown: its stored pixels scaled to `size` (width,
    height: the stream's first frame's, when a stream changes size midway, as a video call's
    recording does with its bandwidth; players and decord scale to the first size too), non-square
    pixels (sample aspect ratio `sar`, from `stream_sar`) to square ones, a frame with an alpha plane
    shown over white (`over_background`, as an RGBA image frame), then its display matrix applied (a
    portrait phone video's frames upright, as players and decord show them)."""
    width, height = size or (frame.width, frame.height)
    alpha = has_alpha(frame.format)
    fmt = "rgba" if alpha else "rgb24"  # swscale converts with the video's colour matrix and range either way
    if sar is None and (width, height) == (frame.width, frame.height):
        pixels = frame.to_ndarray(format=fmt)  # [H, W, 3 or 4]
    else:  # swscale (bilinear), in the same conversion
        pixels = frame.to_ndarray(format=fmt, width=shown_width(width, sar), height=height)
    rgb = over_background(pixels) if alpha else pixels  # [H, W, 3]
    return apply(rgb, display_orientation(frame, where, seen))


def stream_sar(stream) -> Fraction | None:
    """A video stream's sample aspect ratio (a pixel's width over its height: anamorphic DV or DVD video,
    some camcorders) when its pixels are not square; None when they are or it is unrecorded."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    if not sar or sar <= 0 or sar == 1:
        return None
    return Fraction(sar)


def shown_width(width: int, sar: Fraction | None) -> int:
    """The width of a `width`-pixel-wide frame shown with square pixels."""
    return width if sar is None else max(1, int(round(width * sar)))


def display_orientation(frame, where: str | Path = "", seen: dict | None = None) -> Orientation:
    """The orientation a decoded PyAV frame's display matrix (FFmpeg's DISPLAYMATRIX side data) asks for.
    `seen` caches it per matrix across one clip's frames, so an odd matrix is warned about once."""
    matrix = next((bytes(sd) for sd in frame.side_data
                   if getattr(sd.type, "name", str(sd.type)).endswith("DISPLAYMATRIX")), None)
    seen = {} if seen is None else seen
    if matrix not in seen:
        values = np.frombuffer(matrix, dtype="=i4") if matrix is not None and len(matrix) >= 36 else None
        seen[matrix] = from_display_matrix(values, str(where))
    return seen[matrix]
