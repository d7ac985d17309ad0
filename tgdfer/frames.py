"""Frame sources: read chosen frames of one clip, from a folder of images or a video file.

    src = open_frames("/data/DFEW/clip_224x224/00001")    # folder of JPEG/PNG frames
    src = open_frames("/data/videos/00001.avi")           # video: PyAV, frame-exact
    frames = src.read([0, 5, 5, 2])                       # [T, H, W, 3] uint8 RGB

Frame images: an RGB (YCbCr) JPEG is decoded by torchvision's `decode_jpeg` (libjpeg-turbo), 1.7x
faster than PIL here and equal to PIL's pixels bit for bit (tests/test_frames.py); every other image
(PNG, BMP, WebP, TIFF, grey or CMYK JPEG) by PIL, 16-bit grey by its high byte (`pil_rgb`). PIL
reads each file's header first, so the frame_pixels limit is checked before any pixel is decoded.

Indices are 0-based positions in the clip's frame order: frame files in natural order of their
names (`frame_order`: `00001_00012.jpg` is index 11 when numbering starts at 1; `f2` before `f10`;
two files of one number refused), or, for a video, the
i-th frame of a full sequential decode in presentation order. Every video backend returns
exactly that frame (tests/test_decoding.py proves it by pixels, codec by codec). A source is used
by one thread at a time; open one per clip.

Frames come as shown, not as stored: a video's display matrix (a phone's portrait recording, stored
landscape) and an image's EXIF Orientation tag are applied (tgdfer.orientation), and a video's
non-square pixels (its sample aspect ratio) are scaled to square ones, as players and viewers show
them, so faces stand upright in their proportions and every backend gives the same pixels. A frame
with an alpha plane, image or video (VP9 with alpha, ProRes 4444, QuickTime Animation, PNG in MOV), is
shown over white by one function (`orientation.over_background`); VP9's alpha, which FFmpeg's vp9
decoder drops, is decoded with libvpx-vp9 (`decoded_frames`, which every video decode here goes through).

Video backends: "auto" (the default) and "pyav" decode with PyAV sequentially from the start up to
the last frame asked for (exact by construction). "decord" uses decord's random access, which
returns other frames than those asked for on MPEG-4 Part 2 (XviD) and H.265 with B-frames; it is
used only for the codecs in DECORD_EXACT_CODECS on a stream that starts at a keyframe; on any
other file `open_frames(path, "decord")` reads with PyAV instead (the frames are the same by
definition; docs/extraction.md, "Video decoding").

A video's frame count (`video_frame_count`) is the number of frames a sequential decode gives:
its packets that hold data (no decoding), not the container header's claim, which can be larger
(empty "dropped frame" chunks in AVI files, a file cut short); a stream that starts inside a GOP,
one an edit list trims and an MPEG-4 Part 2 stream with "not coded" frames (N-VOPs) are counted by
decoding them, since decoders drop or add frames there.
Every failure (missing path, empty folder, unreadable image, corrupt or truncated video, index
out of range) raises `FrameReadError(path, reason)`, never a bare decoder exception, so the
extract stage can record the clip as failed and go on. PyAV stops at the first packet it cannot
decode: the frames before it read, any frame from it on raises FrameReadError.

decord on corrupt input: decord 0.6.0 was fuzzed here with 900 damaged files (H.264/mp4,
MPEG-4/avi, VP9/webm; flipped bytes, overwritten blocks, truncation, garbage, empty files).
It never crashed the process: it raised on open (`RuntimeError`) or on decode (`DECORDError`),
or returned concealed frames, as PyAV does. The crashes reported upstream (an uncaught
`dmlc::Error` in decord's decoder thread, GPU decoding) were not reproduced on CPU. A run that
must survive any native crash should decode in worker processes. Importing decord before PyAV
breaks PyAV's libvpx (VP9) encoder in that process; tgdfer imports PyAV first.
"""

from __future__ import annotations

import abc
import io
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from . import limits, orientation
from .errors import ConfigError, FrameReadError

log = logging.getLogger(__name__)

Backend = Literal["auto", "decord", "pyav"]
BACKENDS = ("auto", "decord", "pyav")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # what PIL reads; JPEG the fast path


def open_frames(path: str | Path, backend: Backend = "auto") -> FrameSource:
    """Open a clip: a directory is a folder of frame images, a file is a video.

    backend (videos only): "auto" or "pyav" = PyAV, frame-exact on every codec; "decord" =
    decord's random access where it was measured exact, PyAV on any other file.
    """
    if backend not in BACKENDS:
        raise ConfigError("backend", f"{backend!r} is not one of {', '.join(BACKENDS)}")
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if not path.is_file():
        raise FrameReadError(path, "no such file or directory")
    # the header checked against the limits before any decoder opens the file (decoders allocate by
    # its size), in the same open that counts the frames
    count = video_frame_count(path, check=True)
    if backend == "decord":
        try:
            src = DecordSource(path, count=count)
        except NotFrameExact as e:
            log.debug("%s; reading it with PyAV", e)
            src = PyAVSource(path, count=e.count)
    else:
        src = PyAVSource(path, count=count)  # "auto" and "pyav"
    src.frame_hw = None if count.size is None else (count.size[0], orientation.shown_width(count.size[1], count.sar))
    return src


