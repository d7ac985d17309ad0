"""Tables a person reads (tgdfer.tables): at 80 and 100 columns every number whole, no column dropped."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.metrics import format_cell
from tgdfer.sweep import paper_table, results_frame, run_settings, sweep_title
from tgdfer.tables import FittedTable, min_width, wrap

LABELS = {"head.learnable": {"false": "fixed", "true": "[Learnable]"},
          "head.text_prompt": {"class": "Class", "descriptors": "Descriptors"},
          "head.visual_prompt": {"none": "X", "add": "Add", "token": "Prepend"}}


def crafted_sweep(out, folds=(1, 2, 3, 4, 5), seeds=(0,), epochs=10, named=True):
    """A finished sweep folder laid out as `tgdfer sweep` writes it, without training: paper Table 5's
    12 points (3 labelled fields) with seeded test scores. Returns the folder."""
    from tgdfer.run import replica_runs

    rng = np.random.default_rng(0)
    points = []
    for learnable in (False, True):
        for text in ("class", "descriptors"):
            for vp in ("none", "add", "token"):
                values = {"head.learnable": learnable, "head.text_prompt": text, "head.visual_prompt": vp}
                name = "abcdefghijkl"[len(points)] if named else f"learnable={learnable},text={text},vp={vp}"
                points.append({"name": name, "values": values})
    meta = {"source": "table5.toml", "base": "pipelines/dfew.toml", "title": "Table 5: visual prompt placement",
            "folds": list(folds), "seeds": list(seeds), "fields": list(points[0]["values"]), "fixed": [],
            "plot": "head.visual_prompt", "labels": LABELS, "profile": None, "points": points}
    out.mkdir(parents=True)
    (out / "points.json").write_text(json.dumps(meta))
    for p in points:
        (out / p["name"]).mkdir()
        (out / p["name"] / "point.json").write_text(json.dumps({
            "name": p["name"], "values": p["values"], "status": "done", "error": None, "seconds": 1.0,
            "pipeline": {"train": {"epochs": epochs}}}))
        for rep in replica_runs(out / p["name"], list(folds), list(seeds)):
            run = out / p["name"] / rep.out
            run.mkdir(parents=True, exist_ok=True)
            # a 10-point spread: two-digit scores, intervals like [-10.27, -5.31]
            (run / "final.json").write_text(json.dumps({"selected_epoch": 9, "test": {
                "uar": 0.40 + 0.1 * rng.random(), "war": 0.50 + 0.1 * rng.random()}}))
    return out


def numbers(text: str) -> list[str]:
    return re.findall(r"[-+]?\d+(?:\.\d+)?", text)


def assert_whole(printed: str, frame: pd.DataFrame, decimals: int, width: int) -> None:
    """Every number of `frame` (as `decimals` formats it) is in `printed` as a whole token, nothing is
    cut with an ellipsis, and no line passes `width`."""
    assert "…" not in printed
    assert max(len(line) for line in printed.splitlines()) <= width
    tokens = set(numbers(printed))
    cells = [format_cell(v, decimals) for row in frame.itertuples(index=False) for v in row]
    wanted = {n for c in cells for n in numbers(c)}
    assert wanted and wanted <= tokens, sorted(wanted - tokens)


@pytest.mark.parametrize("width", [80, 100])
def test_report_table_fits_with_every_number_and_vs_best(tmp_path, width):
    out = crafted_sweep(tmp_path / "t5")
    result = CliRunner().invoke(app, ["report", str(out)], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    table = paper_table(results_frame(out))
    assert {"UAR", "UAR std", "WAR", "WAR std", "vs best (WAR)"} <= set(table.columns)
    printed = result.output.split("vs best: the point's")[0]  # the table; the note under it wraps on its own
    assert_whole(printed, table.drop(columns="runs"), 2, width)
    assert "vs best" in printed and "[-" in printed  # the column, with its intervals
    for point in table.index:  # every row
        assert re.search(rf"^{point}\s", printed, re.M)
    # the run counts, the same for every point, moved from the table into its title
    assert "runs of every point: 5/5 done" in " ".join(printed.split())


def test_unnamed_points_and_console_widths(tmp_path):
    out = crafted_sweep(tmp_path / "t5", folds=(1, 2), seeds=(0, 1), named=False)
    table = paper_table(results_frame(out))
    for width in (80, 100, 120):
        console = Console(width=width, record=True)
        console.print(FittedTable(table, title=sweep_title(out), decimals=2))
        text = console.export_text()
        assert_whole(text, table, 2, width)
        assert "vs best" in text
        # a long point name breaks after its commas, and is whole when joined back
        joined = "".join(line.split("  ")[0].strip() for line in text.splitlines())
        assert "learnable=False,text=class,vp=none" in joined


def test_titles_come_from_the_runs_settings(tmp_path):
    out = crafted_sweep(tmp_path / "t5", folds=(1, 2), seeds=(0, 1), epochs=3)
    assert run_settings(out) == "folds 1, 2 x seeds 0, 1 = 4 runs per point, 3 epochs"
    one = crafted_sweep(tmp_path / "one", folds=(1,), seeds=(0,), epochs=10)
    assert run_settings(one) == "fold 1 x seed 0 = 1 run per point, 10 epochs"
    result = CliRunner().invoke(app, ["report", str(out)], env={"COLUMNS": "80"})
    printed = " ".join(result.output.split())
    assert "Table 5: visual prompt placement (folds 1, 2 x seeds 0, 1 = 4 runs per point, 3 epochs)" in printed
    md = (out / "results.md").read_text().splitlines()[0]
    assert md == "**Table 5: visual prompt placement (folds 1, 2 x seeds 0, 1 = 4 runs per point, 3 epochs)**"
    from PIL import Image

    with Image.open(out / "results.png") as png:
        assert png.text["Title"] == sweep_title(out)


def test_shipped_sweep_titles_leave_the_settings_to_the_runs():
    from pathlib import Path

    for path in sorted(Path("pipelines/sweeps").glob("*.toml")):
        title = re.search(r'^title = "(.*)"', path.read_text(), re.M)[1]
        assert not re.search(r"\bfolds?\b|\bseeds?\b|\bepochs?\b", title), (path, title)


def test_wrap_breaks_between_words_never_inside_a_number():
    assert wrap("-3.44 [-8.59, +1.71] (MDE 6.89)", 14) == ["-3.44", "[-8.59, +1.71]", "(MDE 6.89)"]
    assert wrap("-3.44 [-8.59, +1.71] (MDE 6.89)", 10) == ["-3.44", "[-8.59,", "+1.71]", "(MDE 6.89)"]
    assert wrap("window=2,visual_prompt=none", 12) == ["window=2,", "visual_", "prompt=none"]
    assert wrap("runs/sweeps/t5/a/fold1_seed0", 12) == ["runs/sweeps/", "t5/a/fold1_", "seed0"]
    assert wrap("5/5 done", 4) == ["5/5", "done"] and wrap("0.44-0.50", 3) == ["0.44-0.50"]
    assert min_width("-3.44 [-10.27, -5.31] (MDE 3.32)") == len("[-10.27,")
    assert min_width("0.44-0.50") == 9 and min_width("5/5 done") == 4


def test_too_many_columns_are_stacked_with_their_row_labels():
    rng = np.random.default_rng(1)
    classes = ["Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise", "Contempt",
               "Anxiety", "Helplessness", "Disappointment"]  # MAFW's 11 classes, full names
    df = pd.DataFrame(100 * rng.random((7, len(classes) + 2)), columns=[*classes, "UAR", "WAR"],
                      index=pd.Index(["fold1", "fold2", "fold3", "fold4", "fold5", "mean", "std"], name="fold"))
    console = Console(width=80, record=True)
    console.print(FittedTable(df, title="TG-DFER results (%)", decimals=2))
    text = console.export_text()
    assert_whole(text, df, 2, 80)
    assert "columns 1/2" in text and "columns 2/2" in text
    assert text.count("fold3") == 2 and all(c in text for c in classes)


def test_train_head_results_table_keeps_its_decimals_and_run_paths():
    df = pd.DataFrame({"fold": [1, 2, ""], "seed": [0, 0, ""], "epoch": [9, 11, ""],
                       "UAR": [43.75, 100.0, 71.88], "WAR": [33.96, 99.99, 66.98]},
                      index=pd.Index(["runs/sweeps/table5_prompts/l/fold1_seed0",
                                      "runs/sweeps/table5_prompts/l/fold2_seed0", "mean"], name="run"))
    console = Console(width=80, record=True)
    console.print(FittedTable(df, decimals=2))
    text = console.export_text()
    assert_whole(text, df[["UAR", "WAR"]], 2, 80)
    assert "runs/sweeps/table5_prompts/l/fold1_seed0" in text  # fits whole at 80
