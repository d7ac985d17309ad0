"""Pipeline files: every shipped config builds; sections and overrides are checked."""

from pathlib import Path

import pytest

from tgdfer.errors import ConfigError
from tgdfer.pipeline import load_pipeline

PIPELINES = sorted((Path(__file__).parents[1] / "pipelines").glob("*.toml"))


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_shipped_pipelines_build(path):
    pipe = load_pipeline(path)
    assert pipe.extract.frames == 16  # the paper's T everywhere
    assert pipe.source == str(path)


def test_paper_augmentation_recipes():
    from tgdfer.augment import AugmentConfig

    # the paper profile: Sec. 4.2's four augmentations, DFER-CLIP's magnitudes (the paper gives none)
    for path in ("pipelines/dfew.toml", "pipelines/ferv39k.toml", "pipelines/mafw.toml"):
        aug = load_pipeline(path).augment  # no dataset file sets [augment] itself: the profile decides
        assert (aug.crop_scale, aug.flip_p, aug.brightness, aug.rotation_degrees) == ((0.08, 1.0), 0.5, 0.5, 4.0)
        assert load_pipeline(path, profile="recommended").augment == AugmentConfig.reference("dfew")
    assert AugmentConfig.reference("ferv39k").rotation_degrees == 4.0 and AugmentConfig.reference("ferv39k").brightness == 0


def test_overrides_reach_the_dataclasses():
    pipe = load_pipeline("pipelines/synthetic.toml", ["extract.views=3", "encoder.precision=bf16", "proxy.steps=50"])
    assert pipe.extract.views == 3 and pipe.encoder.precision == "bf16" and pipe.proxy.steps == 50


@pytest.mark.parametrize(
    "override, field",
    [("extract.views=0", "extract.views"), ("data.kind=avi", "data.kind"), ("nosuch.lr=1", "nosuch"),
     ("encoder.precision=fp8", "encoder.precision"), ("augment.flip_p=2.0", "augment.flip_p")],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        load_pipeline("pipelines/synthetic.toml", [override])
    assert e.value.field == field


def test_profiles_paper_and_recommended_are_one_flag_apart(tmp_path):
    from tgdfer.errors import ConfigError
    from tgdfer.pipeline import load_pipeline

    paper = load_pipeline("pipelines/dfew.toml")  # the file says profile = "paper"
    assert (paper.head.coarse_learnable, paper.head.coarse_text, paper.head.influence, paper.head.pos_init_std,
            paper.train.drop_last, paper.extract.normalize) == (True, "class_names", "similarity", 1.0, True, "none")
    rec = load_pipeline("pipelines/dfew.toml", profile="recommended")
    assert (rec.head.coarse_learnable, rec.head.coarse_text, rec.head.influence, rec.head.pos_init_std,
            rec.train.drop_last, rec.extract.normalize) == (False, "class_sentences", "relative", 0.02, False, "clip")
    assert rec.train.epochs == paper.train.epochs == 50 and rec.data == paper.data  # the file's own settings stay
    # precedence: profile < the file's tables < overrides
    f = tmp_path / "p.toml"
    f.write_text('profile = "paper"\n[head]\ninfluence = "relative"\n')
    p = load_pipeline(f, ["train.drop_last=false"])
    assert p.head.influence == "relative" and p.train.drop_last is False and p.head.coarse_learnable is True
    with pytest.raises(ConfigError, match="profile: 'papr' is neither a profile"):
        load_pipeline(f, profile="papr")


def test_a_pipeline_extends_its_base_file(tmp_path):
    from tgdfer.errors import ConfigError
    from tgdfer.pipeline import load_pipeline

    e2e = load_pipeline("pipelines/dfew_end_to_end.toml")  # base = "dfew.toml", profile "paper" from there
    dfew = load_pipeline("pipelines/dfew.toml")
    assert e2e.train.end_to_end and e2e.train.encoder_lr == 1e-5 and e2e.extract.views == 1
    assert e2e.data == dfew.data and e2e.head == dfew.head and e2e.train.epochs == dfew.train.epochs == 50
    (tmp_path / "a.toml").write_text('base = "b.toml"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(ConfigError, match="loop"):
        load_pipeline(tmp_path / "a.toml")


def test_a_base_files_reader_arguments_do_not_follow_into_another_reader(tmp_path):
    """pipelines/cache_study.toml reads a CSV over synthetic.toml's DFEW reader: split_dir must not reach read_csv."""
    study, demo = load_pipeline("pipelines/cache_study.toml"), load_pipeline("pipelines/synthetic.toml")
    assert (demo.data.kind, study.data.kind) == ("dfew", "csv")
    assert "split_dir" in demo.data.args and set(study.data.args) == {"csv_file", "id_col", "missing"}
    assert study.encoder == demo.encoder and study.augment == demo.augment  # the rest is still inherited
    assert study.head.window == demo.head.window and study.head.learnable == demo.head.learnable
    (tmp_path / "base.toml").write_text('[data]\nkind = "dfew"\nargs = { split_dir = "s", frames_dir = "f" }\n')
    (tmp_path / "same.toml").write_text('base = "base.toml"\n[data]\nkind = "dfew"\nargs = { missing = "skip" }\n')
    assert load_pipeline(tmp_path / "same.toml").data.args == {"split_dir": "s", "frames_dir": "f", "missing": "skip"}