class FrameSource(abc.ABC):
    """The frames of one clip. `len(src)` frames; `src.read(indices)` decodes some of them."""

    backend: str  # "folder" | "decord" | "pyav": who decodes the frames
    claimed: int | None = None  # a video header's frame count when it claims more than len(self)
    frame_hw: tuple[int, int] | None = None  # (H, W) from the header, known before decoding (limits)

    def __init__(self, path: Path):
        self.path = path

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of frames in the clip."""

    @abc.abstractmethod
    def _read_sorted(self, idx: np.ndarray) -> np.ndarray:
        """Frames `[U, H, W, 3]` uint8 for sorted, distinct, in-range indices `idx` `[U]`."""

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames `[T, H, W, 3]` uint8 RGB for `indices` `[T]` (any order, repeats allowed).

        Each distinct frame is decoded once. To decode a video once for several views, pass
        all their indices in one call and split the result.
        """
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"indices must be a non-empty 1-D sequence, got shape {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
        n = len(self)
        bad = idx[(idx < 0) | (idx >= n)]
        if bad.size:
            claimed = self.claimed
            why = (f"its header claims {claimed}: the file is truncated or holds empty frames"
                   if claimed is not None and claimed > n else
                   "indices are 0-based; does the annotation's frame count match the clip?")
            raise FrameReadError(
                self.path, f"frame index {int(bad[0])} is out of range: the clip has {n} frames ({why})",
            )
        unique, inverse = np.unique(idx, return_inverse=True)
        check_read(self, len(unique))
        return self._read_sorted(unique)[inverse]  # [T, H, W, 3]

    def header_size(self) -> tuple[int, int] | None:
        """(H, W) of the frames as the header says, before decoding (None when unknown)."""
        return self.frame_hw

    def close(self) -> None:
        """Release the decoder (a no-op where nothing is held open)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, frames={len(self)})"


# ---------------------------------------------------------------------------- folders


_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str) -> list:
    """Natural order: digit runs compare as numbers, so "f2.jpg" sorts before "f10.jpg"."""
    return [int(t) if t.isdigit() else t.lower() for t in _DIGITS.split(name)]


_DIGIT_MARKS = str.maketrans("0123456789", "##########")


def is_frame_name(name: str) -> bool:
    """A file name a frame folder's frame may have: an image suffix (any case), not hidden (macOS's
    `._00001.jpg` AppleDouble files, `.DS_Store`)."""
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def frame_entries(folder: str | os.PathLike) -> list[os.DirEntry]:
    """The frame files of a folder (`is_frame_name`), unsorted, from one scandir (no stat per frame
    where the file system reports types). A frame name that is not a file (a broken link, a folder)
    is a FrameReadError naming it: left out, it would shift every later frame's index."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if is_frame_name(e.name)]
    except OSError as e:
        raise FrameReadError(folder, f"cannot list the folder: {e}") from e
    e = next((e for e in entries if not e.is_file()), None)
    if e is not None:
        what = "a folder" if e.is_dir() else "a broken link" if e.is_symlink() else "not a regular file"
        raise FrameReadError(folder, f"{e.name} is named like a frame but is {what}: remove or rename it")
    return entries


