"""Frame sources: folders and videos give the right frames; every bad input is a FrameReadError."""

import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest
from PIL import Image

from tgdfer import frames as frames_mod
from tgdfer.check import check_clip, inspect_clip
from tgdfer.errors import ConfigError, FrameReadError
from tgdfer.frames import open_frames
from videocases import encode_frames

N, SIZE = 20, 32


def colour(i: int) -> np.ndarray:
    """A solid RGB colour per frame, far enough apart to identify frames after lossy coding."""
    return np.array([12 * i % 256, (255 - 12 * i) % 256, (40 + 97 * i) % 256], dtype=np.uint8)


def frame_ids(clip: np.ndarray) -> list[int]:
    """Which frame each of `clip` [T, H, W, 3] is: the nearest mean colour."""
    table = np.stack([colour(i) for i in range(N)]).astype(float)  # [N, 3]
    means = clip.reshape(len(clip), -1, 3).mean(1)  # [T, 3]
    return np.abs(means[:, None, :] - table[None]).sum(-1).argmin(1).tolist()


def write_video(path, n=N, codec="libx264", faststart=False):
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream(codec, rate=25)
        s.width = s.height = SIZE
        s.pix_fmt = "yuv420p"
        encode_frames(c, s, (np.broadcast_to(colour(i), (SIZE, SIZE, 3)) for i in range(n)))
    return path


def write_folder(path, n=N, name="00001_{:05d}.jpg", start=1, size=SIZE):
    path.mkdir(parents=True)
    for i in range(n):
        img = np.broadcast_to(colour(i), (size, size, 3)).copy()
        Image.fromarray(img).save(path / name.format(i + start), quality=95)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    return {
        "mp4": write_video(root / "clip.mp4"),
        "faststart": write_video(root / "fast.mp4", faststart=True),
        "webm": write_video(root / "clip.webm", codec="libvpx-vp9"),
        "folder": write_folder(root / "00001"),
        "root": root,
    }


# ---------------------------------------------------------------------------- folders


def test_folder_reads_requested_frames_in_requested_order(media):
    src = open_frames(media["folder"])
    assert len(src) == N and src.backend == "folder"
    idx = [7, 0, 19, 7, 3, 3]
    out = src.read(idx)
    assert out.shape == (6, SIZE, SIZE, 3) and out.dtype == np.uint8
    assert frame_ids(out) == idx
    assert np.abs(out.astype(int) - np.stack([colour(i) for i in idx])[:, None, None]).max() <= 3


def test_folder_reads_frames_in_natural_order_and_ignores_other_files(tmp_path):
    folder = write_folder(tmp_path / "c", n=12, name="f_{}.png")  # f_1.png ... f_12.png, unpadded
    (folder / "notes.txt").write_text("not a frame")
    (folder / "Thumbs.db").write_bytes(b"\x00" * 10)
    (folder / "._f_1.png").write_bytes(b"macOS resource fork, not an image")
    src = open_frames(folder)
    assert len(src) == 12
    assert [p.name for p in src.files[:3]] == ["f_1.png", "f_2.png", "f_3.png"]
    assert src.files[-1].name == "f_12.png"
    assert frame_ids(src.read(range(12))) == list(range(12))


@pytest.mark.parametrize("names", [
    ["12-30-01.500.png", "12-30-01.750.png", "12-30-02.000.png", "12-30-02.250.png"],  # a clock time, milliseconds last
    ["t0.5.png", "t1.0.png", "t1.5.png", "t10.0.png"],  # seconds with a fraction
    ["frame_2_face_1.png", "frame_2_face_2.png", "frame_10_face_1.png"],  # the frame number is not the last one
    ["face_3_frame_9.png", "face_3_frame_10.png", "face_3_frame_100.png"],
    ["img9.png", "IMG10.jpg", "img11.png"],  # mixed suffixes and case
])
def test_folder_order_is_the_natural_order_of_the_names(tmp_path, names):
    folder = tmp_path / "c"
    folder.mkdir()
    for k in reversed(range(len(names))):  # written last to first: the listing order cannot give it away
        Image.fromarray(np.broadcast_to(colour(k), (8, 8, 3)).copy()).save(folder / names[k], quality=95)
    src = open_frames(folder)
    assert [p.name for p in src.files] == names
    assert frame_ids(src.read(range(len(names)))) == list(range(len(names)))


