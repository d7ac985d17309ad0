"""`tgdfer sweep` / `report`: points checked before anything runs, one batched run per point, resume, shards."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.errors import ConfigError, TgdferError
from tgdfer.sweep import (SweepError, load_sweep, paper_table, plan_sweep, point_pipeline, report, results_frame,
                          run_sweep)

from smallhead import small_pipeline_toml

GRID_2X2 = """
[grid]
"head.window" = [2, 4]
head.visual_prompt = ["none", "add"]
"""


@pytest.fixture
def base(tmp_path, reference_store, tiny_weights):
    """A pipeline on the session's tiny store (20 clips, 2 folds, 8 frames): small head, 2 epochs."""
    path = tmp_path / "base.toml"
    path.write_text(small_pipeline_toml(reference_store, tiny_weights, epochs=2, batch_size=4))
    return path


def sweep_file(tmp_path, base, body, head=""):
    path = tmp_path / "sweep.toml"
    path.write_text(f'[sweep]\nbase = "{base}"\nout = "{tmp_path / "out"}"\nfolds = "1-2"\n{head}\n{body}')
    return path


def test_2x2_sweep_trains_every_point_on_every_fold_and_tabulates_it(tmp_path, base, monkeypatch):
    path = sweep_file(tmp_path, base, GRID_2X2, head='labels = { "head.visual_prompt" = { none = "X" } }')
    out = tmp_path / "out"
    events, reports, progress = [], [], []

    def on_point(name, status, outcome):
        events.append((name, status))
        if status == "start" and (out / "results.csv").is_file():  # the report so far, as a point starts
            runs = pd.read_csv(out / "results.csv").query("fold != 'mean'")
            progress.append(int((runs["status"] == "done").sum()))

    def counted(folder, **kw):
        reports.append(folder)
        return report(folder, **kw)

    monkeypatch.setattr("tgdfer.sweep.report", counted)
    df = run_sweep(path, on_point=on_point)
    names = ["window=2,visual_prompt=none", "window=2,visual_prompt=add",
             "window=4,visual_prompt=none", "window=4,visual_prompt=add"]
    assert [n for n, s in events if s == "done"] == names
    assert progress == [2, 4, 6]  # after each point but the last, its runs (2 folds) in the report so far
    assert len(reports) == 4  # the three progress reports and the final one: the last point's is not written twice
    assert len(df) == 4 * 3 and df["point"].unique().tolist() == names
    runs = df[df["fold"] != "mean"]
    assert runs["fold"].tolist() == [1, 2] * 4 and (runs["status"] == "done").all()
    for row in runs.itertuples():
        final = json.loads((out / row.point / f"fold{row.fold}" / "final.json").read_text())
        assert row.UAR == round(100 * final["test"]["uar"], 2) and row.WAR == round(100 * final["test"]["war"], 2)
        recorded = json.loads((out / row.point / f"fold{row.fold}" / "config.json").read_text())
        assert recorded["head"]["window"] == row.window and recorded["train"]["fold"] == row.fold
    means = df[df["fold"] == "mean"].set_index("point")
    for name in names:
        assert means.loc[name, "WAR"] == pytest.approx(runs[runs["point"] == name]["WAR"].mean(), abs=0.006)
    assert means["status"].tolist() == ["2/2 done"] * 4
    assert means["visual_prompt"].tolist() == ["X", "add", "X", "add"] and means["window"].tolist() == [2, 2, 4, 4]
    table = paper_table(df)  # the paper's layout: a row per point, swept fields, UAR, WAR, their spread
    assert list(table.columns) == ["window", "visual_prompt", "UAR", "UAR std", "WAR", "WAR std", "runs",
                                   "vs best (WAR)"] and list(table.index) == names
    best = means["WAR"].idxmax()
    assert table.loc[best, "vs best (WAR)"] == "best"
    for name in names:
        wars = runs[runs["point"] == name].set_index("fold")["WAR"]
        assert table.loc[name, "WAR std"] == pytest.approx(wars.std(ddof=1), abs=0.006)
        if name != best:  # two folds: the paired mean difference, and its interval
            ref = runs[runs["point"] == best].set_index("fold")["WAR"]
            assert table.loc[name, "vs best (WAR)"].startswith(f"{(wars - ref).mean():+.2f} [")
    for name in ("results.csv", "results.md", "results.png"):
        assert (out / name).stat().st_size > 0
    pd.testing.assert_frame_equal(results_frame(out), df)
    again = pd.read_csv(out / "results.csv")
    assert again["WAR"].tolist() == pytest.approx(df["WAR"].tolist())
    assert "| window=2,visual_prompt=none |" in (out / "results.md").read_text()
    # 2 folds x 1 seed: by fold, Holm over the 6 pairs of 4 points, said under the table
    assert "paired over the 2 folds" in (out / "results.md").read_text()
    assert "Holm-adjusted p < 0.05 over the 6 comparisons" in (out / "results.md").read_text()


