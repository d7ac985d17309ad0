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
    dfew, ferv = load_pipeline("pipelines/dfew.toml"), load_pipeline("pipelines/ferv39k.toml")
    assert (dfew.augment.brightness, dfew.augment.rotation_degrees) == (0.5, 0.0)
    assert (ferv.augment.brightness, ferv.augment.rotation_degrees) == (0.0, 4.0)


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