def frame_order(names: Sequence[str], folder: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(`names` in frame order, the stray names among them).

    Frame order: natural order of the stems (digit runs as numbers: `f2` before `f10`, `12-30-01.500`
    before `12-30-02.250`), as file managers and `ls -v` list them. Two files whose stems are the same
    number (`1.png` and `01.png`, `00001.jpg` and `00001.png`) are a FrameReadError: which one is the
    frame is not known, and the file system's listing order would decide.

    Strays: the names outside the folder's commonest name pattern (the stem, lower case, its digit
    runs written '#'), in frame order. One clip's frames share one (`#`, `frame_#`, `#_#`); another is
    a stray file (`# copy`, `# 2` from a file manager's copy, `cover`) or a second sequence, read as
    frames all the same. This runs for every frame folder of a dataset: names that share one pattern
    digit for digit (zero-padded, as DFEW's and FERV39k's) sort as strings, others take one regex split
    a name (benchmarks/README.md, "check").
    """
    if len({n.translate(_DIGIT_MARKS) for n in names}) == 1:  # DFEW's, FERV39k's: zero-padded, one pattern
        return sorted(names), []  # then the string order is the natural order, and no number repeats
    keyed, patterns = [], {}
    for n in names:
        dot = n.rfind(".")
        parts = _DIGITS.split((n[:dot] if dot > 0 else n).lower())  # text, digits, text, ...
        keyed.append((tuple(int(p) if i & 1 else p for i, p in enumerate(parts)), n.lower(), n))
        patterns.setdefault("#".join(parts[::2]), set()).add(n)
    keyed.sort()
    for (a, _, x), (b, _, y) in zip(keyed, keyed[1:]):
        if a == b:
            raise FrameReadError(folder, f"{x} and {y} are the same frame number: remove one of them")
    ordered = [n for _, _, n in keyed]
    if len(patterns) < 2:
        return ordered, []
    main = max(patterns.values(), key=len)
    return ordered, [n for n in ordered if n not in main]


class FolderSource(FrameSource):
    """A directory of frame images (`frame_entries`; other files and hidden files are ignored), in
    `frame_order`."""

    backend = "folder"

    def __init__(self, path: Path):
        super().__init__(path)
        names = [e.name for e in frame_entries(path)]
        if not names:
            raise FrameReadError(
                path, f"no frame images in this folder (expected {'/'.join(IMAGE_SUFFIXES)} files "
                "numbered in frame order, e.g. 00001.jpg or 00001_00001.jpg)"
            )
        check_frame_count(path, len(names))
        order, self.strays = frame_order(names, path)  # strays: names unlike the others', read as frames
        self.files = [path / n for n in order]
        self._size: tuple[int, int] | None = None  # (H, W) of the first frame file

    def __len__(self) -> int:
        return len(self.files)

    def _read_sorted(self, idx: np.ndarray) -> np.ndarray:
        ref = self._reference_size()
        return np.stack([_fit(self._load(int(i)), ref) for i in idx])

    def read_jpegs(self, idx: np.ndarray) -> list[bytes] | None:
        """The files of frames `idx` (sorted, distinct, in range) undecoded, for a decoder elsewhere (the GPU's).

        Every header is read and checked as `read` checks it (frame_pixels limit); None when any
        frame is not an RGB JPEG (PNG, grey, CMYK), has an EXIF turn, or is not the first frame's
        size: those are read with `read`.
        """
        check_read(self, len(idx))
        out = []
        for i in map(int, idx):
            try:
                data = self.files[i].read_bytes()
            except OSError as e:
                raise self._unreadable(i, e) from e
            with self._open_image(i, data) as im:
                if (im.format != "JPEG" or im.mode != "RGB" or orientation.image_orientation(im) != "identity"
                        or (im.height, im.width) != self._reference_size()):
                    return None
            out.append(data)
        return out

    def _reference_size(self) -> tuple[int, int]:
        """(H, W) of the first frame file as shown (its EXIF orientation applied), from its header; every
        frame is read at this size."""
        if self._size is None:
            with self._open_image(0) as im:
                self._size = orientation.shown_size(im.height, im.width, orientation.image_orientation(im))
        return self._size

    def header_size(self) -> tuple[int, int]:
        return self._reference_size()

    def _open_image(self, i: int, data: bytes | None = None):
        """The image of file i (or of its bytes `data`), its size checked against the frame_pixels limit
        (from its header, undecoded)."""
        from PIL import Image, UnidentifiedImageError

        try:
            im = Image.open(self.files[i] if data is None else io.BytesIO(data))
        except UnidentifiedImageError:  # its message names a path or a BytesIO object's address
            raise self._unreadable(i, _not_an_image(data if data is not None else self._head(i))) from None
        except Image.DecompressionBombError as e:  # over PIL's own cap (2 x 89 MP), before ours is asked
            raise FrameReadError(self.path, f"frame file {self.files[i].name} (index {i}) is too large to "
                                            f"decode ({e}): PIL refuses such images whatever --limit says") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise self._unreadable(i, e) from e
        try:
            check_frame_size(self.path, im.width, im.height, what=f"frame file {self.files[i].name}")
        except FrameReadError:
            im.close()
            raise
        return im

    def _load(self, i: int) -> np.ndarray:
        """Frame `[H, W, 3]` uint8 RGB of file i as shown (grey, palette and RGBA converted, its EXIF
        orientation applied)."""
        try:
            data = self.files[i].read_bytes()
        except OSError as e:
            raise self._unreadable(i, e) from e
        with self._open_image(i, data) as im:
            op = orientation.image_orientation(im)  # from the header: a PNG's eXIf after the pixels is ignored
            try:
                fast = _decode_jpeg(data) if im.format == "JPEG" and im.mode == "RGB" else None
                return orientation.apply(fast if fast is not None else pil_rgb(im), op)
            except (OSError, SyntaxError, ValueError, RuntimeError) as e:  # truncated or damaged data
                raise self._unreadable(i, e) from e

    def _head(self, i: int) -> bytes:
        try:
            with open(self.files[i], "rb") as f:
                return f.read(16)
        except OSError as e:
            raise self._unreadable(i, e) from e

    def _unreadable(self, i: int, e: Exception | str) -> FrameReadError:
        return FrameReadError(
            self.path, f"frame file {self.files[i].name} (index {i}) is not a readable image: {e}"
        )


def _fit(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """`frame` [h, w, 3] at size `hw` (H, W): a folder of per-frame face crops of varying sizes reads
    at its first frame's size (PIL's bilinear, antialiased), as a video whose size changes does, and
    as DFER-CLIP's loader, which resizes each frame to the encoder's size on its own."""
    if frame.shape[:2] == tuple(hw):
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize((hw[1], hw[0]), Image.Resampling.BILINEAR))


def pil_rgb(im) -> np.ndarray:
    """A PIL image as `[H, W, 3]` uint8 RGB, as a viewer shows it. Grey, palette and CMYK convert as PIL
    converts them; an image with transparency (RGBA, LA, a palette or grey PNG with tRNS) is shown
    over white (`orientation.over_background`, as a video frame with alpha is), as a browser on its
    default page shows it: PIL's own conversion drops the alpha and shows the colours hidden under it.
    16-bit grey (PNG, TIFF: modes I;16* and I) keeps its high byte, as PIL keeps it for 16-bit RGB (PIL's
    conversion clips every value over 255 to white).
    Float images are refused (ValueError): their range is not known."""
    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.asarray(im).astype(np.int64)  # [H, W] (a big-endian I;16B reads as such)
        grey8 = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(grey8[..., None], 3, axis=-1)
    if im.mode == "F":
        raise ValueError("a 32-bit float image: its value range is not known; save the frames as 8-bit images")
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"))  # [H, W, 4]; premultiplied modes unmultiplied
        return orientation.over_background(rgba)
    return np.asarray(im.convert("RGB"))


BACKGROUND = orientation.BACKGROUND  # what a transparent frame is shown over (video frames too)


def _not_an_image(data: bytes) -> str:
    """Why PIL cannot identify `data`: empty, or what it starts with (HTML saved as .jpg, a text file)."""
    if not data:
        return "the file is empty (0 bytes)"
    return f"not an image file PIL can read (it starts with {data[:16]!r})"


# ---------------------------------------------------------------------------- videos


_DECORD_PREFIX = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*(Error:\s*)?")  # "[09:06:12] src/x.cc:151: "

# MPEG-4 Part 2 "not coded" frames (N-VOPs): FFmpeg's decoders of this family take a packet of at most 19 bytes
# (MAX_NVOP_SIZE, libavcodec/mpeg4videodefs.h: "smaller packets likely don't contain a real frame") for one.
# A stream with such a packet is counted by decoding (`video_frame_count`).
NVOP_CODECS = ("mpeg4",)
NVOP_MAX_BYTES = 19

# Codecs on which decord's random access was measured frame-exact (tests/test_decoding.py): decord
# returned wrong frames for MPEG-4 Part 2 (XviD/DivX, "mpeg4") and H.265 with B-frames, and for
# streams that start inside a GOP; open_frames reads those with PyAV.
DECORD_EXACT_CODECS = ("h264", "vp9", "mjpeg")


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    """An RGB JPEG's bytes -> `[H, W, 3]` uint8 (torchvision; RuntimeError when damaged), or None when
    this torchvision has no JPEG decoder (deprecated in 0.29 for TorchCodec; the caller then uses PIL)."""
    try:
        image = decode_jpegs([data])[0]
    except ImportError:
        return None
    return image.permute(1, 2, 0).numpy()  # [H, W, 3], a view of the decoded buffer


def decode_jpegs(data: Sequence[bytes], device: str | object = "cpu") -> list:
    """RGB JPEGs' bytes -> `[3, H, W]` uint8 tensors on `device`, in one torchvision `decode_jpeg` call
    (on CUDA nvjpeg's batched decoder; on the CPU libjpeg-turbo, one by one). RuntimeError in one
    line when one is damaged; ImportError when this torchvision has no JPEG decoder."""
    import warnings

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    inputs = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
    try:
        with warnings.catch_warnings():  # torchvision 0.29 warns on every call that TorchCodec supersedes it
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(inputs, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as e:  # "decode_jpeg, .../decode_jpeg.cpp:171, Image is incomplete or truncated"
        raise RuntimeError(_CPP_PREFIX.sub("", str(e))) from None


_CPP_PREFIX = re.compile(r"^.*?\.cpp:\d+,\s*")


def _first_line(e: BaseException, limit: int = 240) -> str:
    """A decoder exception as one short line (decord adds a time, a source line and a trace)."""
    text = str(e).strip().splitlines()
    line = _DECORD_PREFIX.sub("", text[0]) if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _import_decord():
    """The decord module, or ImportError when it is not installed (no wheels off x86_64)."""
    import decord

    return decord


def _av_errors() -> tuple[type[BaseException], ...]:
    """What PyAV raises on bad input (FFmpegError subclasses also subclass OSError/ValueError/...)."""
    import av

    return (av.FFmpegError, OSError, ValueError, EOFError, RuntimeError)


def _video_stream(container, path: Path):
    """The stream FFmpeg's CLI and players pick (av_find_best_stream): not necessarily the first, which
    may be a cover picture (an MKV or MP4 with artwork: one frame) or a low-resolution preview."""
    moving = [s for s in container.streams.video if not _is_artwork(s)]
    if not moving:  # an audio file with a thumbnail (yt-dlp --embed-thumbnail, an .mp3 with album art)
        raise FrameReadError(path, "the file has no video stream" + (
            ": its only picture is attached artwork (a cover or thumbnail), not a video"
            if container.streams.video else ""))
    stream = container.streams.best("video")
    return stream if stream is not None and not _is_artwork(stream) else moving[0]


def _is_artwork(stream) -> bool:
    """An attached picture (cover art, a thumbnail): one still image, not frames of the recording."""
    import av
    return bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))


# Decoders that read an alpha plane FFmpeg's own decoder drops: VP9 in WebM/Matroska carries its alpha as side
# data of each block (BlockAdditional; the stream is tagged alpha_mode=1), which only libvpx's decoder reads.
ALPHA_DECODERS = {"vp9": "libvpx-vp9"}
_warned_no_alpha: set[str] = set()  # files already named in the warning that their alpha is lost


def decoded_frames(container, stream, path: Path, threads: int = 1):
    """The PyAV frames of `stream` (of the open `container`) in a full sequential decode, in presentation
    order: by FFmpeg's decoder for the stream, or, for VP9 with alpha, by libvpx-vp9 (`_alpha_decoder`).
    Every decode of a video in tgdfer goes through here, so its count, its reads and its checks see the same
    frames. threads: decoder threads (1 = none; 0 = FFmpeg's choice; frame and slice threads otherwise,
    output order and pixels unchanged)."""
    ctx = _alpha_decoder(stream, path)
    if threads != 1:
        target = stream if ctx is None else ctx
        target.thread_type, target.thread_count = "AUTO", threads
    if ctx is None:
        yield from container.decode(stream)
        return
    for packet in container.demux(stream):  # its last packet is empty: it flushes the decoder
        yield from ctx.decode(packet)


def _alpha_decoder(stream, path: Path):
    """A libvpx decoder context for a VP9 stream tagged alpha_mode=1 (FFmpeg's vp9 decoder drops its alpha);
    None for any other stream, or, with a warning naming the file, when this PyAV has no libvpx-vp9 decoder:
    the frames then show the colours stored under the transparency."""
    name = ALPHA_DECODERS.get(stream.codec_context.name)
    if name is None or not _alpha_side_data(stream):
        return None
    if not _has_decoder(name):
        if str(path) not in _warned_no_alpha:
            _warned_no_alpha.add(str(path))
            log.warning("%s: its %s stream has an alpha channel, which only the %s decoder reads, and this PyAV "
                        "has none: its frames show the colours under the transparency, not white", path,
                        stream.codec_context.name, name)
        return None
    import av

    return av.CodecContext.create(name, "r")


def _has_decoder(name: str) -> bool:
    """Whether this PyAV's FFmpeg has the decoder `name`."""
    import av

    try:
        av.codec.Codec(name, "r")
    except ValueError:  # av.codec.codec.UnknownCodecError
        return False
    return True


def _stream_alpha(stream) -> bool:
    """Whether a video stream's frames carry an alpha plane, from its header: its pixel format (ProRes 4444,
    QuickTime Animation, PNG) or its alpha side data (VP9 tagged alpha_mode=1)."""
    import av

    pix_fmt = stream.codec_context.pix_fmt
    try:
        if pix_fmt and orientation.has_alpha(av.VideoFormat(pix_fmt)):
            return True
    except ValueError:
        pass
    return _alpha_side_data(stream)


def _alpha_side_data(stream) -> bool:
    """Whether a stream's header says its blocks carry alpha as side data (WebM/Matroska's alpha_mode=1)."""
    return str(stream.metadata.get("alpha_mode", "")).strip() == "1"


def _no_frames(path: Path, count: VideoFrameCount) -> FrameReadError:
    if count.claimed:
        return FrameReadError(path, f"no frame decodes, though its header claims {count.claimed}: "
                                    "the file is truncated or corrupt")
    return FrameReadError(path, "the video has no frames")


def _open_error(path: Path, e: BaseException) -> FrameReadError:
    return FrameReadError(path, f"PyAV cannot open the video (corrupt, truncated or not a video): {_first_line(e)}")


def _decoder_threads(requested: int) -> int:
    """FFmpeg decoder threads: `requested` when > 0; else torch's intra-op thread count when torch is
    loaded (tgdfer's thread choice: --threads, OMP_NUM_THREADS, the cgroup quota; 1 in a DataLoader
    worker, so workers do not oversubscribe the cores); else 0, FFmpeg's own choice (all cores)."""
    if requested > 0:
        return requested
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 0


class PyAVSource(FrameSource):
    """A video decoded by PyAV (FFmpeg) sequentially from its start, exact by construction.

    Frame i is the i-th frame a full sequential decode gives, in presentation order (the
    definition of a video frame index in tgdfer); `read` decodes from the start up to the last
    frame asked for and converts only the frames asked for. No seeking: sampling spreads its
    indices over the whole clip, so a decode to the last one decodes nearly every frame anyway.
    """

    backend = "pyav"

    def __init__(self, path: Path, threads: int = 0, count: VideoFrameCount | None = None):
        super().__init__(path)
        self.threads = threads  # decoder threads: 0 = automatic (_decoder_threads), 1 = none
        count = count or video_frame_count(path)
        self._n = count.frames
        self.codec = count.codec
        self.sar = count.sar  # non-square pixels are scaled to square ones
        if count.overclaimed:
            self.claimed = count.claimed
            log.debug("%s: the container header claims %d frames, %d hold data; reading %d",
                      path, count.claimed, count.frames, count.frames)
        if self._n < 1:
            raise _no_frames(path, count)

    def __len__(self) -> int:
        return self._n

    def _read_sorted(self, idx: np.ndarray) -> np.ndarray:
        import av

        wanted, last = set(idx.tolist()), int(idx[-1])
        got: dict[int, np.ndarray] = {}
        decoded = 0
        shown: dict[bytes | None, orientation.Orientation] = {}  # display matrix -> orientation, read once
        size = None  # (width, height) of the first frame: every frame is shown at it
        try:
            with av.open(str(self.path)) as container:
                stream = _video_stream(container, self.path)
                frames = decoded_frames(container, stream, self.path, _decoder_threads(self.threads))
                for i, frame in enumerate(frames):
                    decoded = i + 1
                    size = size or (frame.width, frame.height)
                    if i in wanted:
                        got[i] = orientation.video_frame_rgb(frame, self.path, shown, self.sar, size)  # [H, W, 3]
                    if i >= last:
                        break
        except FrameReadError:
            raise
        except _av_errors() as e:
            raise FrameReadError(
                self.path, f"PyAV cannot decode frame {decoded} of {self._n} "
                f"(the file is probably truncated or corrupt): {_first_line(e)}"
            ) from e
        if len(got) < len(wanted):
            raise FrameReadError(
                self.path, f"the video is truncated or corrupt: only {decoded} of the {self._n} "
                f"frames it announces could be decoded (frame {last} was asked for)"
            )
        frames = [got[i] for i in idx.tolist()]
        if len({f.shape for f in frames}) > 1:
            raise FrameReadError(self.path, "the frames' orientation (display matrix) turns by a quarter inside the video")
        return np.stack(frames)


def first_frame_orientation(path: str | Path) -> orientation.Orientation:
    """The orientation the display matrix of a video's first frame asks for ("identity" when it has none
    or no frame decodes: the reader then finds the fault)."""
    import av

    try:
        with av.open(str(path)) as container:
            for frame in decoded_frames(container, _video_stream(container, Path(path)), Path(path)):
                return orientation.display_orientation(frame, path)
    except _av_errors():
        pass
    return "identity"


class NotFrameExact(ConfigError):
    """decord's random access is not known to be frame-exact on this file (open_frames uses PyAV)."""

    def __init__(self, path: Path, why: str, count: VideoFrameCount):
        super().__init__("backend", f"{path}: decord is not frame-exact here ({why}); use 'pyav' or 'auto'")
        self.count = count


class DecordSource(FrameSource):
    """A video decoded by decord (CPU, one thread), only where its random access is frame-exact.

    decord seeks to a keyframe and counts frames from there, which goes wrong when decode order
    and presentation order differ in ways it does not track. It is offered only for the codecs in
    DECORD_EXACT_CODECS, on a stream that starts at a keyframe, when its frame count agrees with
    `video_frame_count`, when its frames carry no alpha plane (VP9 with alpha, shown over white), and
    when the first frame carries no display matrix (a phone's portrait video: one orientation code
    for every backend); anything else raises NotFrameExact.
    """

    backend = "decord"

    def __init__(self, path: Path, count: VideoFrameCount | None = None):
        super().__init__(path)
        count = count or video_frame_count(path)  # before decord: importing decord first breaks PyAV's VP9 encoder
        if count.frames < 1:
            raise _no_frames(path, count)
        try:
            decord = _import_decord()
        except ImportError as e:
            raise ConfigError(
                "backend", f"decord is not installed ({e}); use backend 'pyav' or 'auto'"
            ) from None
        if count.codec not in DECORD_EXACT_CODECS or count.by_decoding:
            why = (f"its codec is {count.codec}" if count.codec not in DECORD_EXACT_CODECS
                   else "the stream starts inside a group of pictures")
            raise NotFrameExact(path, f"{why}; decord is used only for {', '.join(DECORD_EXACT_CODECS)} "
                                      "from a keyframe", count)
        if count.alpha:
            raise NotFrameExact(path, "its frames carry an alpha channel, which tgdfer shows over white in PyAV's "
                                      "conversion (decord drops it)", count)
        if count.sar is not None:
            raise NotFrameExact(path, f"its pixels are not square (sample aspect ratio {count.sar}), which tgdfer "
                                      "scales in PyAV's conversion", count)
        turned = first_frame_orientation(path)  # decord turns rotated videos its own way and ignores mirroring
        if turned != "identity":
            raise NotFrameExact(path, f"its display matrix shows the frames turned or mirrored ({turned}), which "
                                      "tgdfer applies to PyAV's frames", count)
        self._errors = (decord.DECORDError, RuntimeError, OSError, ValueError, IndexError)
        try:
            self._vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            self._n = len(self._vr)
        except self._errors as e:
            raise FrameReadError(
                path, f"decord cannot open the video (corrupt, truncated or not a video): "
                f"{_first_line(e)}"
            ) from e
        if self._n < 1:
            raise FrameReadError(path, "the video has no frames")
        if self._n != count.frames:
            self.close()
            raise NotFrameExact(path, f"decord counts {self._n} frames where a sequential decode gives {count.frames}",
                                count)

    def __len__(self) -> int:
        return self._n

    def _read_sorted(self, idx: np.ndarray) -> np.ndarray:
        try:
            batch = self._vr.get_batch(idx.tolist())
        except self._errors as e:
            raise FrameReadError(
                self.path, f"decord cannot decode frames {idx.min()}..{idx.max()} of {self._n} "
                f"(the file is probably truncated or corrupt): {_first_line(e)}"
            ) from e
        # decord returns its own NDArray, or a torch tensor if a caller set decord's bridge.
        frames = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        return np.ascontiguousarray(frames, dtype=np.uint8)  # [U, H, W, 3]

    def close(self) -> None:
        self._vr = None


@dataclass(frozen=True)
class VideoFrameCount:
    """How many frames a video holds, and how many its container header claims."""

    frames: int  # frames a full sequential decode gives (counted from packets where that is exact)
    claimed: int | None  # the header's count (AVI/MP4 record one; None when it records none)
    codec: str = ""  # the video stream's decoder ("h264", "mpeg4", "hevc", "vp9", ...)
    by_decoding: bool = False  # True: it starts inside a GOP, is trimmed or holds N-VOPs: frames counted by decoding
    size: tuple[int, int] | None = field(default=None, compare=False)  # (H, W) from the header, None if unrecorded
    trimmed: bool = False  # an edit list hides some of its frames (the header counts them too)
    sar: Fraction | None = field(default=None, compare=False)  # sample aspect ratio when pixels are not square
    alpha: bool = field(default=False, compare=False)  # its frames carry an alpha plane (shown over white)
    packets: int = field(default=0, compare=False)  # packets holding data
    not_coded: int = field(default=0, compare=False)  # MPEG-4 Part 2 packets of N-VOP size ("not coded" frames)

    @property
    def overclaimed(self) -> bool:
        """True when the header claims more frames than the file holds (not when an edit list hides them, nor
        when it counts an MPEG-4 stream's "not coded" frames, which hold data but may decode to none)."""
        held = max(self.frames, self.packets) if self.not_coded else self.frames
        return not self.trimmed and self.claimed is not None and self.claimed > held


def video_frame_count(path: str | Path, check: bool = False) -> VideoFrameCount:
    """The number of frames a full sequential decode of a video gives, next to the header's claim.

    Counted from packets, without decoding, when the stream starts at a keyframe that no packet
    precedes in presentation order: then each packet holding data is one decoded frame. The header
    is not the truth: an AVI whose dropped frames are stored as empty chunks (a cinepak AVI claimed
    444 frames and gave 68), or one cut short, claims more frames than any decoder returns; empty
    packets are not frames, and a truncated file ends where its packets end. A stream that starts
    inside a GOP (cut from a longer one) is counted by decoding it: decoders drop or add frames
    there (an H.265 stream cut 5 packets in gave 85 packets and 77 frames). So is a stream whose
    edit list trims it (an MP4 cut without re-encoding, a phone's trimmed video): the demuxer marks
    the packets outside the edit "discard", and the decoder decodes but does not return their
    frames (20 packets, 15 frames shown). So is an MPEG-4 Part 2 stream (XviD, DivX) with a packet of
    at most NVOP_MAX_BYTES: an N-VOP, a "not coded" frame that an encoder writes for a dropped or
    repeated frame, or after packed B-frames. FFmpeg returns no frame for it, or, in a packed stream
    (user data "DivX...p"), the B-frame packed into the packet before it: 108 packets with 18 N-VOPs
    gave 90 frames, 90 packed packets with 30 N-VOPs gave 90 (tests/test_decoding.py).
    Raises FrameReadError when the file cannot be opened as a video. With `check`, the header's
    frame size and claimed count are first held against the limits, as `check_video_header` does,
    before any packet is read (one open of the file instead of two).
    """
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            claimed, codec, sar = stream.frames or None, stream.codec_context.name, orientation.stream_sar(stream)
            width, height = stream.codec_context.width, stream.codec_context.height
            size = (height, width) if width and height else None
            if check:
                _check_header(path, width, height, claimed)
            alpha = _stream_alpha(stream)
            frames, first, low = 0, None, None  # data packets, the first one, the lowest pts
            trimmed = False  # an edit list hides some packets' frames (a cut or trimmed MP4/MOV)
            not_coded = 0  # MPEG-4 Part 2 packets small enough to be N-VOPs
            try:
                for packet in container.demux(stream):
                    if not packet.size:
                        continue
                    if getattr(packet, "is_discard", False):
                        trimmed = True
                        continue
                    frames += 1
                    if codec in NVOP_CODECS and packet.size <= NVOP_MAX_BYTES:
                        not_coded += 1
                    if first is None:
                        first = packet
                    if packet.pts is not None and (low is None or packet.pts < low):
                        low = packet.pts
            except _av_errors() as e:  # a damaged tail: count what came before it
                log.debug("%s: packets end early after %d frames (%s)", path, frames, _first_line(e))
            clean = not trimmed and not not_coded and (
                first is None or (first.is_keyframe and (first.pts is None or low is None or first.pts <= low)))
    except FrameReadError:
        raise
    except _av_errors() as e:
        raise _open_error(path, e) from e
    facts = dict(size=size, sar=sar, alpha=alpha, packets=frames, not_coded=not_coded)
    if clean:
        return VideoFrameCount(frames, claimed, codec, **facts)
    log.debug("%s: the stream starts inside a GOP, an edit list trims it or it holds %d N-VOP-sized packets; "
              "counting its frames by decoding", path, not_coded)
    return VideoFrameCount(_count_decoded(path), claimed, codec, by_decoding=True, trimmed=trimmed, **facts)


def _count_decoded(path: Path) -> int:
    """Frames a sequential decode gives (up to the first error)."""
    import av

    n = 0
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)  # one thread: check decodes clips in parallel
            for _ in decoded_frames(container, stream, path):
                n += 1
    except FrameReadError:
        raise
    except _av_errors() as e:
        log.debug("%s: decoding stops after %d frames (%s)", path, n, _first_line(e))
    return n


def decode_all(path: str | Path) -> int:
    """Decode every frame of a clip (checks them all); returns the number of frames decoded.

    A folder: every image is opened and decoded. A video: decoded from start to end with PyAV
    (sequential decoding is what finds a damaged frame). Raises FrameReadError at the first frame
    that cannot be read, naming it.
    """
    path = Path(path)
    if path.is_dir():
        src = FolderSource(path)
        for i in range(len(src)):
            src._read_sorted(np.array([i]))  # decodes frame i (its header checked against the limits)
        return len(src)
    if not path.is_file():
        raise FrameReadError(path, "no such file or directory")
    if path.stat().st_size == 0:
        raise FrameReadError(path, "the video file is empty (0 bytes)")
    import av

    check_video_header(path)
    decoded = 0
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)  # one thread: check decodes clips in parallel
            for frame in decoded_frames(container, stream, path):
                check_frame_size(path, frame.width, frame.height, what=f"frame {decoded}")
                frame.to_ndarray(format="rgb24")
                decoded += 1
                check_frame_count(path, decoded)
    except FrameReadError:
        raise
    except _av_errors() as e:
        raise FrameReadError(path, f"frame {decoded} cannot be decoded (corrupt or truncated): "
                                   f"{_first_line(e)}") from e
    return decoded


# ---------------------------------------------------------------------------- arrays


class ArraySource(FrameSource):
    """Frames already in memory (a notebook's clip): `[T, H, W, 3]` uint8 RGB."""

    backend = "array"

    def __init__(self, frames: np.ndarray, name: str = "array"):
        arr = np.asarray(frames)
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) == 0:
            raise FrameReadError(name, f"an array clip must be frames [T, H, W, 3] uint8 RGB with T >= 1, got shape "
                                       f"{tuple(arr.shape)} dtype {arr.dtype}")
        super().__init__(Path(name))
        self.frames = arr  # [T, H, W, 3]

    def __len__(self) -> int:
        return len(self.frames)

    def _read_sorted(self, idx: np.ndarray) -> np.ndarray:
        return self.frames[idx]


