"""Frame-exact decoding on every codec and container a user brings, proven by pixels.

A video frame index is the i-th frame of a full sequential PyAV decode, in presentation order.
Each case below is encoded here (tests/videocases.py: 64x48, 90 frames, each frame's index drawn
in its pixels) and every backend tgdfer offers is asked for frames by index; each returned frame
must equal the sequential decode's frame of that index. A backend that cannot be exact on a case
is not used for it: DecordSource raises NotFrameExact, and open_frames(path, "decord") reads
that file with PyAV.
"""

from __future__ import annotations

import importlib.util

import av  # noqa: F401  (before decord: importing decord first breaks PyAV's VP9 encoder)
import numpy as np
import pytest
import videocases as vc

from tgdfer import frames as frames_mod
from tgdfer.check import check_clip
from tgdfer.decoding_check import TOLERANCE, verify_random_access, verify_sample
from tgdfer.errors import FrameReadError
from tgdfer.frames import DECORD_EXACT_CODECS, DecordSource, NotFrameExact, open_frames, video_frame_count
from tgdfer.sampling import segment_indices

HAVE_DECORD = importlib.util.find_spec("decord") is not None
BACKENDS = ["auto", "pyav"] + (["decord"] if HAVE_DECORD else [])
# cases cut at the packet level so that the stream starts on a frame that is not a keyframe
CUTS = {"cut_h264": ("h264_bframes", 1), "cut_mpeg4": ("mpeg4_mp4", 4), "cut_h265": ("h265", 5)}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """{case: (path, sequential decode [N, H, W, 3])} for every case the installed encoders allow."""
    root = tmp_path_factory.mktemp("decoding")
    out = {}
    for name, case in vc.CASES.items():
        if vc.available(case):
            path = vc.write_case(root, name)
            out[name] = (path, vc.sequential(path))
    for name, (base, skip) in CUTS.items():
        if base in out:
            path = vc.cut_packets(out[base][0], root / f"{name}{vc.CASES[base].suffix}", skip)
            out[name] = (path, vc.sequential(path))
    return out


def case(videos, name):
    if name not in videos:
        pytest.skip(f"this PyAV build has no {vc.CASES[CUTS.get(name, (name,))[0]].codec} encoder")
    return videos[name]


def used(backend: str, path) -> str:
    """The backend that serves `backend` for this file: decord only where measured exact."""
    if backend == "auto":
        return "pyav"
    count = video_frame_count(path)
    return "decord" if backend == "decord" and count.codec in DECORD_EXACT_CODECS and not count.by_decoding else "pyav"


def assert_frames(out, ref, idx, backend):
    """out [T, H, W, 3] must be ref's frames idx, pixel for pixel (decord: within TOLERANCE);
    `backend` is the one that decoded them."""
    assert vc.identify(out, ref) == list(idx)
    diff = np.abs(out.astype(int) - ref[np.asarray(idx)].astype(int)).max()
    assert diff <= (TOLERANCE if backend == "decord" else 0), diff


