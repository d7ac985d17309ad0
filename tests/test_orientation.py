"""Frames come as shown: a video's display matrix and an image's EXIF orientation are applied.

References that do not share tgdfer's table: FFmpeg's documented matrix formula (libavutil/display.h),
PIL's ImageOps.exif_transpose, decord's own handling of rotated videos and PyAV's description of
`set_display_rotation` (turn counter-clockwise, then mirror).
"""

import io
import itertools
import logging
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image, ImageOps

from tgdfer import orientation
from tgdfer.check import check_clip
from tgdfer.decoding_check import verify_random_access
from tgdfer.frames import FolderSource, open_frames
from tgdfer.orientation import ORIENTATIONS, apply, from_display_matrix, from_exif
from videocases import encode_frames

H, W = 32, 64  # stored frames are landscape: a quarter turn shows in the shape


def pattern(h: int = H, w: int = W) -> np.ndarray:
    """[h, w, 3] uint8: 16-pixel blocks of distinct flat colours (they survive lossy coding)."""
    by, bx = np.meshgrid(np.arange(h) // 16, np.arange(w) // 16, indexing="ij")
    block = by * (w // 16) + bx
    rgb = np.stack([block * 31 % 256, 255 - block * 29 % 256, (60 + block * 71) % 256], axis=-1)
    return rgb.astype(np.uint8)


def by_formula(img: np.ndarray, a: int, b: int, c: int, d: int) -> np.ndarray:
    """`img` shown under a display matrix whose 2x2 part is (a, b, c, d): stored (p, q) -> (a p + c q, b p + d q),
    p to the right and q down, about the centre (libavutil/display.h)."""
    h, w = img.shape[:2]
    turned = a == 0
    h2, w2 = (w, h) if turned else (h, w)
    out = np.zeros((h2, w2) + img.shape[2:], img.dtype)
    for y, x in itertools.product(range(h), range(w)):
        p, q = x - (w - 1) / 2, y - (h - 1) / 2
        p2, q2 = a * p + c * q, b * p + d * q
        out[int(round(q2 + (h2 - 1) / 2)), int(round(p2 + (w2 - 1) / 2))] = img[y, x]
    return out


SIGNED_PERMUTATIONS = [(a, b, c, d) for a, b, c, d in itertools.product((-1, 0, 1), repeat=4)
                       if abs(a * d - b * c) == 1 and (a == 0) == (d == 0) and (b == 0) == (c == 0)]


def matrix(a: int, b: int, c: int, d: int) -> np.ndarray:
    return np.array([a, b, 0, c, d, 0, 0, 0, 1], dtype=np.int64) * np.array([65536] * 8 + [1 << 30])


@pytest.mark.parametrize("abcd", SIGNED_PERMUTATIONS)
def test_each_right_angle_display_matrix_shows_the_frame_as_ffmpegs_formula_says(abcd):
    img = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)  # odd sides: the centre is a pixel
    op = from_display_matrix(matrix(*abcd))
    np.testing.assert_array_equal(apply(img, op), by_formula(img, *abcd))


def test_the_eight_matrices_are_the_eight_orientations():
    assert len(SIGNED_PERMUTATIONS) == 8
    assert sorted(from_display_matrix(matrix(*m)) for m in SIGNED_PERMUTATIONS) == sorted(ORIENTATIONS)


def test_a_scaled_matrix_and_no_matrix():
    assert from_display_matrix(matrix(0, -1, 1, 0) * 2) == "rot90"  # a scale does not change the turn
    assert from_display_matrix(None) == "identity"


def test_a_turn_by_another_angle_is_left_as_stored_with_a_warning(caplog):
    r = np.radians(30)
    m = np.array([np.cos(r), -np.sin(r), 0, np.sin(r), np.cos(r), 0, 0, 0, 0]) * 65536
    with caplog.at_level(logging.WARNING, logger="tgdfer.orientation"):
        assert from_display_matrix(m.astype(np.int64), "clip.mp4") == "identity"
    assert "clip.mp4" in caplog.text and "30.0 degrees" in caplog.text


# ---------------------------------------------------------------------------- images (EXIF)


def save_with_orientation(path, img: np.ndarray, tag: int, **options):
    exif = Image.Exif()
    exif[orientation.EXIF_ORIENTATION_TAG] = tag
    Image.fromarray(img).save(path, exif=exif, **options)
    return path


@pytest.mark.parametrize("tag", range(1, 9))
@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_folder_frames_are_shown_as_pils_exif_transpose_shows_them(tmp_path, tag, fmt):
    clip = tmp_path / "clip"
    clip.mkdir()
    path = save_with_orientation(clip / f"f_001.{fmt}", pattern(), tag, **({"quality": 95} if fmt == "jpg" else {}))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert from_exif(tag) == orientation.image_orientation(Image.open(path))
    src = FolderSource(clip)
    got = src.read([0])[0]
    np.testing.assert_array_equal(got, expected)  # the JPEG decoder is libjpeg-turbo in both
    assert src.header_size() == expected.shape[:2]
    assert (got.shape[:2] == (W, H)) == (tag >= 5)


def test_frames_stored_in_two_orientations_that_show_alike_are_one_clip(tmp_path):
    """A burst whose camera turned: stored 64x32 with tag 6 and 32x64 without, shown the same size."""
    clip = tmp_path / "clip"
    clip.mkdir()
    upright = pattern(W, H)  # [64, 32]: portrait as shown
    save_with_orientation(clip / "f_001.png", np.rot90(upright, 1).copy(), 6)  # stored landscape, tag 6 turns it back
    Image.fromarray(upright).save(clip / "f_002.png")
    frames = FolderSource(clip).read([0, 1])
    np.testing.assert_array_equal(frames[0], upright)
    np.testing.assert_array_equal(frames[1], upright)
    report = check_clip(str(clip), 2)
    assert report.status == "ok", report.reason


def test_an_exif_turned_jpeg_is_decoded_in_the_workers_not_on_the_device(tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    save_with_orientation(clip / "f_001.jpg", pattern(), 1, quality=95)
    save_with_orientation(clip / "f_002.jpg", pattern(), 6, quality=95)
    src = FolderSource(clip)
    assert src.read_jpegs(np.array([0])) is not None  # tag 1: the device path may decode it
    assert src.read_jpegs(np.array([0, 1])) is None  # the device decoder would not turn it


def test_a_damaged_exif_block_shows_the_image_as_stored(tmp_path):
    path = tmp_path / "f.png"
    Image.fromarray(pattern()).save(path, exif=b"Exif\x00\x00MM\x00*garbage")
    with Image.open(path) as im:
        assert orientation.image_orientation(im) == "identity"


# ---------------------------------------------------------------------------- videos (display matrix)


def write_turned_video(path, degrees: float, hflip: bool = False, vflip: bool = False, n: int = 6):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        encode_frames(c, s, [pattern()] * n)
    return path


def described(img: np.ndarray, degrees: int, hflip: bool, vflip: bool) -> np.ndarray:
    """PyAV's description of set_display_rotation: turn `degrees` counter-clockwise, then mirror."""
    out = np.rot90(img, degrees // 90)
    out = out[:, ::-1] if hflip else out
    return out[::-1] if vflip else out


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 4


TURNS = [(90, False, False), (-90, False, False), (180, False, False), (0, True, False), (0, False, True),
         (90, True, False), (-90, True, False), (0, False, False)]


@pytest.mark.parametrize("degrees,hflip,vflip", TURNS)
@pytest.mark.parametrize("backend", ["auto", "decord"])
def test_a_turned_video_is_read_as_shown(tmp_path, degrees, hflip, vflip, backend):
    path = write_turned_video(tmp_path / "v.mp4", degrees, hflip, vflip)
    src = open_frames(path, backend)
    frames = src.read([0, 5])
    expected = described(pattern(), degrees, hflip, vflip)
    assert close(frames[0], expected) and close(frames[1], expected)
    if (degrees, hflip, vflip) != (0, False, False):
        assert not close(frames[0], pattern())  # the stored pixels would have been wrong
        assert src.backend == "pyav"  # decord is left out: one orientation code for every backend


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_decord_turns_rotated_videos_as_tgdfer_does(tmp_path, degrees):
    """decord applies a rotation itself (its own code): an independent check of the direction."""
    decord = pytest.importorskip("decord")
    path = write_turned_video(tmp_path / "v.mp4", degrees)
    theirs = decord.VideoReader(str(path)).get_batch([0, 3]).asnumpy()
    ours = open_frames(path, "pyav").read([0, 3])
    assert theirs.shape == ours.shape
    assert np.abs(theirs.astype(int) - ours.astype(int)).max() <= 2


def test_decord_gets_mirrored_videos_wrong_and_does_not_scale_non_square_pixels(tmp_path):
    """Why decord is left out for such files: a mirror-only matrix it turns by 180 degrees, a turn with a
    mirror it only turns, and non-square pixels it returns at their stored width."""
    decord = pytest.importorskip("decord")
    first = lambda path: decord.VideoReader(str(path)).get_batch([0]).asnumpy()[0]  # noqa: E731
    mirrored = first(write_turned_video(tmp_path / "h.mp4", 0, hflip=True))
    assert close(mirrored, pattern()[::-1, ::-1]) and not close(mirrored, described(pattern(), 0, True, False))
    turned = first(write_turned_video(tmp_path / "rh.mp4", 90, hflip=True))
    assert close(turned, np.rot90(pattern(), 1)) and not close(turned, described(pattern(), 90, True, False))
    path = tmp_path / "sar.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.sample_aspect_ratio = Fraction(4, 3)
        encode_frames(c, s, [pattern()] * 3)
    assert first(path).shape == (H, W, 3)


def test_the_random_access_check_compares_frames_as_shown(tmp_path):
    path = write_turned_video(tmp_path / "v.mp4", 90)
    check = verify_random_access(path, "decord", samples=3)
    assert check.ok, check.reason


# ---------------------------------------------------------------------------- videos (non-square pixels)


@pytest.mark.parametrize("sar,width", [(Fraction(4, 3), 85), (Fraction(8, 9), 57), (Fraction(1, 1), 64)])
@pytest.mark.parametrize("backend", ["auto", "decord"])
def test_non_square_pixels_are_shown_square(tmp_path, sar, width, backend):
    """Anamorphic video (DV, DVD, some camcorders) stores pixels wider or narrower than tall; players
    scale the width by the sample aspect ratio, and so does tgdfer (64 x 4/3 = 85.3 -> 85)."""
    path = tmp_path / "v.avi"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.sample_aspect_ratio = sar
        encode_frames(c, s, [pattern()] * 3)
    src = open_frames(path, backend)
    out = src.read([0, 2])
    assert out.shape == (2, H, width, 3) and src.header_size() == (H, width)
    expected = np.asarray(Image.fromarray(pattern()).resize((width, H), Image.Resampling.BILINEAR))
    centres = (slice(4, H - 4), slice(4, width - 4))  # block edges differ between resamplers
    assert np.abs(out[0][centres].astype(int) - expected[centres].astype(int)).mean() < 6
    if sar != 1:
        assert src.backend == "pyav"
    assert verify_random_access(path, backend, samples=2).ok


# ---------------------------------------------------------------------------- videos whose size changes midway


def spliced_webm(path, codec: str):
    """Five 64x48 frames (level 50..54), then five 32x24 (level 150..154) in one stream: a recording whose
    encoder lowered the resolution midway (a video call's, as bandwidth drops)."""
    parts = []
    for (w, h, level) in ((64, 48, 50), (32, 24, 150)):
        buf = io.BytesIO()
        with av.open(buf, "w", format="webm") as c:
            s = c.add_stream(codec, rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            encode_frames(c, s, [np.full((h, w, 3), level + i, np.uint8) for i in range(5)])
        buf.seek(0)
        parts.append(buf)
    with av.open(parts[0]) as a, av.open(parts[1]) as b, av.open(str(path), "w") as out:
        stream = out.add_stream_from_template(a.streams.video[0])
        end = 0
        for pkt in a.demux(a.streams.video[0]):
            if pkt.size:
                pkt.stream, end = stream, pkt.pts
                out.mux(pkt)
        for pkt in b.demux(b.streams.video[0]):
            if pkt.size:
                pkt.pts = pkt.dts = pkt.pts + end + 40
                pkt.stream = stream
                out.mux(pkt)
    return path


@pytest.mark.parametrize("codec", ["libvpx", "libvpx-vp9"])
@pytest.mark.parametrize("backend", ["auto", "decord"])
def test_a_stream_that_changes_size_is_shown_at_its_first_size(tmp_path, codec, backend):
    """PyAV gives each frame at its coded size; tgdfer scales every frame to the first one's, as players and
    decord do (before, such a clip failed: "the frame size changes inside the video")."""
    path = spliced_webm(tmp_path / "call.webm", codec)
    with av.open(str(path)) as c:
        assert {(f.width, f.height) for f in c.decode(video=0)} == {(64, 48), (32, 24)}  # the case at hand
    src = open_frames(path, backend)
    out = src.read(list(range(10)))  # [10, 48, 64, 3]
    assert out.shape == (10, 48, 64, 3)
    levels = out.reshape(10, -1).mean(1)
    assert np.abs(levels - [50, 51, 52, 53, 54, 150, 151, 152, 153, 154]).max() < 3
    assert verify_random_access(path, backend, samples=4).ok


def test_a_video_turned_by_another_angle_is_read_as_stored_with_one_warning(tmp_path, caplog):
    path = write_turned_video(tmp_path / "v.mp4", 30)
    with caplog.at_level(logging.WARNING, logger="tgdfer.orientation"):
        frames = open_frames(path).read([0, 3, 5])
    assert all(close(f, pattern()) for f in frames)
    assert caplog.text.count("30.0 degrees") == 1 and str(path) in caplog.text
