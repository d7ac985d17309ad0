"""Any class set: labels.ClassSet, the [classes] table, prompt files (TOML/JSON/DFER-CLIP Text.py),
and a 3-class and an 11-class set end to end (extract -> train-head -> evaluate -> predict)."""

import json
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from tgdfer.augment import AugmentConfig
from tgdfer.cli import app
from tgdfer.errors import ConfigError, TgdferError
from tgdfer.evaluation import evaluate
from tgdfer.extraction import extract
from tgdfer.figures import DPI
from tgdfer.head import HeadConfig
from tgdfer.info import describe
from tgdfer.labels import (CLASSES, DEFAULT, ClassSet, class_index, class_set, classes_record, short_names,
                           stored_classes)
from tgdfer.pipeline import ClassesConfig, load_pipeline
from tgdfer.predict import predict
from tgdfer.prompts import DESCRIPTORS, PROMPT_SETS, build_prompt_sets, default_prompt_sets, load_prompt_file
from tgdfer.store import FeatureStore
from tgdfer.synth import SynthConfig, check_class_set, generate
from tgdfer.training import TrainConfig, train

from smallhead import SMALL_HEAD_TOML, small_head

runner = CliRunner()
TOK = open_clip.SimpleTokenizer()
ROOT = Path(__file__).resolve().parents[1]
MAFW = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
        "contempt", "anxiety", "helplessness", "disappointment")  # MAFW's official order
THREE = ("Joy", "Calm", "Other")
THREE_PROMPTS = """\
[descriptors]
joy = ["lip corners pulled up", "cheeks raised."]
CALM = "a relaxed face."
Other = "any other expression."

[class_names]
joy = "joy"
calm = "calm"
other = "something else"
"""
THREE_DESCRIPTORS = ["lip corners pulled up, cheeks raised.", "a relaxed face.", "any other expression."]


def flat(text: str) -> str:
    """Text without whitespace: rich wraps console lines at 80 columns."""
    return "".join(str(text).split())


# -- the class set --------------------------------------------------------------------------------


def test_index_is_case_insensitive_and_emotion_aliases_belong_to_the_default_set_only():
    assert DEFAULT.names == CLASSES and DEFAULT.is_default and len(DEFAULT) == 7
    assert DEFAULT.index("happy") == 0 and DEFAULT.index(" FEARFUL ") == 6 and class_index("sad") == 1
    mafw = ClassSet(MAFW)
    assert not mafw.is_default and len(mafw) == 11
    assert mafw.index("Happiness") == 3 and mafw.index(" CONTEMPT ") == 7
    with pytest.raises(ValueError, match="unknown class 'happy'; expected one of anger, disgust"):
        mafw.index("happy")  # an emotion alias, but not a name of this set
    with pytest.raises(ValueError, match="unknown emotion 'contempt'"):
        class_index("contempt")  # the old helper stays on the 7 emotions
    assert (DEFAULT.neutral, mafw.neutral, ClassSet(("a", "b")).neutral) == (2, 4, None)
    assert class_set(list(CLASSES)) is DEFAULT and class_set(None) is DEFAULT
    assert class_set(MAFW).names == MAFW and mafw.describe().startswith("11 classes (anger, disgust, fear,")


