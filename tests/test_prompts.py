"""Prompt sets for the 7 classes and user descriptor files with clear errors."""

import json

import open_clip
import pytest

from tgdfer.errors import ConfigError
from tgdfer.labels import CLASSES
from tgdfer.prompts import (
    DESCRIPTORS,
    PROMPT_SETS,
    build_prompt_sets,
    count_tokens,
    load_descriptors,
    token_budget,
)

TOK = open_clip.SimpleTokenizer()
MY = {c: f"my words for {c.lower()}." for c in CLASSES}


def test_every_set_has_one_prompt_per_class_in_label_order():
    assert set(PROMPT_SETS) == {"class_names", "class_sentences", "descriptors"}
    for name, prompts in PROMPT_SETS.items():
        assert len(prompts) == len(CLASSES), name
        assert len(set(prompts)) == len(prompts), name  # no two classes share a prompt
    assert PROMPT_SETS["class_names"][0] == "happiness" and PROMPT_SETS["class_names"][6] == "fear"
    for i, c in enumerate(CLASSES):
        assert c.lower() in PROMPT_SETS["class_sentences"][i]
    assert "smile" in DESCRIPTORS[0] and "nose wrinkled" in DESCRIPTORS[5]  # happiness AU12, disgust AU9


def test_builtin_prompts_fit_32_tokens_with_8_context_tokens():
    assert token_budget(77, 8) == 67
    for name, prompts in PROMPT_SETS.items():
        for p in prompts:
            n = count_tokens(p, TOK)
            assert 1 <= n <= token_budget(32, 8), (name, p, n)  # the fast 32-token text path stays exact
            ids = TOK([p])[0]
            assert int((ids != 0).sum()) == n + 2  # plus start and end tokens, nothing truncated


def test_build_prompt_sets_returns_fresh_lists():
    sets = build_prompt_sets()
    sets["class_names"][0] = "changed"
    assert build_prompt_sets()["class_names"][0] == "happiness"
    with pytest.raises(TypeError):
        PROMPT_SETS["new"] = ()  # type: ignore[index]


@pytest.mark.parametrize("fmt", ["toml_map", "toml_wrapped", "json_map", "json_list", "json_aliases"])
def test_load_descriptors_formats(tmp_path, fmt):
    if fmt == "toml_map":
        path = tmp_path / "d.toml"
        path.write_text("".join(f'{c} = "{t}"\n' for c, t in reversed(MY.items())))
    elif fmt == "toml_wrapped":
        path = tmp_path / "d.toml"
        path.write_text("descriptors = [" + ", ".join(f'"{t}"' for t in MY.values()) + "]\n")
    elif fmt == "json_map":
        path = tmp_path / "d.json"
        path.write_text(json.dumps({c.upper(): t for c, t in MY.items()}))
    elif fmt == "json_list":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(list(MY.values())))
    else:
        path = tmp_path / "d.json"
        aliases = ["happy", "sad", "neutral", "angry", "surprised", "disgusted", "fearful"]
        path.write_text(json.dumps({a: MY[c] for a, c in zip(aliases, CLASSES)}))
    assert load_descriptors(path, tokenizer=TOK) == list(MY.values())
    sets = build_prompt_sets(path, tokenizer=TOK)
    assert sets["descriptors"] == list(MY.values()) and sets["class_names"] == list(PROMPT_SETS["class_names"])


def _write(tmp_path, data, name="user.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(
    "data, message",
    [
        ({c: t for c, t in MY.items() if c != "Fear"}, "no descriptor for class Fear"),
        ({**MY, "joy": "x"}, "unknown class 'joy'"),
        ({**MY, "happy": "x"}, "class Happiness is given twice"),
        (list(MY.values())[:5], "a list must hold 7 descriptors .* got 5"),
        ({**MY, "Anger": ""}, "class Anger: the descriptor must be a non-empty string"),
        ({**MY, "Anger": 3}, "class Anger: the descriptor must be a non-empty string"),
        ("just text", "expected a mapping"),
        ('{"Happiness": "a",\n "Sadness": }', r"user.json:2: invalid JSON"),
    ],
)
def test_load_descriptors_errors_name_file_and_class(tmp_path, data, message):
    path = _write(tmp_path, json.dumps(data) if data == "just text" else data)
    with pytest.raises(ConfigError, match=message) as info:
        load_descriptors(path, tokenizer=TOK)
    assert str(path) in str(info.value)


def test_too_long_descriptor_names_class_and_budget(tmp_path):
    long = "brows raised " * 30  # 60 tokens: within the 67-token budget
    assert count_tokens(long, TOK) == 60
    path = _write(tmp_path, {**MY, "Disgust": long})
    assert load_descriptors(path, tokenizer=TOK)[5] == long.strip()  # 60 <= 67
    too_long = long + "brows raised " * 4
    assert count_tokens(too_long, TOK) == 68
    path = _write(tmp_path, {**MY, "Disgust": too_long})
    with pytest.raises(ConfigError, match=r"class Disgust: the descriptor has 68 tokens but at most 67 fit"):
        load_descriptors(path, tokenizer=TOK)
    with pytest.raises(ConfigError, match="at most 65 fit"):
        load_descriptors(_write(tmp_path, {**MY, "Disgust": long + "brows raised " * 3}), n_ctx=10, tokenizer=TOK)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="prompts file not found"):
        load_descriptors(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"\.toml or \.json"):
        load_descriptors(_write(tmp_path, "x", name="d.yaml"))
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_descriptors(_write(tmp_path, "Happiness = \n", name="d.toml"))
    assert "d.toml" in str(info.value)


def test_a_bom_is_read_and_other_encodings_are_named(tmp_path):
    """Notepad saves UTF-8 with a BOM (refused as U+FEFF before); Latin-1 gave a bare UnicodeDecodeError."""
    path = tmp_path / "d.toml"
    path.write_bytes("\ufeff".encode("utf-8") + "".join(f'{c} = "{t}"\n' for c, t in MY.items()).encode("utf-8"))
    assert load_descriptors(path) == list(MY.values())
    latin = tmp_path / "latin.toml"
    latin.write_bytes("".join(f'{c} = "{t} caf\xe9"\n' for c, t in MY.items()).encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.toml: is not UTF-8 text \(byte 0xe9 at offset"):
        load_descriptors(latin)
