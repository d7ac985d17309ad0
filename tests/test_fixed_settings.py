"""Settings a store fixes ([extract], [augment], [faces]) at train time: refused when set on the command line,
recorded as the store's (with a warning) when only the pipeline file differs (tgdfer.fixedsettings).

The session's tiny store was extracted with views 2, frames 8, seed 3 (conftest EXTRACT) and AugmentConfig()
(brightness 0.5), no face stage."""

import json
import logging

import pytest
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.errors import ConfigError
from tgdfer.fixedsettings import store_differences, stored_record
from tgdfer.pipeline import load_pipeline
from tgdfer.store import FeatureStore

from smallhead import small_pipeline_toml


def pipeline_file(tmp_path, store, weights, extra=""):
    path = tmp_path / "p.toml"
    path.write_text(small_pipeline_toml(store, weights, epochs=1, batch_size=8, extra='device = "cpu"\n' + extra))
    return path


@pytest.fixture(scope="module")
def fingerprint(reference_store):
    with FeatureStore.open(reference_store) as store:
        return store.fingerprint


def test_store_differences_name_each_setting_with_both_values(tmp_path, reference_store, tiny_weights, fingerprint):
    agrees = ["extract.views=2", "extract.frames=8", "extract.seed=3", "extract.workers=7", "extract.batch_clips=1"]
    pipe = load_pipeline(pipeline_file(tmp_path, reference_store, tiny_weights), agrees)
    assert store_differences(pipe.to_dict(), fingerprint) == []  # batch_clips, workers: not in the features
    record = {"pipeline": pipe.to_dict()}
    assert stored_record(record, fingerprint, "s") is record  # agreeing settings leave the record as it was
    pipe = load_pipeline(pipeline_file(tmp_path, reference_store, tiny_weights),
                         agrees + ["augment.crop_scale=[0.5, 1.0]", "extract.normalize='none'",
                                   "extract.augment_test=false", "faces.detector='centerface'"])
    assert store_differences(pipe.to_dict(), fingerprint) == [
        ("extract.normalize", "none", "clip"), ("extract.augment_test", False, True),
        ("augment.crop_scale", [0.5, 1.0], [0.08, 1.0]), ("faces.detector", "centerface", "none")]


def test_a_store_fixed_override_on_the_command_line_is_refused_before_training(tmp_path, reference_store,
                                                                                tiny_weights):
    config, out = pipeline_file(tmp_path, reference_store, tiny_weights), tmp_path / "run"
    result = CliRunner().invoke(app, ["train-head", "-c", str(config), "--fold", "1", "--out", str(out),
                                      "--set", "augment.brightness=0.1", "--set", "extract.views=2"])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert (f"augment.brightness: set to 0.1 on the command line, but {reference_store} was extracted with 0.5"
            in flat), flat  # extract.views=2 is the store's own value: not named
    assert "extract.views" not in flat and "extract a store with it" in flat
    assert not out.exists()  # nothing trained, no run folder
    with pytest.raises(ConfigError, match=r"extract\.views: set to 4 .* extracted with 2"):  # the Python API too
        import tgdfer

        tgdfer.train(config, fold=1, out=out, overrides=["extract.views=4"])
    assert not out.exists()