def test_a_folder_names_the_files_unlike_its_frames(tmp_path):
    folder = write_folder(tmp_path / "c", n=4, name="{:05d}.jpg")
    for stray in ("00002 2.jpg", "cover.jpg"):  # a file manager's copy, a cover image
        (folder / stray).write_bytes((folder / "00001.jpg").read_bytes())
    src = open_frames(folder)
    assert len(src) == 6 and src.strays == ["00002 2.jpg", "cover.jpg"]
    assert open_frames(write_folder(tmp_path / "d", n=3, name="img_{}.png")).strays == []


@pytest.mark.parametrize("names", [["1.png", "01.png", "2.png"], ["00001.jpg", "00001.png", "00002.jpg"]])
def test_two_files_of_one_frame_number_are_refused_by_name(tmp_path, names):
    folder = tmp_path / "c"
    folder.mkdir()
    for k, name in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), 10 * k, np.uint8)).save(folder / name)
    first, second = sorted(names[:2])
    with pytest.raises(FrameReadError, match=rf"{first} and {second} are the same frame number"):
        open_frames(folder)
    with pytest.raises(FrameReadError, match="same frame number"):
        inspect_clip(str(folder))  # tgdfer check


@pytest.mark.parametrize("kind", ["broken link", "folder"])
def test_a_frame_name_that_is_not_a_file_is_refused_not_skipped(tmp_path, kind):
    folder = write_folder(tmp_path / "c", n=3, name="{:05d}.jpg")
    (folder / "00002.jpg").unlink()
    if kind == "folder":
        (folder / "00002.jpg").mkdir()
    else:
        (folder / "00002.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(FrameReadError, match=f"00002.jpg is named like a frame but is a {kind}"):
        open_frames(folder)  # skipped, 00003.jpg would be read as frame 1
    with pytest.raises(FrameReadError, match=kind):
        inspect_clip(str(folder))  # tgdfer check


@pytest.mark.parametrize("content,why", [(b"", "the file is empty \\(0 bytes\\)"),
                                          (b"<html><body>404</body></html>", "it starts with b'<html><body>404<'")])
def test_a_frame_that_is_no_image_is_named_with_what_it_holds(tmp_path, content, why):
    folder = write_folder(tmp_path / "c", n=3, name="{:05d}.jpg")
    (folder / "00002.jpg").write_bytes(content)
    src = open_frames(folder)
    with pytest.raises(FrameReadError, match=rf"frame file 00002.jpg \(index 1\) is not a readable image: .*{why}") as e:
        src.read([0, 1])
    assert "0x" not in str(e.value) and "BytesIO" not in str(e.value)  # the same text in every run


def test_folder_decodes_each_distinct_frame_once(media, monkeypatch):
    src = open_frames(media["folder"])
    loaded = []
    original = frames_mod.FolderSource._load
    monkeypatch.setattr(frames_mod.FolderSource, "_load", lambda s, i: loaded.append(i) or original(s, i))
    out = src.read([5, 5, 2, 5, 2])
    assert sorted(loaded) == [2, 5]
    assert frame_ids(out) == [5, 5, 2, 5, 2]


@pytest.mark.parametrize("options", [dict(quality=75), dict(quality=95, subsampling=0), dict(quality=90, progressive=True),
                                     dict(quality=60, subsampling=1), "grey"])
def test_folder_jpegs_decode_to_the_pixels_pil_gives(tmp_path, options):
    """The fast JPEG decoder (torchvision) must equal PIL's pixels exactly, whatever the encoder's options."""
    folder = tmp_path / "c"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):  # smooth gradients plus noise: chroma subsampling and the IDCT both matter
        ramp = np.linspace(0, 255, 37 * 29 * 3).reshape(37, 29, 3)
        image = np.clip(ramp + rng.normal(0, 40, ramp.shape), 0, 255).astype(np.uint8)
        if options == "grey":
            Image.fromarray(image[..., 0]).save(folder / f"a_{k}.jpg", quality=80)
        else:
            Image.fromarray(image).save(folder / f"a_{k}.jpg", **options)
    out = open_frames(folder).read([0, 1, 2])
    pil = np.stack([np.asarray(Image.open(folder / f"a_{k}.jpg").convert("RGB")) for k in range(3)])
    assert out.shape == (3, 37, 29, 3) and np.array_equal(out, pil)


def test_folder_converts_grey_to_rgb(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 77, np.uint8)).save(folder / "a_1.png")
    out = open_frames(folder).read([0])
    assert out.shape == (1, 8, 8, 3) and out.min() == out.max() == 77


