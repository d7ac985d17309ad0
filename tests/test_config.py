"""TOML -> dataclass building and dotted overrides."""

from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from tgdfer.config import apply_overrides, build, load_toml, parse_override, to_dict
from tgdfer.errors import ConfigError


@dataclass
class Demo:
    size: int = 4  # an int
    rate: float = 0.5  # a float
    mode: Literal["a", "b"] = "a"  # a choice
    name: Optional[str] = None  # optional string
    scale: tuple[float, ...] = (0.1, 1.0)  # a tuple

    def __post_init__(self):
        if self.size < 1:
            raise ConfigError("size", "must be >= 1")


def test_build_coerces_and_validates():
    cfg = build(Demo, {"size": 8, "rate": 1, "mode": "b", "scale": [0.5, 2]}, "demo")
    assert cfg == Demo(size=8, rate=1.0, mode="b", scale=(0.5, 2.0))
    assert isinstance(cfg.rate, float) and isinstance(cfg.scale, tuple)


@pytest.mark.parametrize(
    "table, field, words",
    [
        ({"sise": 3}, "demo.sise", "unknown field"),
        ({"size": "3"}, "demo.size", "expected an integer"),
        ({"size": True}, "demo.size", "expected an integer"),
        ({"mode": "c"}, "demo.mode", "not one of"),
        ({"size": 0}, "demo.size", "must be >= 1"),
        ({"scale": 3}, "demo.scale", "expected a list"),
    ],
)
def test_build_names_the_field(table, field, words):
    with pytest.raises(ConfigError) as e:
        build(Demo, table, "demo")
    assert e.value.field == field
    assert words in str(e.value)


def test_overrides_parse_toml_values():
    assert parse_override("a.b=64") == (["a", "b"], 64)
    assert parse_override("a.c=true") == (["a", "c"], True)
    assert parse_override("a.d=[1, 2]") == (["a", "d"], [1, 2])
    assert parse_override("a.e=ViT-B-32") == (["a", "e"], "ViT-B-32")  # bare words stay strings
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_apply_overrides_does_not_mutate_input():
    base = {"extract": {"views": 3}}
    out = apply_overrides(base, ["extract.views=2", "encoder.model=RN50"])
    assert out == {"extract": {"views": 2}, "encoder": {"model": "RN50"}}
    assert base == {"extract": {"views": 3}}
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides(base, ["extract.views.x=1"])


def test_a_table_value_is_merged_into_the_table_it_lands_on():
    base = {"train": {"epochs": 50, "lr": 0.001, "milestones": [30, 40]}}
    out = apply_overrides(base, ["train={epochs=2}"])  # it replaced [train], every other field back to its default
    assert out == {"train": {"epochs": 2, "lr": 0.001, "milestones": [30, 40]}}
    assert apply_overrides(base, ["train.milestones=[1]"])["train"]["milestones"] == [1]  # a list still replaces


def test_a_bom_an_empty_key_a_home_path_and_an_unknown_section_from_the_command_line(tmp_path, monkeypatch):
    from tgdfer.pipeline import load_pipeline

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = tmp_path / "p.toml"
    path.write_bytes("\ufeff[train]\nout = \"~/runs/a\"\n".encode("utf-8"))  # Notepad's UTF-8 with a BOM
    pipe = load_pipeline(path, ["extract.store=~/cache/x.zarr"])
    assert pipe.train.out == str(tmp_path / "home" / "runs" / "a")  # not a folder named ~ in the working directory
    assert pipe.extract.store == str(tmp_path / "home" / "cache" / "x.zarr")
    with pytest.raises(ConfigError, match="an empty name in the key"):
        load_pipeline(path, [".epochs=3"])
    with pytest.raises(ConfigError, match=r"--set foo=1: unknown section") as e:
        load_pipeline(path, ["foo=1"])
    assert str(path) not in str(e.value)  # the file is not to blame


def test_a_windows_path_in_double_quotes_is_refused_not_read_as_escapes(tmp_path):
    """`out = "C:\\runs"` in a pipeline file: TOML reads \\r as a carriage return, and train-head made a folder
    named C:<CR>uns; `--print-config` showed it as the user typed it. Single quotes or / are the fix."""
    from tgdfer.pipeline import load_pipeline

    path = tmp_path / "p.toml"
    path.write_text('[train]\nout = "C:\\runs\\fold1"\n', encoding="utf-8")  # the file holds C:\runs\fold1
    with pytest.raises(ConfigError, match=r"train.out: .*control character \(\\r\).*single quotes"):
        load_pipeline(path)
    path.write_text("[train]\nout = 'C:\\runs\\fold1'\n", encoding="utf-8")
    assert load_pipeline(path).train.out.endswith("C:\\runs\\fold1")
    from tgdfer.annotations import PathLike
    from tgdfer.config import check_type

    with pytest.raises(ConfigError, match=r"frames_dir: .*control character \(\\t\)"):  # a reader's argument
        check_type("D:\tmp\\clips", PathLike, "frames_dir")


def test_switching_readers_from_the_command_line_starts_from_their_own_args(tmp_path):
    from tgdfer.pipeline import load_pipeline

    path = tmp_path / "p.toml"
    path.write_text('[data]\nkind = "csv"\nargs = { csv_file = "a.csv", missing = "skip" }\n')
    same = load_pipeline(path, ['data.args={missing="error"}'])  # the same reader: merged into its args
    assert same.data.args == {"csv_file": "a.csv", "missing": "error"}
    other = load_pipeline(path, ['data.kind="dfew"', 'data.args={split_dir="s", frames_dir="f"}'])
    assert other.data.kind == "dfew" and other.data.args == {"split_dir": "s", "frames_dir": "f"}  # no csv_file


def test_load_toml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[extract\nviews=1")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_toml(bad)


def test_to_dict_roundtrip():
    cfg = Demo(scale=(0.2, 0.9))
    assert build(Demo, to_dict(cfg), "demo") == cfg