@pytest.mark.parametrize("names, message", [
    ([], "classes.names: the class set is empty"),
    (["Joy", "joy"], "classes.names: classes 'Joy' and 'joy' are listed twice"),
    (["a", "b", "a"], "classes.names: class 'a' is listed twice"),
    (["only"], "classes.names: a class set needs at least 2 classes, got only 'only'"),
    (["a", " "], "classes.names: class names must be non-empty strings"),
])
def test_bad_class_sets_are_config_errors_naming_the_field(names, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline(None, [f"classes.names={json.dumps(names)}"])


def test_fingerprint_record_is_absent_for_the_default_set_and_old_stores_mean_the_default():
    assert classes_record(DEFAULT) is None
    assert classes_record(ClassSet(MAFW)) == {"names": list(MAFW)}
    assert stored_classes({}) is DEFAULT and stored_classes(None) is DEFAULT
    assert stored_classes({"classes": {"names": list(MAFW)}}).names == MAFW
    assert stored_classes({"classes": {"names": list(CLASSES)}}) is DEFAULT


def test_short_names_stay_unique():
    short = short_names(MAFW)
    assert short["disgust"] == "disg" and short["disappointment"] == "disa" and short["anger"] == "ang"
    assert len(set(short.values())) == 11
    assert short_names(CLASSES) == {c: c[:3] for c in CLASSES}


# -- prompts -------------------------------------------------------------------------------------


def test_prompts_of_another_set_reuse_the_builtin_texts_of_the_seven_emotions():
    sets = default_prompt_sets(ClassSet(MAFW))
    assert set(sets) == {"class_names", "class_sentences"}  # no descriptors for contempt & co. without a file
    assert sets["class_names"][7] == "contempt" and sets["class_names"][3] == "happiness"
    assert sets["class_sentences"][3] == PROMPT_SETS["class_sentences"][0]  # happiness: the built-in sentence
    assert sets["class_sentences"][7] == "a photo of a face showing contempt."
    subset = default_prompt_sets(ClassSet(("Fear", "Happiness")))
    assert subset["descriptors"] == [DESCRIPTORS[6], DESCRIPTORS[0]]
    assert build_prompt_sets() == {k: list(v) for k, v in PROMPT_SETS.items()}  # the default is unchanged


def test_prompt_file_tables_lists_and_case(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(THREE_PROMPTS)
    sets = load_prompt_file(path, ClassSet(THREE))
    assert sets == {"descriptors": tuple(THREE_DESCRIPTORS), "class_names": ("joy", "calm", "something else")}
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps({"descriptors": THREE_DESCRIPTORS[::-1]}))  # a list: label order
    assert load_prompt_file(as_json, ClassSet(THREE[::-1]))["descriptors"] == tuple(THREE_DESCRIPTORS[::-1])
    built = build_prompt_sets(classes=ClassSet(THREE, prompts=sets), tokenizer=TOK)
    assert built["descriptors"] == THREE_DESCRIPTORS and built["class_names"][2] == "something else"
    assert built["class_sentences"][0] == "a photo of a face showing joy."


@pytest.mark.parametrize("text, message", [
    ('[descriptors]\njoy = "x"\ncalm = "y"\n', r"no descriptor for class Other \(in descriptors\)"),
    ('[descriptors]\njoy = "x"\ncalm = "y"\nother = "z"\njoyful = "w"\n', r"unknown class 'joyful' \(key descriptors.joyful\)"),
    ('joy = "x"\ncalm = "y"\nhappy = "z"\n', r"unknown class 'happy' \(key happy\); expected one of Joy, Calm, Other"),
    ('joy = "x"\ncalm = "y"\nother = "z"\n[class_names]\njoy = "a"\n', "unknown class key 'joy' next to the prompt set"),
    ('[descriptors]\njoy = "x"\ncalm = []\nother = "z"\n', "class Calm: the descriptor must be a non-empty string"),
    ('[descriptors]\njoy = "x"\nJOY = "y"\ncalm = "c"\nother = "z"\n', "class Joy is given twice"),
    ('descriptors = ["a", "b"]\n', "a list must hold 3 descriptors in the order Joy, Calm, Other; got 2"),
    ('[colours]\njoy = "x"\n', "unknown class 'colours'"),
])
def test_prompt_file_errors_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "prompts.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_prompt_file(path, ClassSet(THREE))
    assert str(path) in str(info.value)


def test_a_prompts_file_missing_a_class_fails_at_config_time_naming_field_and_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[descriptors]\njoy = "x"\ncalm = "y"\n')
    with pytest.raises(ConfigError, match=r"classes.prompts_file: .*mine.toml: no descriptor for class Other"):
        load_pipeline(None, [f"classes.names={json.dumps(list(THREE))}", f"classes.prompts_file={json.dumps(str(path))}"])
    with pytest.raises(ConfigError, match=r"^prompts_file: .*nope.toml: prompts file not found"):
        ClassesConfig(prompts_file=str(tmp_path / "nope.toml"))


def test_a_too_long_prompt_names_the_file_and_class(tmp_path):
    path = tmp_path / "long.toml"
    path.write_text('[descriptors]\njoy = "x"\ncalm = "y"\nother = "' + "brows raised " * 40 + '"\n')
    cs = ClassesConfig(names=list(THREE), prompts_file=str(path)).class_set()
    with pytest.raises(ConfigError, match=r"long.toml: class Other: the descriptor has 80 tokens but at most 67 fit"):
        build_prompt_sets(classes=cs, tokenizer=TOK)


DFER_CLIP_STYLE = """\
import os
open(os.path.join(os.path.dirname(__file__), "EXECUTED"), "w").write("never")  # parsed, never run

class_names_3 = [
'joy.',
'calm.',
'other.'
]
class_names_with_context_3 = ['an expression of joy.', 'an expression of calm.', 'an expression of other.']
class_descriptor_3 = [
'lips up, cheeks raised.',
'nothing moves.',
'something else moves.',
]
class_names_2 = ['joy.', 'calm.']
"""


def test_dfer_clip_text_py_is_parsed_without_running_it(tmp_path):
    path = tmp_path / "Text.py"
    path.write_text(DFER_CLIP_STYLE)
    sets = load_prompt_file(path, ClassSet(THREE))
    assert not (tmp_path / "EXECUTED").exists()
    assert sets == {"class_names": ("joy.", "calm.", "other."),
                    "class_sentences": ("an expression of joy.", "an expression of calm.", "an expression of other."),
                    "descriptors": ("lips up, cheeks raised.", "nothing moves.", "something else moves.")}
    cfg = ClassesConfig(names=list(THREE), prompts_file=str(path))  # one config line loads it
    assert cfg.class_set().prompts["descriptors"][1] == "nothing moves."
    with pytest.raises(ConfigError, match=r"Text.py:4: class_names_3 lists 'joy.' as class 1, where the class set "
                                          r"has 'Calm'"):
        load_prompt_file(path, ClassSet(("Calm", "Joy", "Other")))
    with pytest.raises(ConfigError, match=r"no prompt lists for the 4 declared classes .*the file has lists for 2, 3"):
        load_prompt_file(path, ClassSet(("a", "b", "c", "d")))
    bad = tmp_path / "bad.py"
    bad.write_text("class_descriptor_3 = ['a', 'b']\n")
    with pytest.raises(ConfigError, match=r"bad.py:1: class_descriptor_3 must list 3 texts, .*; got 2"):
        load_prompt_file(bad, ClassSet(THREE))


def test_dfer_clip_style_file_with_7_and_11_lists_serves_the_default_set_and_mafw(tmp_path):
    dfer11 = [c.lower() for c in CLASSES] + ["contempt", "anxiety", "helplessness", "disappointment"]
    lines = []
    for n, names in ((7, dfer11[:7]), (11, dfer11)):
        lines.append(f"class_names_{n} = [" + ", ".join(f"'{c}.'" for c in names) + "]")
        lines.append(f"class_names_with_context_{n} = [" + ", ".join(f"'an expression of {c}.'" for c in names) + "]")
        lines.append(f"class_descriptor_{n} = [" + ", ".join(f"'{n} faces of {c}.'" for c in names) + "]")
    path = tmp_path / "Text.py"
    path.write_text("\n".join(lines) + "\n")
    seven = ClassesConfig(prompts_file=str(path)).class_set()  # the default names: the _7 lists
    assert seven.is_default and seven.prompts["descriptors"][6] == "7 faces of fear."
    built = build_prompt_sets(classes=seven, tokenizer=TOK)
    assert built["class_names"][0] == "happiness." and built["class_sentences"][2] == "an expression of neutral."
    eleven = ClassesConfig(names=dfer11, prompts_file=str(path)).class_set()
    assert eleven.prompts["descriptors"][10] == "11 faces of disappointment."
    with pytest.raises(ConfigError, match=r"class_names_11 lists 'happiness.' as class 1, where the class set has "
                                          r"'anger'"):
        ClassesConfig(names=list(MAFW), prompts_file=str(path))  # MAFW's official order is not the file's


def test_the_mafw_pipeline_declares_11_classes_with_prompts_that_fit():
    pipe = load_pipeline(ROOT / "pipelines" / "mafw.toml")
    cs = pipe.classes.class_set()
    assert len(cs) == 11 and set(n.lower() for n in cs.names) == set(MAFW)
    sets = build_prompt_sets(classes=cs, tokenizer=TOK)  # checks every prompt against the token budget
    assert set(sets) == {"class_names", "class_sentences", "descriptors"}
    assert all(len(v) == 11 and len(set(v)) == 11 for v in sets.values())
    assert sets["descriptors"][cs.index("happiness")] == DESCRIPTORS[0]


def test_synthdfer_refuses_another_class_set(tmp_path):
    check_class_set(None)
    check_class_set(DEFAULT)
    with pytest.raises(ConfigError, match="classes.names: SynthDFER makes only the 7 basic emotions .*cannot draw "
                                          "contempt, anxiety, helplessness, disappointment"):
        generate(tmp_path / "s", SynthConfig(clips=10, workers=1), classes=ClassSet(MAFW))
    assert not (tmp_path / "s").exists()
    with pytest.raises(ConfigError, match="orders or selects them differently"):
        check_class_set(ClassSet(CLASSES[::-1]))
    result = runner.invoke(app, ["synth", str(tmp_path / "s"), "--clips", "10", "--set", 'classes.names=["a", "b"]'])
    assert result.exit_code == 2 and "SynthDFER makes only" in result.output and "Traceback" not in result.output


# -- end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three(tmp_path_factory, clip_table, encoder_cfg):
    """A 3-class pipeline over the session's SynthDFER clips (label % 3), through the CLI: extract -> train-head."""
    root = tmp_path_factory.mktemp("three")
    lists = root / "lists"
    lists.mkdir()
    for k in (1, 2):
        for part, rows in (("train", clip_table[clip_table.fold != k]), ("test", clip_table[clip_table.fold == k])):
            (lists / f"set_{k}_{part}.txt").write_text(
                "".join(f"{r.path} {r.n_frames} {r.label % 3}\n" for r in rows.itertuples()))
    (root / "prompts.toml").write_text(THREE_PROMPTS)
    store, out = root / "three.zarr", root / "runs"
    pipeline = root / "three.toml"
    pipeline.write_text(f"""
[classes]
names = {json.dumps(list(THREE))}
prompts_file = "{root / 'prompts.toml'}"
[data]
kind = "list"
args = {{ files = "{lists}", missing = "error" }}
[encoder]
model = "{encoder_cfg.model}"
pretrained = "{encoder_cfg.pretrained}"
[extract]
store = "{store}"
views = 2
frames = 8
seed = 3
workers = 0
batch_clips = 4
[head]
{SMALL_HEAD_TOML}text_prompt = "descriptors"
[train]
store = "{store}"
out = "{out}"
epochs = 2
batch_size = 8
device = "cpu"
""")
    result = runner.invoke(app, ["extract", "--config", str(pipeline)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train-head", "--config", str(pipeline), "--folds", "1-2"])
    assert result.exit_code == 0, result.output
    return {"root": root, "pipeline": pipeline, "store": store, "runs": [out / "fold1", out / "fold2"],
            "labels": (clip_table["label"] % 3).to_numpy()}


def test_three_classes_end_to_end_through_the_cli(three, synth_dir):
    with FeatureStore.open(three["store"]) as store:
        assert store.fingerprint["classes"] == {"names": list(THREE)}
        assert store.text("descriptors")[0] == THREE_DESCRIPTORS
        assert store.text("class_names")[0] == ["joy", "calm", "something else"]
        assert store.clips["label"].tolist() == three["labels"].tolist()
    assert describe(three["store"]).to_json()["classes"] == list(THREE)
    result = runner.invoke(app, ["info", str(three["store"])])
    assert result.exit_code == 0 and "classes: 3 classes (Joy, Calm, Other)" in result.output
    counts = describe(three["store"]).counts
    assert list(counts.index) == [*THREE, "total"]
    assert counts.loc["Calm", "total"] == f"{(three['labels'] == 1).sum()}/{(three['labels'] == 1).sum()}"

    final = json.loads((three["runs"][0] / "final.json").read_text())
    assert list(final["test"]["per_class"]) == list(THREE) and np.array(final["test"]["confusion"]).shape == (3, 3)

    out = three["root"] / "eval"
    result = runner.invoke(app, ["evaluate", *map(str, three["runs"]), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv", index_col=0)
    assert list(table.columns) == [*THREE, "UAR", "WAR"] and list(table.index) == ["fold 1", "fold 2", "mean", "std"]
    assert table.loc["mean", "WAR"] == pytest.approx(table.loc[["fold 1", "fold 2"], "WAR"].mean(), abs=0.01)
    assert "Joy" in result.output and "Oth" in result.output  # the console's short names
    assert Image.open(out / "figures" / "confusion_mean.png").size == (round(5.6 * DPI), round(5.0 * DPI))
    loc = pd.read_csv(out / "localisation.csv", index_col=0)  # no "neutral" class: every test clip is scored
    n_test = sum(json.loads((r / "final.json").read_text())["n_test"] for r in three["runs"])
    assert loc.loc["mean", "clips"] == n_test

    clip = sorted((synth_dir / "frames").iterdir())[0]
    result = runner.invoke(app, ["predict", str(three["runs"][0]), str(clip), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["classes"] == list(THREE)
    (p,) = doc["predictions"]
    assert list(p["probabilities"]) == list(THREE) and p["predicted"] in THREE
    assert p["predicted"] == max(p["probabilities"], key=p["probabilities"].get) == p["influence_class"]
    result = runner.invoke(app, ["predict", str(three["runs"][0]), str(clip), "--device", "cpu"])
    assert result.exit_code == 0 and "Other" in result.stdout and "Happiness" not in result.stdout


def test_a_store_for_one_class_set_refuses_another_naming_both(three, reference_store, encoder_cfg, tmp_path):
    result = runner.invoke(app, ["train-head", "--config", str(three["pipeline"]), "--fold", "1",
                                 "--out", str(tmp_path / "r"), "--set", f"classes.names={json.dumps(list(CLASSES))}",
                                 "--set", 'classes.prompts_file=""'])
    assert result.exit_code == 2 and "Traceback" not in result.output
    msg = flat(result.output)
    assert "classes.names" in msg and flat(f"{three['store']} was built for 3 classes (Joy, Calm, Other)") in msg
    assert flat("the config declares 7 classes (Happiness, Sadness,") in msg
    # an old store without a class record is the default 7: it refuses a 3-class config
    cfg = TrainConfig(store=str(reference_store), fold=1, out=str(tmp_path / "r2"), epochs=1, device="cpu")
    with pytest.raises(ConfigError, match=r"built for 7 classes \(Happiness.*declares 3 classes \(Joy, Calm, Other\)"):
        train(HeadConfig(learnable=False), cfg, classes=ClassSet(THREE))
    # re-extracting into the 3-class store with another class set names both, too
    result = runner.invoke(app, ["extract", "--config", str(three["pipeline"]), "--set",
                                 'classes.names=["Joy", "Calm", "Else"]', "--set", 'classes.prompts_file=""'])
    assert result.exit_code == 2 and flat("declares 3 classes (Joy, Calm, Else)") in flat(result.output)


def test_labels_outside_the_class_set_are_refused_before_any_work(clip_table, encoder_cfg, extract_config, tmp_path):
    with pytest.raises(TgdferError, match=r"has label [3-6], but the class set has 3 classes \(Joy, Calm, Other\)"):
        extract(extract_config(tmp_path / "x.zarr"), AugmentConfig(), encoder_cfg, clip_table, classes=ClassSet(THREE))
    assert not (tmp_path / "x.zarr").exists()


def test_eleven_classes_from_the_mafw_prompts(clip_table, encoder_cfg, extract_config, tmp_path, synth_dir):
    """MAFW's 11 classes (DFER-CLIP's label order, pipelines/mafw.toml) on tiny data: every class has clips."""
    cs = load_pipeline(ROOT / "pipelines" / "mafw.toml").classes.class_set()
    table = clip_table.assign(label=np.arange(len(clip_table)) % 11)
    store = tmp_path / "mafw.zarr"
    res = extract(extract_config(store), AugmentConfig(), encoder_cfg, table, data_kind="list", classes=cs)
    assert res.ok
    run = tmp_path / "run"
    result = train(small_head(text_prompt="descriptors"),
                   TrainConfig(store=str(store), fold=1, out=str(run), epochs=2, batch_size=8, device="cpu"),
                   encoder=encoder_cfg, classes=cs)
    assert list(result.test.per_class) == list(cs.names) and np.array(result.test.confusion).shape == (11, 11)
    ev = evaluate([run], out=tmp_path / "eval", device="cpu")
    assert list(ev.results.columns) == [*cs.names, "UAR", "WAR"] and ev.classes == cs.names
    grown = (5.6 + 4 * 0.45, 5.0 + 4 * 0.45)  # the confusion figure grows beyond 7 classes
    assert Image.open(tmp_path / "eval" / "figures" / "confusion_fold1.png").size == tuple(round(x * DPI) for x in grown)
    doc = predict(run, [sorted((synth_dir / "frames").iterdir())[3]], device="cpu").to_json()
    assert doc["classes"] == list(cs.names) and len(doc["predictions"][0]["probabilities"]) == 11
    assert sum(doc["predictions"][0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_checkpoints_without_a_class_record_are_the_default_set(reference_store, encoder_cfg, synth_dir, tmp_path):
    """Checkpoints written before class sets existed: names from the store fingerprint, prompts rebuilt."""
    from tgdfer.run import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    train(small_head(learnable=False), TrainConfig(store=str(reference_store), fold=1, out=str(run), epochs=1,
                                                   batch_size=8, device="cpu"), classes=DEFAULT)
    ckpt = load_checkpoint(run / "last.safetensors")
    assert ckpt["class_names"] == list(CLASSES) and set(ckpt["prompts"]) == {"class_sentences"}
    old = {k: v for k, v in ckpt.items() if k not in ("class_names", "prompts")}
    save_checkpoint(tmp_path / "old.safetensors", **old)
    clip = sorted((synth_dir / "frames").iterdir())[4]
    new_doc = predict(run, [clip], device="cpu", weights=encoder_cfg.pretrained).to_json()
    old_doc = predict(tmp_path / "old.safetensors", [clip], device="cpu", weights=encoder_cfg.pretrained).to_json()
    assert old_doc["classes"] == new_doc["classes"] == list(CLASSES)
    np.testing.assert_allclose(list(old_doc["predictions"][0]["probabilities"].values()),
                               list(new_doc["predictions"][0]["probabilities"].values()), atol=1e-6)
