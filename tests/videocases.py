"""Small videos of every codec and container a user may bring, each frame identifiable by its pixels.

Frame i shows its index as a 7-bit pattern of black/white blocks on a grey level that steps with i,
plus a bar that moves with i (motion, so that encoders use their B-frames). After lossy coding a
frame is identified by the nearest frame of a sequential decode (`identify`).

    path = write_case(tmp_path, "xvid_avi")   # 90 frames, MPEG-4 Part 2 with B-frames, fourcc XVID
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

W, H = 64, 48


def pattern(i: int) -> np.ndarray:
    """Frame i: [H, W, 3] uint8 RGB."""
    img = np.full((H, W, 3), 40 + (i * 37) % 176, np.uint8)
    for b in range(7):  # index bits as 8x8 blocks along the top
        img[4:12, 4 + 8 * b : 12 + 8 * b] = 255 if (i >> b) & 1 else 0
    x = (3 * i) % (W - 8)
    img[24:40, x : x + 8] = (255, 64, 0)
    return img


@dataclass(frozen=True)
class Case:
    """How to encode one case."""

    codec: str
    suffix: str
    options: dict = field(default_factory=dict)  # encoder options
    n: int = 90
    pix_fmt: str = "yuv420p"
    max_b_frames: int | None = None
    gop: int = 12
    tag: str | None = None  # codec tag (fourcc), e.g. XVID
    vfr: bool = False  # presentation timestamps with gaps (variable frame rate)
    trim: int = 0  # the first `trim` frames get negative timestamps: the MP4 muxer writes an edit list hiding them


CASES = {
    "xvid_avi": Case("mpeg4", ".avi", max_b_frames=2, tag="XVID"),
    "mpeg4_mp4": Case("mpeg4", ".mp4", max_b_frames=2),
    "h264_bframes": Case("libx264", ".mp4", {"bf": "3", "b-adapt": "0"}),
    "h265": Case("libx265", ".mp4", {"x265-params": "bframes=3:b-adapt=0:log-level=error"}),
    "vp9_webm": Case("libvpx-vp9", ".webm"),
    "mjpeg_avi": Case("mjpeg", ".avi", pix_fmt="yuvj420p"),
    "vfr_mp4": Case("libx264", ".mp4", {"bf": "2"}, vfr=True),
    "trimmed_mp4": Case("libx264", ".mp4", {"bf": "2"}, trim=10),  # a cut or trimmed MP4: 90 packets, 80 frames shown
}


def available(case: Case) -> bool:
    return case.codec in av.codecs_available


def write(path: Path, case: Case) -> Path:
    """Encode case.n frames of `pattern` to path."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(case.codec, rate=25, options=dict(case.options))
        s.width, s.height, s.pix_fmt = W, H, case.pix_fmt
        s.codec_context.gop_size = case.gop
        if case.max_b_frames is not None:
            s.codec_context.max_b_frames = case.max_b_frames
        if case.tag:
            s.codec_tag = case.tag
        if case.vfr:
            s.codec_context.time_base = Fraction(1, 1000)
            s.time_base = Fraction(1, 1000)
        pts = 0
        for i in range(case.n):
            frame = av.VideoFrame.from_ndarray(pattern(i), format="rgb24")
            if case.vfr:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += (40, 40, 120, 10)[i % 4]  # 25 fps with gaps and bursts
            elif case.trim:
                frame.pts, frame.time_base = i - case.trim, Fraction(1, 25)
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def encode_frames(container, stream, images) -> None:
    """Encode `images` (each [H, W, 3] uint8 RGB) into `stream` of `container`, then flush the encoder."""
    for img in images:
        for pkt in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
            container.mux(pkt)
    for pkt in stream.encode():
        container.mux(pkt)


def write_case(root: Path, name: str) -> Path:
    return write(Path(root) / f"{name}{CASES[name].suffix}", CASES[name])


def sequential(path: Path, upto_error: bool = False) -> np.ndarray:
    """Every frame of a full sequential PyAV decode, in presentation order: [N, H, W, 3] uint8.

    upto_error: a decoding error ends the decode (the frames before it are returned) instead of
    raising."""
    out = []
    try:
        with av.open(str(path)) as c:
            for f in c.decode(c.streams.video[0]):
                out.append(f.to_ndarray(format="rgb24"))
    except av.FFmpegError:
        if not upto_error:
            raise
    return np.stack(out) if out else np.zeros((0, H, W, 3), np.uint8)