ALL = list(vc.CASES) + list(CUTS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ALL)
def test_every_backend_returns_the_frames_asked_for(videos, name, backend):
    path, ref = case(videos, name)
    if backend == "decord" and used(backend, path) == "pyav":
        with pytest.raises(NotFrameExact, match="decord is not frame-exact here"):
            DecordSource(path)
    with open_frames(path, backend) as src:
        assert len(src) == len(ref)  # the frame count is the sequential decode's
        assert src.backend == used(backend, path)
        n = len(ref)
        idx = [n - 1, 0, 8, 25, 42, 59, 76, 8, n // 2, 1]  # any order, repeats: the stride 17
        assert_frames(src.read(idx), ref, idx, src.backend)
        view = segment_indices(n, 16, train=True, rng=3)
        assert_frames(src.read(view), ref, view.tolist(), src.backend)


@pytest.mark.parametrize("name", ["xvid_avi", "mpeg4_mp4"])
def test_xvid_and_mpeg4_part2_are_frame_exact_by_default(videos, name):
    path, ref = case(videos, name)
    src = open_frames(path)  # the default backend
    idx = list(range(8, len(ref), 17))
    out = src.read(idx)
    assert vc.identify(out, ref) == idx and np.array_equal(out, ref[idx])
    assert src.codec == "mpeg4" and src.backend == "pyav"


def test_sequential_decode_is_presentation_order_of_the_encoded_frames(videos):
    """The reference itself: frame i of the sequential decode is the i-th frame that was encoded."""
    truth = np.stack([vc.pattern(i) for i in range(90)])
    for name, c in vc.CASES.items():
        if name in videos:
            ref = videos[name][1]
            assert vc.identify(ref, truth) == list(range(c.trim, 90)), name  # an edit list hides the first `trim`


@pytest.mark.skipif(not HAVE_DECORD, reason="decord is not installed")
@pytest.mark.parametrize("name", ["xvid_avi", "mpeg4_mp4", "h265"])
def test_decord_random_access_returns_other_frames_on_these_codecs(videos, name):
    """The finding behind refusing decord here (decord 0.6.0): its get_batch, asked for every 7th
    frame, returns frames of other indices on MPEG-4 Part 2 (avi and mp4) and H.265 with B-frames."""
    import decord

    path, ref = case(videos, name)
    idx = list(range(5, len(ref), 7))
    got = vc.identify(decord.VideoReader(str(path), num_threads=1).get_batch(idx).asnumpy(), ref)
    wrong = [(i, g) for i, g in zip(idx, got) if i != g]
    assert len(wrong) >= 5, wrong  # measured: 13/13 (xvid_avi), 8/13 (mpeg4_mp4), 11/13 (h265) wrong


def test_an_edit_list_that_hides_frames_is_counted_by_decoding_and_is_no_fault(videos):
    """A trimmed MP4 (cut without re-encoding, a phone's trim): the demuxer flags the hidden frames'
    packets "discard" and the decoder does not return them. Counting packets gave 90 where 80 decode,
    so sampling asked for frames that never come and the clip failed as "truncated or corrupt"."""
    path, ref = case(videos, "trimmed_mp4")
    count = video_frame_count(path)
    assert (count.frames, count.trimmed, count.by_decoding) == (len(ref), True, True) and len(ref) == 80
    assert count.claimed == 90 and not count.overclaimed  # the header counts the hidden frames: not a fault
    report = check_clip(str(path), None)
    assert (report.status, report.decoded, report.claimed) == ("ok", 80, None)


def test_a_stream_cut_inside_a_gop_is_counted_by_decoding(videos):
    for name in CUTS:
        if name in videos:
            path, ref = videos[name]
            count = video_frame_count(path)
            assert count.by_decoding and count.frames == len(ref), name
            with av.open(str(path)) as c:
                packets = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
            assert packets != len(ref), name  # why packets cannot be trusted there
    path, ref = case(videos, "h264_bframes")
    assert video_frame_count(path) == frames_mod.VideoFrameCount(90, 90, "h264", by_decoding=False)


def _damage(path, tmp_path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) * 2 // 3]
    else:  # 400 garbage bytes in the middle of the frame data
        mid = len(data) // 2
        data[mid : mid + 400] = np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8).tobytes()
    out = tmp_path / f"{how}_{path.name}"
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("name", ["xvid_avi", "h264_bframes"])
def test_a_damaged_file_gives_a_frame_read_error_or_the_frames_that_decode(videos, tmp_path, name, how, backend):
    """Damage never yields other frames: each index reads the sequential decode's frame (concealed
    damage included) or raises FrameReadError naming the file. PyAV's sequential decode stops at
    the first packet it cannot decode, and so do "auto" and "pyav"; decord skips such packets and
    goes on, and the frames it returns past that point are the undamaged file's frames of the
    index asked for."""
    original, whole = case(videos, name)
    path = _damage(original, tmp_path, how)
    ref = vc.sequential(path, upto_error=True)  # a decoding error ends the sequential decode
    assert len(ref) < len(whole)  # the damage is seen
    try:
        src = open_frames(path, backend)
    except FrameReadError as e:
        assert e.path == str(path)
        return
    read = 0
    for i in range(len(src)):
        try:
            out = src.read([i])
        except FrameReadError as e:
            assert e.path == str(path) and ("corrupt" in str(e) or "truncated" in str(e)), str(e)
            continue
        read += 1
        if i < len(ref):
            assert np.abs(out[0].astype(int) - ref[i].astype(int)).max() <= (TOLERANCE if src.backend == "decord" else 0)
        else:
            assert src.backend == "decord", f"frame {i} read, but a sequential decode ends at {len(ref)}"
            assert vc.identify(out, whole) == [i]
    assert read >= min(len(ref), 10)  # the frames before the damage are there