# workers=2 runs the second half in two spawned processes (each imports torch: make test-slow); with 1 the
# same resume, skip and merge checks run in this process
@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_half_done_sweep_resumes_and_shards_merge_in_report(tmp_path, base, workers):
    path = sweep_file(tmp_path, base, GRID_2X2)
    out = tmp_path / "out"
    first = run_sweep(path, shard_id=0, num_shards=2)  # points 0 and 2
    done = first[first["fold"] == "mean"].set_index("point")["status"]
    assert done.tolist() == ["2/2 done", "0/2 pending", "2/2 done", "0/2 pending"]
    stamp = (out / "window=2,visual_prompt=none" / "fold1" / "final.json").stat().st_mtime_ns
    events = []
    full = run_sweep(path, workers=workers, on_point=lambda name, status, outcome: events.append((name, status)))
    skipped = sorted(n for n, s in events if s == "skipped")
    assert skipped == ["window=2,visual_prompt=none", "window=4,visual_prompt=none"]
    assert sorted(n for n, s in events if s == "done") == ["window=2,visual_prompt=add", "window=4,visual_prompt=add"]
    assert (out / "window=2,visual_prompt=none" / "fold1" / "final.json").stat().st_mtime_ns == stamp
    assert (full[full["fold"] == "mean"]["status"] == "2/2 done").all()
    events.clear()
    run_sweep(path, on_point=lambda name, status, outcome: events.append((name, status)))
    assert {s for _, s in events} == {"queued", "skipped"}
    merged, paths = report(out)
    pd.testing.assert_frame_equal(merged, full)
    printed = CliRunner().invoke(app, ["report", str(out)])
    assert printed.exit_code == 0 and "vs best" in printed.output  # the console writes to stderr
    assert "Holm-adjusted p < 0.05 over the 6 comparisons" in " ".join(printed.output.split())
    # the same point with other settings in the same folder is refused, naming the field
    with pytest.raises(SweepError, match="train.epochs: 2 then, 3 now") as e:
        run_sweep(path, overrides=["train.epochs=3"])
    assert e.value.point == "window=2,visual_prompt=none"


def test_a_failing_point_is_recorded_and_the_others_run(tmp_path, base):
    body = """
[[points]]
name = "ok"
head.window = 2

[[points]]
name = "broken"
head = { window = 4, learnable = true }
encoder.pretrained = "/nowhere/weights.pt"

[[points]]
name = "ok2"
head.window = 4
"""
    df = run_sweep(sweep_file(tmp_path, base, body))
    means = df[df["fold"] == "mean"].set_index("point")
    assert means["status"].tolist() == ["2/2 done", "0/2 failed", "2/2 done"]
    assert "weights in a local file" in means.loc["broken", "error"]
    # a field a point does not set shows the value it ran with (the base's), not "none"
    base_learnable = json.loads((tmp_path / "out" / "ok" / "point.json").read_text())["pipeline"]["head"]["learnable"]
    assert means.loc["ok", "learnable"] == str(base_learnable).lower() and means.loc["broken", "learnable"] == "true"
    assert np.isnan(means.loc["broken", "WAR"]) and not np.isnan(means.loc["ok2", "WAR"])
    point = json.loads((tmp_path / "out" / "broken" / "point.json").read_text())
    assert point["status"] == "failed" and "TgdferError" in point["error"]
    assert "Traceback" in (tmp_path / "out" / "broken" / "error.txt").read_text()


