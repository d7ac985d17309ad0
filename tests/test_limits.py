"""Caps on input sizes (tgdfer/limits.py): each exceeded cap is one line for that input, the others go on."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib

import pytest
from PIL import Image
from test_readers import video, write
from typer.testing import CliRunner

from tgdfer import limits
from tgdfer.cli import app
from tgdfer.errors import ConfigError, FrameReadError, TgdferError
from tgdfer.frames import open_frames
from tgdfer.limits import LimitError, Limits
from tgdfer.weights import read_state_dict

runner = CliRunner()


def png_header(path, width: int, height: int):
    """A PNG that claims width x height (1-bit grey) and holds one byte of data: a bomb that costs nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))
    return path


def small_frames(folder, n=3, size=8):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        Image.new("RGB", (size, size), (i, 0, 0)).save(folder / f"{folder.name}_{i:05d}.png")
    return folder


def test_values_parse_with_sizes_and_units_and_refuse_nonsense():
    assert limits.parse_value("x", "8192x8192") == 8192 * 8192
    assert limits.parse_value("x", "8GiB") == 8 * 2**30 and limits.parse_value("x", "512M") == 512 * 2**20
    assert limits.parse_value("x", "1e6") == 1_000_000 and limits.parse_value("x", "64") == 64
    for bad in ("abc", "0", "-5", "1.5", ""):
        with pytest.raises(ConfigError, match="whole number"):
            limits.parse_value("x", bad)
    with pytest.raises(ConfigError, match="NAME one of frame_pixels"):
        limits.parse(["frame_pixel=5"])
    assert limits.parse(["clip_frames=7"], Limits()).clip_frames == 7


def test_override_is_in_force_inside_the_block_only():
    assert limits.current() == Limits()
    with limits.override(limits.parse(["clip_frames=7", "json_depth=3"])):
        assert (limits.current().clip_frames, limits.current().json_depth) == (7, 3)
        assert limits.current().frame_pixels == Limits().frame_pixels
    assert limits.current() == Limits()