# ---------------------------------------------------------------------------- check


@pytest.mark.parametrize("name", ["xvid_avi", "h264_bframes", "cut_h265"])
def test_verify_random_access_passes_the_default_backend(videos, name):
    path, ref = case(videos, name)
    r = verify_random_access(path, samples=4, seed=0)
    assert r.ok, r.reason
    assert len(r.indices) == 4 and r.returned == r.indices and r.max_diff == (0, 0, 0, 0)
    assert r.frames == r.decoded == len(ref)


@pytest.mark.skipif(not HAVE_DECORD, reason="decord is not installed")
def test_verify_random_access_names_the_wrong_frames(videos, monkeypatch):
    """With the guard lifted, decord on XviD returns other frames, and the check says which."""
    path, ref = case(videos, "xvid_avi")
    monkeypatch.setattr(frames_mod, "DECORD_EXACT_CODECS", ("mpeg4",))
    r = verify_random_access(path, backend="decord", samples=6, seed=1)
    assert not r.ok and r.backend == "decord"
    wrong = [(i, g) for i, g in zip(r.indices, r.returned) if i != g]
    assert wrong and r.reason.startswith("backend decord returned frame ")
    assert f"frame {wrong[0][1]} for {wrong[0][0]}" in r.reason


@pytest.mark.skipif(not HAVE_DECORD, reason="decord is not installed")
def test_verify_sample_passes_decord_where_it_is_used_and_flags_it_where_it_is_not_exact(videos, monkeypatch):
    paths = [str(videos[n][0]) for n in ("h264_bframes", "xvid_avi")]
    assert verify_sample(paths, 2, backend="decord") == {}  # XviD is read with PyAV
    assert verify_sample(paths, 2, backend="auto") == {}
    monkeypatch.setattr(frames_mod, "DECORD_EXACT_CODECS", ("h264", "mpeg4"))  # the guard lifted
    bad = verify_sample(paths, 2, backend="decord")
    assert set(bad) == {1} and bad[1].startswith("backend decord returned frame "), bad


@pytest.mark.skipif(not HAVE_DECORD, reason="decord is not installed")
def test_check_cli_verifies_random_access_with_the_pipelines_frame_backend(videos, tmp_path, monkeypatch):
    """`tgdfer check` passes XviD with the default backend and with "decord" (which reads it with
    PyAV); with decord's guard lifted it flags the file (misread, exit 1) naming the wrong frames;
    --verify-decode 0 turns the check off."""
    import json

    from typer.testing import CliRunner

    from tgdfer.cli import app

    data = tmp_path / "data"
    data.mkdir()
    for name in ("xvid_avi", "h264_bframes"):
        path = case(videos, name)[0]
        (data / path.name).write_bytes(path.read_bytes())
    lst = data / "test.txt"
    lst.write_text("xvid_avi.avi 90 0\nh264_bframes.mp4 90 1\n")
    config = tmp_path / "p.toml"
    config.write_text(f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(lst))} }}\n')
    run = CliRunner().invoke
    csv = ["--csv", str(tmp_path / "r.csv"), "--workers", "0"]
    decord = ["--set", 'extract.frame_backend="decord"']
    for extra in ([], decord):
        ok = run(app, ["check", str(config), *csv, *extra])
        assert ok.exit_code == 0 and "2 ok" in ok.output, ok.output
    monkeypatch.setattr(frames_mod, "DECORD_EXACT_CODECS", ("h264", "mpeg4"))
    bad = run(app, ["check", str(config), *csv, *decord])
    flat = " ".join(bad.output.split())
    assert bad.exit_code == 1 and "1 ok, 1 misread" in flat, bad.output
    assert "Traceback" not in bad.output
    import pandas as pd

    report = pd.read_csv(tmp_path / "r.csv").set_index("clip_id")
    assert report.loc["xvid_avi", "status"] == "misread"
    assert report.loc["xvid_avi", "reason"].startswith("backend decord returned frame ")
    off = run(app, ["check", str(config), *csv, *decord, "--verify-decode", "0"])
    assert off.exit_code == 0, off.output


