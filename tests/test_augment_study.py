"""benchmarks/augment_study.py: the recipes it extracts are the ones docs/augment-study.md names, and
fold k's sweep differs from the shipped one only in the fold of its three store paths."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _driver():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmarks_augment_study", ROOT / "benchmarks" / "augment_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


driver = _driver()


def test_recipes_are_the_paper_profile_and_dfer_clips():
    got = {name: driver.recipe(name) for name in driver.RECIPES}
    assert (got["paper"].brightness, got["paper"].rotation_degrees) == (0.5, 4.0)  # all four
    assert (got["dfew"].brightness, got["dfew"].rotation_degrees) == (0.5, 0.0)  # no rotation
    assert (got["ferv39k"].brightness, got["ferv39k"].rotation_degrees) == (0.0, 4.0)  # no jitter
    assert len({(r.crop_scale, r.crop_ratio, r.flip_p) for r in got.values()}) == 1  # crop and flip shared
    sets = driver.augment_settings("ferv39k")
    assert "augment.brightness=0.0" in sets and "augment.rotation_degrees=4.0" in sets


def test_fold_sweep_moves_only_the_store_paths(tmp_path, monkeypatch):
    from tgdfer.config import load_toml

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(driver, "SWEEPS", tmp_path)
    shipped, fold3 = load_toml(driver.SWEEP), load_toml(driver.fold_sweep(3))
    assert [p["train"]["store"] for p in fold3["points"]] == \
        [f"cache/augment_study/fold3/{r}.zarr" for r in driver.RECIPES]
    for p in (*shipped["points"], *fold3["points"]):
        assert set(p) == {"name", "train"} and set(p["train"]) == {"store"}  # a point changes the store only
    assert shipped["sweep"] == fold3["sweep"]