def test_a_bomb_png_in_one_folder_is_that_clips_failure_in_check(tmp_path):
    data = tmp_path / "data"
    small_frames(data / "good")
    bomb = small_frames(data / "bomb")
    png_header(bomb / "bomb_00002.png", 20000, 20000)  # 400 MP: PIL's own bomb check refuses it at open
    big = small_frames(data / "big")
    png_header(big / "big_00002.png", 5000, 5000)  # 25 MP: under PIL's check, over frame_pixels (16.7 MP)
    lst = write(data / "test.txt", "good 3 0\nbomb 3 1\nbig 3 2\n")
    config = write(tmp_path / "c.toml", f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(lst))}, '
                                        'frame_cache = "none" }\n')
    out = tmp_path / "check.csv"
    # the default check reads the first and last frame's headers: a last frame over the cap is seen there
    tail = small_frames(tmp_path / "tailset" / "tail")
    png_header(tail / "tail_00003.png", 5000, 5000)
    tail_list = write(tmp_path / "tailset" / "test.txt", "tail 3 0\n")
    tail_config = write(tmp_path / "t.toml", f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(tail_list))}, '
                                             'frame_cache = "none" }\n')
    result = runner.invoke(app, ["check", str(tail_config), "--workers", "0", "--csv", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert __import__("pandas").read_csv(out)["status"].tolist() == ["large"]
    for _ in range(2):  # the same verdicts on a re-run, and the CSV written each time (middle frames: --decode)
        result = runner.invoke(app, ["check", str(config), "--workers", "0", "--csv", str(out), "--decode"])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        rows = {r["clip_id"]: r for r in __import__("pandas").read_csv(out).to_dict("records")}
        assert {k: r["status"] for k, r in rows.items()} == {"good": "ok", "bomb": "large", "big": "large"}
        assert "too large to decode" in rows["bomb"]["reason"]
        assert "5000x5000" in rows["big"]["reason"] and "frame_pixels" in rows["big"]["reason"]
    result = runner.invoke(app, ["--limit", "frame_pixels=6000x6000", "check", str(config), "--workers", "0",
                                 "--csv", str(out), "--decode"])
    rows = {r["clip_id"]: r for r in __import__("pandas").read_csv(out).to_dict("records")}
    assert rows["big"]["status"] == "unreadable"  # now decoded (its data is a stub), no longer refused
    assert limits.current() == Limits()  # the option ends with the command


def test_video_frames_over_the_cap_are_refused_from_the_header_before_decoding(tmp_path):
    clip = video(tmp_path / "v.mp4", 4)  # 16x16
    with limits.override(limits.parse(["frame_pixels=15x15"])):
        with pytest.raises(FrameReadError, match="16x16 frame: 256 pixels is over the frame_pixels limit of 225"):
            open_frames(clip, backend="pyav")
    with limits.override(limits.parse(["clip_bytes=1000"])):  # 3 frames of 16x16x3 = 2304 bytes
        src = open_frames(clip, backend="pyav")
        assert src.read([0]).shape == (1, 16, 16, 3)  # 768 bytes
        with pytest.raises(FrameReadError, match="3 frames of 16x16: 2,304 bytes is over the clip_bytes limit"):
            src.read([0, 1, 2])
    with limits.override(limits.parse(["clip_frames=3"])):
        with pytest.raises(FrameReadError, match="4 frames is over the clip_frames limit of 3"):
            open_frames(clip, backend="pyav").read([0])
        with pytest.raises(FrameReadError, match="clip_frames"):
            open_frames(small_frames(tmp_path / "f", n=4))


def test_check_cli_takes_limit_for_videos_and_keeps_the_others(tmp_path):
    data = tmp_path / "data"
    video(data / "v.mp4", 4)
    small_frames(data / "f")
    lst = write(data / "test.txt", "v.mp4 4 0\nf 3 1\n")
    config = write(tmp_path / "c.toml", f'[data]\nkind = "list"\nargs = {{ files = {json.dumps(str(lst))}, '
                                        'frame_cache = "none" }\n')
    out = tmp_path / "check.csv"
    result = runner.invoke(app, ["--limit", "frame_pixels=100", "check", str(config), "--workers", "0",
                                 "--csv", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    rows = __import__("pandas").read_csv(out).set_index("clip_id")
    assert rows.loc["v", "status"] == "large" and rows.loc["f", "status"] == "ok"
    assert "--limit frame_pixels" in rows.loc["v", "reason"]
    bad = runner.invoke(app, ["--limit", "frame_pixels=lots", "check", str(config)])
    assert bad.exit_code == 2 and "not a whole number" in bad.output and "Traceback" not in bad.output


def zip_bomb(path, size=20 * 2**20):
    """A torch.save-like zip whose one entry inflates `size` zero bytes (about 1000 times its size on disk)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\0" * size)
    return path


def test_zip_bomb_weights_are_refused_before_inflating(tmp_path):
    bomb = zip_bomb(tmp_path / "bomb.pt")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(LimitError, match="times its size on disk, over the archive_ratio limit of 100"):
        read_state_dict(bomb)
    with limits.override(limits.parse(["archive_bytes=1MiB", "archive_ratio=1e9"])):
        with pytest.raises(LimitError, match="over the archive_bytes limit of 1,048,576"):
            read_state_dict(bomb)


@pytest.mark.parametrize("content", [b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", b"\xff" * 8 + b"{}"])
def test_short_or_malformed_safetensors_weights_are_one_line(tmp_path, content):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(TgdferError) as e:
        read_state_dict(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_json_depth_and_size_are_capped():
    deep = "[" * 900 + "]" * 900
    with pytest.raises(LimitError, match="json_depth"):
        limits.load_json(deep, "x")
    assert limits.depth(json.loads("[" * 64 + "]" * 64)) == 64
    assert limits.load_json('{"a": [1, {"b": 2}]}', "x") == {"a": [1, {"b": 2}]}
    with limits.override(limits.parse(["json_bytes=10"])):
        with pytest.raises(LimitError, match="json_bytes"):
            limits.load_json('{"a": "01234567890"}', "x")
    with pytest.raises(TgdferError, match="x: not valid JSON"):
        limits.load_json(b"\xff{", "x")


def test_extract_records_a_clip_over_a_cap_as_failed_and_extracts_the_others(tmp_path):
    data = tmp_path / "data"
    video(data / "v.mp4", 4)  # 16x16
    small_frames(data / "f", n=4)  # 8x8
    lst = write(data / "test.txt", "v.mp4 4 0\nf 4 1\n")
    store = tmp_path / "s.zarr"
    config = write(tmp_path / "x.toml", f"""
[data]
kind = "list"
args = {{ files = {json.dumps(str(lst))}, frame_cache = "none" }}
[encoder]
model = "tgdfer-tiny-vit"
pretrained = "none"
[extract]
store = {json.dumps(str(store))}
device = "cpu"
workers = 0
views = 1
frames = 4
""")
    result = runner.invoke(app, ["--limit", "frame_pixels=200", "extract", "-c", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    from tgdfer.store import FeatureStore

    with FeatureStore.open(store) as s:
        assert s.coverage() == {"clips": 2, "done": 1, "failed": 1, "pending": 0}
        failed = s.failures.set_index("clip_id")["reason"]
        assert list(failed.index) == ["v"] and "frame_pixels" in failed["v"]