# ---------------------------------------------------------------------------- colours as shown
# A video stores Y'CbCr and says how to turn it into RGB: its matrix (BT.601 for SD, BT.709 for HD)
# and its range (limited 16-235, as broadcast; full 0-255, as many phones and webcams record, by a
# yuvj pixel format or only by a flag). A decoder that ignores either shifts every colour: BT.601 on
# a BT.709 file moves a saturated red by ~15 levels; limited on a full-range file stretches contrast.

COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [230, 230, 230], [20, 20, 20], [190, 140, 110]],
                   np.uint8)
COLOUR_CASES = {  # name: (codec, container pixel format, matrix, range)
    "h264_bt709_limited": ("libx264", "yuv420p", "ITU709", "MPEG"),
    "h264_bt601_full": ("libx264", "yuv420p", "ITU601", "JPEG"),  # x264 writes yuvj420p
    "vp9_bt709_full_flag": ("libvpx-vp9", "yuv420p", "ITU709", "JPEG"),  # full range by the flag alone
    "h264_10bit_bt709_limited": ("libx264", "yuv420p10le", "ITU709", "MPEG"),
}


def write_colours(path, codec, pix_fmt, matrix, rng) -> None:
    """COLOURS as flat 64x48 frames, converted to Y'CbCr with `matrix` and `rng` and tagged with both."""
    from av.video.reformatter import Colorspace, ColorRange

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = vc.W, vc.H, pix_fmt
        stream.codec_context.colorspace = int(getattr(Colorspace, matrix))  # AVCOL_SPC: 1 = BT.709, 5 = BT.601
        stream.codec_context.color_range = int(getattr(ColorRange, rng))  # AVCOL_RANGE: 1 limited, 2 full
        if codec == "libx264":
            stream.codec_context.options = {"crf": "0"}
        for c in COLOURS:
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.broadcast_to(c, (vc.H, vc.W, 3))), format="rgb24")
            yuv = rgb.reformat(format=pix_fmt, dst_colorspace=getattr(Colorspace, matrix),
                               dst_color_range=getattr(ColorRange, rng))
            yuv.colorspace, yuv.color_range = stream.codec_context.colorspace, stream.codec_context.color_range
            for pkt in stream.encode(yuv):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(COLOUR_CASES))