def test_points_option_runs_only_the_named_points(tmp_path, base):
    path = sweep_file(tmp_path, base, GRID_2X2)
    events = []
    df = run_sweep(path, points=["window=4,visual_prompt=add"], on_point=lambda n, s, o: events.append((n, s)))
    assert [n for n, s in events if s == "done"] == ["window=4,visual_prompt=add"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["window=4,visual_prompt=add"]
    status = df[df["fold"] == "mean"].set_index("point")["status"]
    assert status["window=4,visual_prompt=add"] == "2/2 done" and status["window=2,visual_prompt=none"] == "0/2 pending"
    result = CliRunner().invoke(app, ["sweep", str(path), "--point", "window=4,visual_prompt=ad", "--dry-run"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    flat = " ".join(result.output.split())
    # only the named points are checked: another point may need a store that is not made yet
    body = '[[points]]\nname = "ok"\nhead.window = 2\n\n[[points]]\nname = "later"\ntrain.store = "/nowhere.zarr"\n'
    (tmp_path / "later").mkdir()
    later = sweep_file(tmp_path / "later", base, body)
    assert run_sweep(later, points=["ok"]).set_index("point").loc["ok", "status"].iloc[-1] == "2/2 done"
    with pytest.raises((SweepError, ConfigError), match="nowhere"):
        run_sweep(later)
    assert "--point" in flat and "did you mean 'window=4,visual_prompt=add'" in flat


def test_profile_lies_under_the_base_file_of_every_point(tmp_path, base):
    path = sweep_file(tmp_path, base, GRID_2X2)
    plain, paper = load_sweep(path), load_sweep(path, profile="paper")
    point = plain.points[0]
    assert point_pipeline(plain, point).head.coarse_learnable is False
    got = point_pipeline(paper, point)
    assert got.head.coarse_learnable is True and got.head.pos_init_std == 1.0  # tgdfer/profiles/paper.toml
    assert got.head.window == 2 and got.head.heads == 2  # the point and the base file still win
    result = CliRunner().invoke(app, ["sweep", str(path), "--profile", "paper", "--print-config"])
    assert result.exit_code == 0 and "coarse_learnable = true" in result.output
    with pytest.raises(ConfigError, match="profile"):
        point_pipeline(load_sweep(path, profile="nonsense"), point)


@pytest.mark.parametrize("body, point, field", [
    ('[grid]\n"head.windw" = [2, 4]', "windw=2", "head.windw"),  # unknown field
    ('[grid]\n"head.window" = [2, 0]', "window=0", "head.window"),  # fails HeadConfig's check
    ('[grid]\n"head.window" = [2, 16]', "window=16", "head.window"),  # does not fit the store's 8 frames
    ('[grid]\n"train.lr" = [0.1, -1.0]', "lr=-1.0", "train.lr"),
    ('[grid]\n"head.stride" = ["none", "two"]', "stride=two", "head.stride"),
    ('[[points]]\nname = "p"\ntrain.fold = 2', "p", "train.fold"),  # folds are the sweep's
    ('[grid]\n"head.window" = [2]\n[[points]]\nhead.window = 4', None, "grid"),
    ("[grid]", None, "grid"),  # empty grid
    ('[grid]\n"head.window" = []', None, "grid.head.window"),
    ("", None, "grid"),  # no points at all
    ('[grid]\n"head.window" = [2, 2]', "window=2", "name"),  # the same point twice
])
def test_bad_sweeps_are_rejected_before_anything_runs(tmp_path, base, body, point, field):
    with pytest.raises(SweepError) as e:
        run_sweep(sweep_file(tmp_path, base, body))
    assert e.value.field == field and e.value.point == point
    assert str(e.value).startswith(str(tmp_path / "sweep.toml"))
    assert not (tmp_path / "out").exists()


def test_bad_sweep_header_and_cli_message(tmp_path, base):
    with pytest.raises(SweepError, match="sweep.fold: unknown field"):
        load_sweep(sweep_file(tmp_path, base, GRID_2X2, head="fold = 1"))
    with pytest.raises(SweepError, match="sweep.base: .*does not exist"):
        load_sweep(sweep_file(tmp_path, tmp_path / "missing.toml", GRID_2X2))
    path = sweep_file(tmp_path, base, '[grid]\n"head.depth" = [1]')
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2
    assert "point 'depth=1': head.depth: unknown field" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, rows", [
    ("table3_depth", [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (1, 7), (7, 1), (7, 7)]),
    ("table4_window", [(None, 2), (None, 4), (None, 8), (1, 2), (1, 4), (1, 8), (2, 4), (2, 8), (3, 4)]),
    ("table5_prompts", [(lrn, t, v) for lrn in (False, True) for t in ("class", "descriptors")
                        for v in ("none", "add", "token")]),
])
def test_ready_made_sweeps_hold_the_paper_rows(name, rows):
    sweep = load_sweep(f"pipelines/sweeps/{name}.toml")
    assert sweep.folds == [1, 2, 3, 4, 5] and sweep.base == "pipelines/dfew.toml"
    got = []
    for p in sweep.points:
        head = point_pipeline(sweep, p).head  # every point passes the config checks
        got.append({"table3_depth": (head.fine_depth, head.coarse_depth),
                    "table4_window": (head.stride, head.window),
                    "table5_prompts": (head.learnable, head.text_prompt, head.visual_prompt)}[name])
    assert got == rows
    if name != "table4_window":
        assert [p.name for p in sweep.points] == list("abcdefghijkl")[:len(rows)]


def test_demo_sweep_file_is_small():
    sweep = load_sweep("pipelines/sweeps/synthetic.toml")
    assert len(sweep.points) == 2 and sweep.folds == [1]
    assert point_pipeline(sweep, sweep.points[0]).train.epochs <= 10


def test_optional_none_only_for_non_string_fields(tmp_path, base):
    body = '[grid]\n"head.stride" = ["none", 1]\n"encoder.pretrained" = ["none"]'
    sweep = load_sweep(sweep_file(tmp_path, base, body))
    pipe = point_pipeline(sweep, sweep.points[0])
    assert pipe.head.stride is None and pipe.encoder.pretrained == "none"
    with pytest.raises(ConfigError):
        point_pipeline(sweep, type(sweep.points[0])("x", {"head.window": "none"}))


def test_titles_say_the_folds_seeds_and_epochs_that_ran(tmp_path, base):
    """`sweep --folds 1,2 --seeds 0,1` with the demo sweep's title: the printed table, results.md and
    results.png are titled with what ran, never with a fold or epoch count written in the file."""
    import re

    from PIL import Image

    shipped = re.search(r'^title = "(.*)"', open("pipelines/sweeps/synthetic.toml").read(), re.M)[1]
    path = sweep_file(tmp_path, base, '[grid]\nhead.visual_prompt = ["none", "add"]\n', head=f'title = "{shipped}"')
    result = CliRunner().invoke(app, ["sweep", str(path), "--folds", "1,2", "--seeds", "0,1"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    want = f"{shipped} (folds 1, 2 x seeds 0, 1 = 4 runs per point, 2 epochs)"
    assert want in " ".join(result.output.split())
    out = tmp_path / "out"
    assert (out / "results.md").read_text().splitlines()[0] == f"**{want}**"
    with Image.open(out / "results.png") as png:
        assert png.text["Title"] == want
    for text in (result.output, (out / "results.md").read_text(), want):
        assert "fold 1," not in text and "10 epochs" not in text


@pytest.mark.parametrize("change, named", [
    ({"points": [{"name": "../elsewhere", "values": {}}]}, "point '../elsewhere'"),  # pulled another folder's run
    ({"points": [{"name": 3, "values": {}}]}, "point 3"),  # PosixPath / int traceback
    ({"fields": None}, "'fields' is None"),  # KeyError traceback
    ({"seeds": ["0"]}, "'seeds'"),
])
def test_report_refuses_a_hand_edited_points_json_by_name(tmp_path, change, named):
    from tgdfer.sweep import read_sweep_meta

    meta = {"fields": ["head.window"], "seeds": [0], "folds": [1], "points": [{"name": "w2", "values": {}}]}
    (tmp_path / "points.json").write_text(json.dumps(meta))
    assert read_sweep_meta(tmp_path) == meta
    (tmp_path / "points.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(TgdferError, match="points.json: " + re.escape(named)):
        read_sweep_meta(tmp_path)


def test_a_sweep_over_a_setting_the_store_fixes_is_refused_before_any_run(tmp_path, base, reference_store):
    """[augment] and [extract] shape the store's features; a sweep extracts nothing, so points that differ only
    there would train identical runs and report "no difference". The store has brightness 0.5, 2 views."""
    path = sweep_file(tmp_path, base, '[grid]\n"augment.brightness" = [0.5, 0.1]\n"head.window" = [2]')
    with pytest.raises(SweepError) as e:
        run_sweep(path)
    assert e.value.field == "augment.brightness" and e.value.point == "brightness=0.1,window=2"
    flat = " ".join(str(e.value).split())
    assert flat.startswith(f"{path}: point 'brightness=0.1,window=2': augment.brightness: the sweep sets 0.1, "
                           f"but {reference_store} was extracted with 0.5")
    assert "give the point a store extracted with 0.1" in flat and not (tmp_path / "out").exists()
    # the sweep's own `set` (and --set) is as explicit as a point's values; the CLI says it in one line, exit 2
    fixed = sweep_file(tmp_path, base, GRID_2X2, head='set = ["extract.views=4"]')
    result = CliRunner().invoke(app, ["sweep", str(fixed), "--dry-run"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "extract.views: the sweep sets 4, but" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()
    # the store's own values pass: a point over a store-fixed setting is fine with a store made with it
    same = sweep_file(tmp_path, base, '[grid]\n"augment.brightness" = [0.5]\n"extract.views" = [2]')
    assert [p.point.name for p in plan_sweep(load_sweep(same))] == ["brightness=0.5,views=2"]


def test_a_points_own_store_shows_its_fixed_setting_in_the_results_table(tmp_path, base, reference_store):
    """Points on stores of their own (pipelines/sweeps/augment_study.toml): the base file says brightness 0.5, the
    second store was extracted with 0.2. Its runs train on 0.2's features (config.json says 0.2), so the results
    table says 0.2 for that point too, not the base file's 0.5."""
    other = tmp_path / "other.zarr"
    shutil.copytree(reference_store, other)
    root = json.loads((other / "zarr.json").read_text())  # a store extracted with brightness 0.2
    root["attributes"]["fingerprint"]["sampling"]["augment"]["brightness"] = 0.2
    (other / "zarr.json").write_text(json.dumps(root))
    path = sweep_file(tmp_path, base, f'[[points]]\nname = "a"\ntrain = {{ store = "{reference_store}", epochs = 1 }}\n'
                                      f'[[points]]\nname = "b"\ntrain = {{ store = "{other}", epochs = 1 }}\n'
                                      f'[[points]]\nname = "b-stated"\naugment = {{ brightness = 0.2 }}\n'
                                      f'train = {{ store = "{other}", epochs = 1 }}\n',
                      head='folds = "1"')
    path.write_text(path.read_text().replace('folds = "1-2"\n', ""))
    run_sweep(path)
    out = tmp_path / "out"
    assert json.loads(next((out / "b").rglob("config.json")).read_text())["pipeline"]["augment"]["brightness"] == 0.2
    means = results_frame(out).query("fold == 'mean'").set_index("point")
    assert means["brightness"].to_dict() == {"a": 0.5, "b": 0.2, "b-stated": 0.2}