def identify(frames: np.ndarray, reference: np.ndarray) -> list[int]:
    """For each of frames [T, H, W, 3], the index of the nearest frame (least squared error) of
    reference [N, H, W, 3]."""
    a = frames.reshape(len(frames), -1).astype(np.float64)
    b = reference.reshape(len(reference), -1).astype(np.float64)
    d = (b * b).sum(1)[None] - 2 * a @ b.T  # [T, N]: squared distance less |a|^2
    return d.argmin(1).tolist()


def cut_packets(src: Path, dst: Path, skip: int) -> Path:
    """Copy src's video stream without its first `skip` packets (decode order): a stream that
    starts inside a GOP, at a frame that is not a keyframe."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s_in = i.streams.video[0]
        s_out = o.add_stream_from_template(s_in)
        for k, pkt in enumerate(i.demux(s_in)):
            if pkt.size == 0 or k < skip:
                continue
            pkt.stream = s_out
            o.mux(pkt)
    return dst


# ---------------------------------------------------------------------------- MPEG-4 Part 2 "not coded" frames
# XviD and DivX AVIs hold N-VOPs: a VOP header whose vop_coded bit is 0, 6-8 bytes, written for a dropped or
# repeated frame (an encoder's frame dropping, a capture's duplicate) and, in "packed bitstream" files, after
# each packet that packs a P-frame with the B-frame shown before it. FFmpeg's mpeg4 encoder writes neither, so
# these helpers rewrite its packets into those layouts, byte for byte as XviD lays them out.

VOP = b"\x00\x00\x01\xb6"  # vop_start_code


def vop_types(data: bytes) -> str:
    """The coding types of the VOPs in an MPEG-4 Part 2 packet, in order: "I", "P", "B", "S" each."""
    return "".join("IPBS"[data[j + 4] >> 6] for j in range(len(data) - 4) if data[j:j + 4] == VOP)


def nvop(slot: int, increment_bits: int = 5) -> bytes:
    """An N-VOP (ISO 14496-2 6.2.5: a P-VOP header with vop_coded 0) for frame slot `slot`: 6 bytes.
    increment_bits: the VOL's vop_time_increment length (5 for FFmpeg's encoder at 25 fps: resolution 25)."""
    bits = "01" + "0" + "1" + format(slot % 25, f"0{increment_bits}b") + "1" + "0"  # type P, modulo_time_base,
    bits += "0" + "1" * (-(len(bits) + 1) % 8)  # marker, time increment, marker, vop_coded = 0; then stuffing
    return VOP + int(bits, 2).to_bytes(len(bits) // 8, "big")


def packet_data(path: Path) -> list[bytes]:
    """The data of a file's video packets in file order (empty ones left out)."""
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def with_dropped_frames(chunks: list[bytes], every: int = 5) -> list[bytes]:
    """`chunks` with an N-VOP after every `every`-th packet (from the 3rd): frames an encoder dropped as
    unchanged (XviD's frame dropping), in a stream without B-frames."""
    out = []
    for k, data in enumerate(chunks):
        out.append(data)
        if k % every == 2:
            out.append(nvop(len(out)))
    return out


def packed_bframes(chunks: list[bytes], signalled: bool = True) -> list[bytes]:
    """An I/P/B stream in decode order (I0 P3 B1 B2 P6 B4 B5 ...) laid out as XviD's packed bitstream, one
    packet per frame slot: I0, P3+B1, B2, N-VOP, P6+B4, B5, N-VOP, ... signalled: the VOL carries XviD's
    user data "DivX503b1393p" (its "p": packed), as XviD 1.x writes it; without, a decoder cannot tell."""
    if signalled:  # the user data goes before the first VOP of each packet that holds a VOL header (0x120)
        chunks = [d[:d.find(VOP)] + b"\x00\x00\x01\xb2DivX503b1393p" + d[d.find(VOP):]
                  if b"\x00\x00\x01\x20" in d[:d.find(VOP)] else d for d in chunks]
    out, k = [chunks[0]], 1
    while k < len(chunks):
        ref, k = chunks[k], k + 1
        bs = []
        while k < len(chunks) and vop_types(chunks[k]) == "B":
            bs.append(chunks[k])
            k += 1
        if bs:
            out += [ref + bs[0], *bs[1:], nvop(len(out) + len(bs))]
        else:
            out.append(ref)
    return out


def write_chunks(template: Path, dst: Path, chunks: list[bytes]) -> Path:
    """An AVI with `template`'s video stream and `chunks` as its packets, one chunk per frame slot."""
    with av.open(str(template)) as i, av.open(str(dst), "w") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for n, data in enumerate(chunks):
            pkt = av.Packet(data)
            pkt.stream, pkt.pts, pkt.dts, pkt.time_base = s, n, n, Fraction(1, 25)
            pkt.is_keyframe = "I" in vop_types(data)
            o.mux(pkt)
    return dst