def test_every_backend_honours_the_videos_colour_matrix_and_range(tmp_path, name, backend):
    codec, pix_fmt, matrix, rng = COLOUR_CASES[name]
    path = tmp_path / f"{name}.mkv"
    try:
        write_colours(path, codec, pix_fmt, matrix, rng)
    except (av.FFmpegError, ValueError) as e:
        pytest.skip(f"this PyAV build cannot encode {codec} {pix_fmt}: {e}")
    with open_frames(path, backend) as src:
        got = src.read(range(len(COLOURS)))[:, vc.H // 2, vc.W // 2].astype(int)  # [6, 3]
    assert np.abs(got - COLOURS).max() <= 4, got  # the round trip's own rounding: 3 levels measured

    # and the test can tell: the other matrix (or range) read back from the same Y'CbCr misses by far
    from av.video.reformatter import Colorspace, ColorRange

    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    other_matrix = "ITU601" if matrix == "ITU709" else "ITU709"
    wrong = np.stack([f.reformat(format="rgb24", src_colorspace=getattr(Colorspace, other_matrix))
                      .to_ndarray()[vc.H // 2, vc.W // 2] for f in frames]).astype(int)
    assert np.abs(wrong - COLOURS).max() >= 12, wrong
    if rng == "JPEG" and not frames[0].format.name.startswith("yuvj"):  # yuvj formats are full range whatever one asks
        wrong = np.stack([f.reformat(format="rgb24", src_color_range=ColorRange.MPEG)
                          .to_ndarray()[vc.H // 2, vc.W // 2] for f in frames]).astype(int)
        assert np.abs(wrong - COLOURS).max() >= 12, wrong


def _with_artwork(path, video_frames: int):
    """An MP4 whose first stream is a cover picture (attached_pic, a JPEG of grey 200), then AAC audio
    and, when `video_frames`, an H.264 stream of that many frames of grey 40."""
    import io
    from fractions import Fraction

    from PIL import Image

    jpeg = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 200, 200)).save(jpeg, format="JPEG")
    with av.open(str(path), "w", format="mp4") as c:
        cover = c.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 64, 48, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        audio = c.add_stream("aac", rate=8000)
        video = c.add_stream("libx264", rate=10) if video_frames else None
        if video is not None:
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        packet = av.Packet(jpeg.getvalue())
        packet.stream, packet.pts, packet.dts, packet.time_base = cover, 0, 0, Fraction(1, 90000)
        c.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        c.mux([*audio.encode(frame), *audio.encode()])
        for i in range(video_frames):
            img = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40, np.uint8), format="rgb24")
            img.pts = i
            c.mux(video.encode(img))
        if video is not None:
            c.mux(video.encode())
    return path


def test_attached_artwork_is_never_read_as_the_video(tmp_path):
    """An audio file with a thumbnail (yt-dlp --embed-thumbnail) was a confident 1-frame 'video'."""
    with pytest.raises(FrameReadError, match="its only picture is attached artwork"):
        open_frames(_with_artwork(tmp_path / "song.mp4", 0))
    source = open_frames(_with_artwork(tmp_path / "clip.mp4", 12))  # the cover is stream 0: the video is read
    assert len(source) == 12
    assert abs(int(np.asarray(source.read([0])[0]).mean()) - 40) <= 3  # not the cover's grey 200


# ---------------------------------------------------------------------------- MPEG-4 Part 2 N-VOPs


def test_mpeg4_not_coded_frames_are_counted_as_the_decoder_returns_them(videos, tmp_path):
    """XviD/DivX AVIs hold N-VOPs ("not coded" frames, 6-8 byte packets). Counted as frames, a healthy clip
    held more frames than it decodes, sampling asked for frames that never come, and it failed as
    "truncated". FFmpeg returns nothing for an N-VOP, or, in a packed bitstream, the B-frame packed before
    it: the count must be what the decode gives, layout by layout (measured: 108/90, 90/90, 90/60)."""
    ippp = vc.write(tmp_path / "ippp.avi", vc.Case("mpeg4", ".avi", max_b_frames=0, tag="XVID"))
    xvid, _ = case(videos, "xvid_avi")
    layouts = {  # name: (template, packets, frames decoded)
        "dropped": (ippp, vc.with_dropped_frames(vc.packet_data(ippp)), 90),
        "packed": (xvid, vc.packed_bframes(vc.packet_data(xvid)), 90),
        "packed_unsignalled": (xvid, vc.packed_bframes(vc.packet_data(xvid), signalled=False), 60),
    }
    for name, (template, chunks, decoded) in layouts.items():
        path = vc.write_chunks(template, tmp_path / f"{name}.avi", chunks)
        nvops = sum(len(d) <= 8 and vc.vop_types(d) == "P" for d in chunks)  # 6 bytes each
        assert nvops == {"dropped": 18, "packed": 30, "packed_unsignalled": 30}[name], name
        ref = vc.sequential(path)
        assert len(ref) == decoded, name  # what FFmpeg gives for these N-VOPs (the packed ones: a frame each)
        for backend in BACKENDS:
            with open_frames(path, backend) as src:
                assert len(src) == len(ref) and src.backend == "pyav", name
                idx = [len(ref) - 1, 0, len(ref) // 2, len(ref) - 2]
                assert np.array_equal(src.read(idx), ref[idx]), name  # the last frame too: no "truncated"
        count = video_frame_count(path)
        assert (count.frames, count.packets, count.claimed) == (len(ref), len(chunks), len(chunks)), name
        assert not count.overclaimed, name  # the AVI header counts the N-VOP chunks: no fault
        report = check_clip(str(path), len(ref))
        assert (report.status, report.decoded, report.claimed) == ("ok", len(ref), None), name
        assert verify_random_access(path, "auto").ok, name
    truth = np.stack([vc.pattern(i) for i in range(90)])
    packed = vc.sequential(tmp_path / "packed.avi")
    assert vc.identify(packed, truth) == list(range(90))  # packed: every frame, in order


# ---------------------------------------------------------------------------- alpha


ALPHA_CASES = {  # name: (encoder, pixel format, encoder options, suffix, lossless)
    "vp9_alpha_webm": ("libvpx-vp9", "yuva420p", {}, ".webm", False),  # alpha as BlockAdditional side data
    "prores_4444": ("prores_ks", "yuva444p10le", {"profile": "4444"}, ".mov", False),
    "qtrle_argb": ("qtrle", "argb", {}, ".mov", True),  # QuickTime Animation, "Millions of Colors+"
    "png_mov": ("png", "rgba", {}, ".mov", True),
}
UNDER = (200, 40, 90)  # the colour stored under the alpha
ALPHAS = (0, 96, 200, 255)  # alpha of each 16-pixel-wide column band


def alpha_image() -> np.ndarray:
    """[64, 64, 4] RGBA: UNDER everywhere, columns 0-15 alpha 0, 16-31 alpha 96, 32-47 200, 48-63 opaque."""
    img = np.zeros((64, 64, 4), np.uint8)
    img[..., :3] = UNDER
    for k, a in enumerate(ALPHAS):
        img[:, 16 * k:16 * (k + 1), 3] = a
    return img


def write_alpha(path, encoder, pix_fmt, options, n=3):
    with av.open(str(path), "w") as c:
        s = c.add_stream(encoder, rate=25, options=dict(options))
        s.width, s.height, s.pix_fmt = 64, 64, pix_fmt
        for _ in range(n):
            c.mux(s.encode(av.VideoFrame.from_ndarray(alpha_image(), format="rgba")))
        c.mux(s.encode())
    return path


@pytest.mark.parametrize("name", list(ALPHA_CASES))
def test_a_video_with_alpha_is_shown_over_white_as_an_rgba_png_frame_is(tmp_path, name):
    """Videos with an alpha plane were read with the colour stored under it (FFmpeg's RGB conversion drops
    the alpha; FFmpeg's own vp9 decoder drops VP9's), while RGBA PNG frames are shown over white."""
    from PIL import Image

    encoder, pix_fmt, options, suffix, lossless = ALPHA_CASES[name]
    if encoder not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {encoder} encoder")
    path = write_alpha(tmp_path / f"{name}{suffix}", encoder, pix_fmt, options)
    folder = tmp_path / "png"
    folder.mkdir()
    Image.fromarray(alpha_image()).save(folder / "00001.png")
    png = open_frames(folder).read([0])[0].astype(int)  # [64, 64, 3]: the image frame, over white
    a = np.array(ALPHAS, float)[:, None]
    expected = np.array(UNDER, float) * a / 255 + 255 * (1 - a / 255)  # [4, 3]: "over" white, by value
    assert np.abs(png[32, 8::16] - expected).max() <= 0.5
    for backend in BACKENDS:
        with open_frames(path, backend) as src:
            assert len(src) == 3 and src.backend == "pyav", backend  # decord drops the alpha: not offered
            out = src.read([0, 2]).astype(int)  # [2, 64, 64, 3]
        bands = out[:, 32, 8::16]  # [2, 4, 3]: each band's centre
        assert (bands[:, 0] == 255).all(), bands  # alpha 0: white, not the colour under it
        # measured: 0.4 (lossless), 2.6 (VP9), 1.1 (ProRes)
        assert np.abs(bands - expected).max() <= (1 if lossless else 4), bands
        if lossless:  # one compositing for both: bit for bit the PNG frame's pixels
            assert np.array_equal(out[0], png), np.abs(out[0] - png).max()
    assert verify_random_access(path, "auto").ok  # check's reference decode shows the same pixels
    assert video_frame_count(path).alpha


def test_vp9_alpha_without_libvpx_decoder_warns_naming_the_file_and_reads_the_stored_colours(tmp_path, monkeypatch,
                                                                                           caplog):
    path = write_alpha(tmp_path / "clip.webm", "libvpx-vp9", "yuva420p", {})
    monkeypatch.setattr(frames_mod, "_has_decoder", lambda name: name != "libvpx-vp9", raising=False)
    with caplog.at_level("WARNING", logger="tgdfer.frames"):
        with open_frames(path) as src:
            out = src.read([0, 1, 2]).astype(int)
    assert np.abs(out[:, 32, 8] - UNDER).max() <= 4  # FFmpeg's vp9 decoder: the alpha is lost
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(lines) == 1 and str(path) in lines[0] and "libvpx-vp9" in lines[0], lines