def test_a_store_fixed_setting_from_the_file_trains_and_records_the_stores_value(tmp_path, reference_store,
                                                                                  tiny_weights, caplog):
    """The file says brightness 0.1 and 4 views; the features were made with 0.5 and 2: the run says 0.5 and 2."""
    config = pipeline_file(tmp_path, reference_store, tiny_weights,
                           "[augment]\nbrightness = 0.1\n[extract]\nviews = 4\nframes = 8\nworkers = 0\n")
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="tgdfer.fixedsettings"):
        result = CliRunner().invoke(app, ["train-head", "-c", str(config), "--fold", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    pipeline = json.loads((out / "config.json").read_text())["pipeline"]
    assert pipeline["augment"]["brightness"] == 0.5 and pipeline["extract"]["views"] == 2
    assert pipeline["extract"]["frames"] == 8 and pipeline["extract"]["workers"] == 0  # as the file gives them
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert (f"{reference_store} was extracted with other settings than the pipeline gives (extract.views: 4 in the "
            "config, 2 in the store; extract.seed: 0 in the config, 3 in the store; augment.brightness: 0.1 in the "
            "config, 0.5 in the store)") in warnings[0]


def test_resuming_a_run_that_recorded_the_files_values_records_the_stores(tmp_path, reference_store, tiny_weights,
                                                                         caplog):
    """A run started before this rule recorded the file's brightness 0.1 and 4 views in config.json; resumed, it
    trains on (and now records) the store's 0.5 and 2, with the one warning of any run, not a refusal."""
    config = pipeline_file(tmp_path, reference_store, tiny_weights,
                           "[augment]\nbrightness = 0.1\n[extract]\nviews = 4\nframes = 8\nseed = 3\n")
    out = tmp_path / "run"
    assert CliRunner().invoke(app, ["train-head", "-c", str(config), "--fold", "1", "--out", str(out)]).exit_code == 0
    record = json.loads((out / "config.json").read_text())
    record["pipeline"]["augment"]["brightness"], record["pipeline"]["extract"]["views"] = 0.1, 4  # as written then
    (out / "config.json").write_text(json.dumps(record))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tgdfer.fixedsettings"):
        result = CliRunner().invoke(app, ["train-head", "-c", str(config), "--fold", "1", "--out", str(out),
                                          "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    after = json.loads((out / "config.json").read_text())
    assert after["pipeline"]["augment"]["brightness"] == 0.5 and after["pipeline"]["extract"]["views"] == 2
    assert after["train"]["epochs"] == 2 and after["pipeline"]["extract"]["frames"] == 8
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    after["pipeline"]["extract"]["retired"] = 1  # a field an older tgdfer wrote, since removed: resumes as before
    (out / "config.json").write_text(json.dumps(after))
    result = CliRunner().invoke(app, ["train-head", "-c", str(config), "--fold", "1", "--out", str(out),
                                      "--resume", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["pipeline"]["extract"]["retired"] == 1


def test_a_face_stage_the_config_lacks_is_compared_and_recorded_field_by_field(tmp_path, reference_store,
                                                                                tiny_weights, fingerprint):
    """A store cropped with margin 0.4 and every 2, trained from a file without [faces] (or with its margin
    only): every face field the store fixes is named and recorded, not the detector alone beside the file's
    other values (a record of detector centerface with margin 0.3 was no stage that ran)."""
    from tgdfer.facetrack import FacesConfig

    faced = {**fingerprint, "faces": FacesConfig(detector="centerface", margin=0.4, every=2).fingerprint()}
    agrees = ["extract.views=2", "extract.frames=8", "extract.seed=3"]
    pipe = load_pipeline(pipeline_file(tmp_path, reference_store, tiny_weights), agrees + ["faces.margin=0.3"])
    assert store_differences(pipe.to_dict(), faced) == [
        ("faces.detector", "none", "centerface"), ("faces.every", 4, 2), ("faces.margin", 0.3, 0.4)]
    record = stored_record({"pipeline": pipe.to_dict()}, faced, "s")
    assert FacesConfig(**record["pipeline"]["faces"]).fingerprint() == faced["faces"]  # the stage the store ran
    other_rule = {**faced, "faces": {**faced["faces"], "track": 3}}  # the face-track rule is code, not a setting
    assert [d[0] for d in store_differences(pipe.to_dict(), other_rule)] == ["faces.detector", "faces.every",
                                                                             "faces.margin"]
    assert "track" not in stored_record({"pipeline": pipe.to_dict()}, other_rule, "s")["pipeline"]["faces"]
    no_faces = {**fingerprint, "faces": None}  # a store without a face stage: only "detector" = "none" compared
    no_faces.pop("faces")
    assert store_differences(pipe.to_dict(), no_faces) == []