# ---------------------------------------------------------------------------- limits
# The caps of tgdfer.limits as they apply to a clip: each raises FrameReadError (the clip fails, the
# run goes on) before the decoder allocates what the header asks for.


def _limit(path: str | Path, check, *args, what: str = "") -> None:
    where = f"{path}: {what}" if what else str(path)
    try:
        check(where, *args)
    except limits.LimitError as e:
        raise FrameReadError(path, str(e).removeprefix(f"{path}: ")) from None


def check_frame_size(path: str | Path, width: int, height: int, what: str = "") -> None:
    """FrameReadError when one frame is over the frame_pixels limit."""
    _limit(path, limits.check_frame_size, width, height, what=what)


def check_frame_count(path: str | Path, frames: int) -> None:
    """FrameReadError when a clip holds more frames than the clip_frames limit."""
    _limit(path, limits.check_frame_count, frames)


def check_read(src: FrameSource, frames: int) -> None:
    """FrameReadError when reading `frames` distinct frames of `src` would pass clip_frames / clip_bytes."""
    check_frame_count(src.path, len(src))
    size = src.header_size()
    if size is not None:
        _limit(src.path, limits.check_decode, frames, size[1], size[0])


def check_video_header(path: Path) -> tuple[int, int] | None:
    """(H, W) of a video's stream (the one read) from its header (nothing decoded), checked against
    frame_pixels and, when the header records one, its frame count against clip_frames. None when the
    header gives no size; a file PyAV cannot open passes here and fails in the decoder with its own reason."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = _video_stream(container, path)
            width, height, claimed = stream.codec_context.width, stream.codec_context.height, stream.frames
    except _av_errors():
        return None
    return _check_header(path, width, height, claimed)


def _check_header(path: Path, width: int, height: int, claimed: int) -> tuple[int, int] | None:
    """A video header's claimed frame count and frame size against the limits; (H, W) or None when unrecorded."""
    if claimed:
        check_frame_count(path, claimed)
    if not width or not height:
        return None
    check_frame_size(path, width, height)
    return height, width