def transparent_frames(folder) -> list[str]:
    """PNGs whose transparent pixels hide a colour (green under alpha 0) and whose edge is half
    transparent: RGBA, LA, a palette with tRNS, grey with a tRNS value."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    alpha = np.full((6, 8), 255, np.uint8)
    alpha[:, :3], alpha[:, 3] = 0, 128
    rgb[:, :3] = (0, 255, 0)  # the hidden colour a background-removal tool leaves under alpha 0
    Image.fromarray(np.dstack([rgb, alpha])).save(folder / "a_1.png")
    Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA").save(folder / "a_2.png")
    pal = Image.fromarray(rgb).quantize(8)
    pal.info["transparency"] = int(np.asarray(pal)[0, 0])  # the palette entry of the hidden green
    pal.save(folder / "a_3.png", transparency=pal.info["transparency"])
    grey = Image.fromarray(np.where(alpha > 0, 90, 30).astype(np.uint8))
    grey.save(folder / "a_4.png", transparency=30)
    return ["a_1.png", "a_2.png", "a_3.png", "a_4.png"]


def test_transparent_frames_are_shown_over_white_as_a_viewer_shows_them(tmp_path):
    from PIL import ImageOps

    folder = tmp_path / "c"
    folder.mkdir()
    names = transparent_frames(folder)
    out = open_frames(folder).read(range(len(names)))
    for k, name in enumerate(names):
        with Image.open(folder / name) as im:  # the reference: PIL's own "over" on a white canvas
            rgba = ImageOps.exif_transpose(im).convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        viewer = np.asarray(Image.alpha_composite(white, rgba).convert("RGB")).astype(int)
        assert np.abs(out[k].astype(int) - viewer).max() <= 1, name
        assert (out[k][:, :3] == 255).all(), name  # fully transparent: white, not the hidden green
@pytest.mark.parametrize("suffix,options", [(".bmp", {}), (".webp", {"lossless": True}), (".tif", {}),
                                            (".tiff", {"compression": "tiff_lzw"}), (".PNG", {})])
def test_folder_reads_other_lossless_image_formats(tmp_path, suffix, options):
    folder = tmp_path / "c"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.broadcast_to(colour(i), (8, 8, 3)).copy()).save(folder / f"f_{i + 1}{suffix}", **options)
    out = open_frames(folder).read([2, 0])
    assert [tuple(f[0, 0]) for f in out] == [tuple(colour(2)), tuple(colour(0))]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_frames_keep_their_high_byte_not_clipped_to_white(tmp_path, suffix):
    """PIL's convert("RGB") clips a 16-bit grey image at 255: a ramp over 0..65535 came out nearly all white."""
    folder = tmp_path / "c"
    folder.mkdir()
    ramp = np.linspace(0, 65535, 16 * 16).astype(np.uint16).reshape(16, 16)  # [16, 16]
    Image.fromarray(ramp).save(folder / f"f_1{suffix}")
    with Image.open(folder / f"f_1{suffix}") as im:
        assert im.mode.startswith("I")  # the case at hand
    out = open_frames(folder).read([0])[0]
    np.testing.assert_array_equal(out, np.repeat((ramp >> 8).astype(np.uint8)[..., None], 3, axis=-1))


def test_a_float_image_frame_is_refused_by_name(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(folder / "f_1.tif")
    with pytest.raises(FrameReadError, match=r"f_1.tif \(index 0\) is not a readable image: a 32-bit float image"):
        open_frames(folder).read([0])


def test_folder_frames_of_other_sizes_read_at_the_first_frames_size(tmp_path):
    """Per-frame face crops vary in size: each odd frame is scaled to the first frame's size (before, the
    clip failed); the device decoder is left out for such a clip."""
    folder = write_folder(tmp_path / "c", n=6)
    odd = np.full((16, 24, 3), 255, np.uint8)  # 24 wide, 16 high: its left half colour 3, its right half white
    odd[:, :12] = colour(3)
    (folder / "00001_00004.jpg").unlink()
    Image.fromarray(odd).save(folder / "00001_00004.png")
    Image.fromarray(np.broadcast_to(colour(5), (16, 24, 3)).copy()).save(folder / "00001_00006.jpg", quality=95)
    src = open_frames(folder)
    out = src.read(range(6))
    assert out.shape == (6, SIZE, SIZE, 3) and frame_ids(out[[0, 1, 2, 4, 5]]) == [0, 1, 2, 4, 5]
    left, right = out[3][:, :14].astype(int), out[3][:, 18:].astype(int)  # scaled whole: neither cropped nor padded
    assert np.abs(left - colour(3).astype(int)).max() <= 2 and right.min() >= 253
    assert src.read_jpegs(np.array([4, 5])) is None and src.read_jpegs(np.array([0, 1, 4])) is not None  # 5: its size
    assert check_clip(str(folder), 6).status == "ok"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_folder_with_an_unreadable_image_names_it(tmp_path, damage):
    folder = write_folder(tmp_path / "c", n=5)
    bad = folder / "00001_00003.jpg"
    data = bad.read_bytes()
    bad.write_bytes(b"\x13\x37" * 300 if damage == "garbage" else data[: len(data) // 2])
    src = open_frames(folder)
    assert frame_ids(src.read([0, 1, 3])) == [0, 1, 3]
    with pytest.raises(FrameReadError, match=r"00001_00003\.jpg \(index 2\) is not a readable image") as e:
        src.read([2])
    assert e.value.path == str(folder)


def test_empty_folder_and_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameReadError, match="no frame images in this folder"):
        open_frames(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.txt").write_text("hi")
    with pytest.raises(FrameReadError, match="no frame images"):
        open_frames(tmp_path / "other")


# ---------------------------------------------------------------------------- videos


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
@pytest.mark.parametrize("kind", ["mp4", "faststart", "webm"])
def test_video_backends_return_the_right_frames(media, backend, kind):
    src = open_frames(media[kind], backend=backend)
    assert len(src) == N
    assert src.backend == ("pyav" if backend == "auto" else backend)
    idx = [19, 0, 4, 4, 11, 18, 1]
    out = src.read(idx)
    assert out.shape == (7, SIZE, SIZE, 3) and out.dtype == np.uint8
    assert frame_ids(out) == idx


@pytest.mark.parametrize("kind", ["mp4", "webm"])
def test_decord_and_pyav_agree_on_every_frame(media, kind):
    a = open_frames(media[kind], "decord").read(range(N)).astype(int)
    b = open_frames(media[kind], "pyav").read(range(N)).astype(int)
    assert np.abs(a - b).max() <= 2  # same FFmpeg decoder; allow colour-conversion rounding


def test_pyav_decodes_only_up_to_the_last_frame_asked_for(tmp_path):
    """A truncated file (header first, data cut) still gives its early frames with PyAV."""
    full = write_video(tmp_path / "full.mp4", n=200, faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    src = open_frames(cut, "pyav")
    # the container still announces 200 frames; the source counts the ones the file holds
    assert 0 < len(src) < 200 and src.claimed == 200
    assert frame_ids(src.read([0, 3, 1])) == [0, 3, 1]
    with pytest.raises(FrameReadError, match="header claims 200: the file is truncated"):
        src.read([199])


def test_out_of_range_index_is_a_frame_read_error(media):
    for path in (media["folder"], media["mp4"]):
        src = open_frames(path)
        with pytest.raises(FrameReadError, match=r"frame index 20 is out of range: the clip has 20 frames"):
            src.read([0, 20])
        with pytest.raises(FrameReadError, match="frame index -1"):
            src.read([-1])


def test_bad_indices_and_backend_are_programming_errors(media):
    src = open_frames(media["mp4"])
    with pytest.raises(ValueError, match="integers"):
        src.read([0.5, 1.0])
    with pytest.raises(ValueError, match="non-empty"):
        src.read([])
    with pytest.raises(ConfigError, match="backend"):
        open_frames(media["mp4"], backend="opencv")


def test_missing_path(tmp_path):
    with pytest.raises(FrameReadError, match="no such file or directory") as e:
        open_frames(tmp_path / "nope.mp4")
    assert e.value.path == str(tmp_path / "nope.mp4")


def _damaged_files(media, tmp_path):
    data = media["mp4"].read_bytes()
    fast = media["faststart"].read_bytes()
    files = {
        "half": data[: len(data) // 2],  # moov atom (at the end) lost
        "half_faststart": fast[: len(fast) // 2],  # header intact, frame data cut
        "garbage": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "empty": b"",
        "text": b"video_name,label\n00001,1\n",
    }
    for name, blob in files.items():
        (tmp_path / f"{name}.mp4").write_bytes(blob)
    return files


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_damaged_videos_raise_frame_read_error(media, tmp_path, backend):
    for name in _damaged_files(media, tmp_path):
        path = tmp_path / f"{name}.mp4"
        with pytest.raises(FrameReadError) as e:
            open_frames(path, backend).read(range(N))
        assert e.value.path == str(path)
        assert "corrupt" in str(e.value) or "truncated" in str(e.value), str(e.value)


def test_auto_is_pyav_and_needs_no_decord(media, monkeypatch):
    def missing():
        raise ImportError("No module named 'decord'")

    monkeypatch.setattr(frames_mod, "_import_decord", missing)
    src = open_frames(media["mp4"])
    assert src.backend == "pyav"
    assert frame_ids(src.read([3, 1])) == [3, 1]
    with pytest.raises(ConfigError, match="decord is not installed"):
        open_frames(media["mp4"], backend="decord")


def test_audio_only_file_has_no_video_stream(tmp_path):
    import wave

    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, np.int16).tobytes())
    with pytest.raises(FrameReadError, match="no video stream"):
        open_frames(path, "pyav")
    with pytest.raises(FrameReadError, match="no video stream"):
        open_frames(path)


@pytest.mark.parametrize("backend", ["auto", "decord"])
def test_a_cover_picture_stream_before_the_video_is_not_read_as_the_clip(tmp_path, backend):
    """An MKV with artwork: stream 0 is one MJPEG picture, stream 1 the video. tgdfer reads the stream
    FFmpeg's CLI and players pick, not the first (which gave a one-frame clip of the cover)."""
    path = tmp_path / "with_cover.mkv"
    with av.open(str(path), "w") as c:
        cover = c.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 16, 16, "yuvj420p"
        video = c.add_stream("libx264", rate=25)
        video.width = video.height = SIZE
        video.pix_fmt = "yuv420p"
        encode_frames(c, cover, [np.full((16, 16, 3), 255, np.uint8)])
        encode_frames(c, video, (np.broadcast_to(colour(i), (SIZE, SIZE, 3)) for i in range(N)))
    src = open_frames(path, backend)
    assert len(src) == N and frames_mod.video_frame_count(path).frames == N
    assert frame_ids(src.read([0, 7, 19])) == [0, 7, 19]
    assert frames_mod.decode_all(path) == N


_FUZZ = textwrap.dedent(
    """
    import sys
    from tgdfer.errors import FrameReadError
    from tgdfer.frames import open_frames
    for path in sys.argv[2:]:
        try:
            with open_frames(path, sys.argv[1]) as src:
                out = src.read(range(len(src)))
            print("ok", out.shape[0], flush=True)
        except FrameReadError as e:
            print("FrameReadError", flush=True)
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("backend", ["decord", "auto"])
def test_damaged_h264_never_kills_the_process(media, tmp_path, backend):
    """Bytes flipped or overwritten inside the frame data: decord either conceals the damage
    or raises; the process survives (run in a child so a native crash fails only this test)."""
    data = bytearray(media["faststart"].read_bytes())
    rng = np.random.default_rng(7)
    paths = []
    for k in range(16):
        blob = bytearray(data)
        start = int(data.find(b"mdat")) + 8
        if k % 2:
            for i in rng.integers(start, len(blob), size=int(rng.integers(1, 40))):
                blob[i] = int(rng.integers(0, 256))
        else:
            i = int(rng.integers(start, len(blob)))
            blob[i : i + 300] = rng.integers(0, 256, len(blob[i : i + 300]), dtype=np.uint8).tobytes()
        paths.append(tmp_path / f"damaged_{k}.mp4")
        paths[-1].write_bytes(bytes(blob))
    res = subprocess.run(
        [sys.executable, "-c", _FUZZ, backend, *map(str, paths)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.split()
    assert lines[-1] == "done"
    outcomes = [line for line in res.stdout.splitlines()[:-1]]
    assert len(outcomes) == len(paths)
    assert all(o == f"ok {N}" or o == "FrameReadError" for o in outcomes), outcomes


def test_a_video_clip_is_opened_twice_header_and_count_in_one_open(media, monkeypatch):
    """open_frames checks the header against the limits and counts the packets in one open; reading
    the frames is the second (it was three opens: header, count, decode)."""
    opened = []
    real = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    src = open_frames(media["mp4"])
    assert len(opened) == 1 and src.frame_hw == (SIZE, SIZE)  # (H, W) from the header
    assert src.read([0, 3]).shape[0] == 2
    assert len(opened) == 2
