"""`tgdfer report` over a study: several sweep folders (one study fold each) or a per-run CSV.

The sweep folders here are written by hand in `tgdfer sweep`'s layout (points.json, point.json,
final.json), so nothing trains; docs/cache_study_runs.csv is the shipped study.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tgdfer.cli import app
from tgdfer.errors import ConfigError, TgdferError
from tgdfer.run import replica_runs
from tgdfer.stats import paired_difference
from tgdfer.studyreport import merged_frame, report_study, runs_frame

ROOT = Path(__file__).parents[1]
runner = CliRunner()


def sweep_folder(path: Path, wars: dict, seeds=(0, 1), folds=(None,), started=None, values=None) -> Path:
    """A finished sweep folder as `tgdfer sweep` leaves it: point -> WAR of each seed (UAR = WAR - 5).
    `started`: the points that ran (default: those in `wars`); points.json lists `values`' points."""
    values = values or {p: {"train.views": i + 1} for i, p in enumerate(wars)}
    meta = {"source": "s.toml", "base": "b.toml", "title": "a study", "folds": list(folds), "seeds": list(seeds),
            "fields": ["train.views"], "fixed": [], "plot": None, "labels": {}, "profile": None,
            "points": [{"name": p, "values": v} for p, v in values.items()]}
    path.mkdir(parents=True)
    (path / "points.json").write_text(json.dumps(meta))
    for point in started if started is not None else wars:
        (path / point).mkdir()
        (path / point / "point.json").write_text(json.dumps({"name": point, "values": values[point],
                                                            "pipeline": {}, "status": "done"}))
        for rep, war in zip(replica_runs(path / point, [f for f in folds if f is not None], list(seeds)), wars[point]):
            Path(rep.out).mkdir(parents=True, exist_ok=True)
            (Path(rep.out) / "final.json").write_text(json.dumps(
                {"selected_epoch": 3, "test": {"war": war / 100, "uar": (war - 5) / 100}}))
    return path


# fold k: b's seeds 0 and 1 are k and k/2 under a's (fold means: 0.75 k under), seed 1 4 above seed 0
STUDY = {k: {"a": [40.0 + k, 44.0 + k], "b": [40.0, 44.0 + 0.5 * k]} for k in (1, 2, 3)}


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "study"
    return [sweep_folder(root / f"fold{k}", STUDY[k]) for k in (3, 1, 2)]  # any order: the fold is in the name


def test_merged_folders_are_folds_whose_seeds_are_averaged_before_pairing(study, tmp_path):
    rep = report_study(study, tmp_path / "merged", reference="a")
    runs = rep.results[rep.results["fold"] != "mean"]
    assert sorted(set(runs["fold"])) == [1, 2, 3] and len(runs) == 12
    assert set(runs[runs["fold"] == 2]["WAR"]) == {42.0, 46.0, 40.0, 45.0}  # fold2's runs, from folder fold2
    # fold means: b - a = (40 + 44 + k/2)/2 - (42 + 2k) = -k * 0.75 ... per fold: -0.75, -1.5, -2.25
    want = paired_difference([np.mean(STUDY[k]["b"]) for k in (1, 2, 3)], [np.mean(STUDY[k]["a"]) for k in (1, 2, 3)])
    assert want.n == 3 and want.mean == pytest.approx(-1.5)
    assert rep.table.loc["b", "vs a (WAR)"] == want.format(2)
    seed_level = paired_difference([w for k in (1, 2, 3) for w in STUDY[k]["b"]],
                                   [w for k in (1, 2, 3) for w in STUDY[k]["a"]])
    assert seed_level.n == 6 and rep.table.loc["b", "vs a (WAR)"] != seed_level.format(2)
    assert rep.table.loc["a", "vs a (WAR)"] == "reference" and rep.table.loc["b", "runs"] == "6/6 done"
    assert "paired over the 3 folds" in rep.note and "over the 2 comparisons" in rep.note  # b vs a: UAR, WAR
    # written where --out says, and nothing into the sweep folders
    assert [p.name for p in rep.paths] == ["results.csv", "results.md", "results.png"]
    assert all(p.parent == tmp_path / "merged" for p in rep.paths)
    assert not any((f / "results.csv").exists() for f in study)
    back = pd.read_csv(tmp_path / "merged" / "results.csv")
    assert back["fold"].tolist().count("mean") == 2 and "| b " in (tmp_path / "merged" / "results.md").read_text()
    # the per-run CSV it wrote is a study of its own: the same table again
    again = report_study([tmp_path / "merged" / "results.csv"], reference="a")
    assert again.table.loc["b", "vs a (WAR)"] == want.format(2) and again.paths == []


def test_without_out_several_folders_write_nothing_and_best_is_the_default(study):
    with pytest.raises(TgdferError, match=r"study: not a sweep folder but holds 3 \(e.g. fold1\).*study/fold\*"):
        report_study([study[0].parent])  # their parent, given as if it were one sweep
    rep = report_study(study)
    assert rep.paths == [] and not any((f / "results.csv").exists() for f in study)
    assert rep.table.loc["a", "vs best (WAR)"] == "best" and rep.table.loc["b", "vs best (WAR)"].startswith("-1.50 [")


def test_an_aa_rerun_is_labelled_into_rows_of_its_own(study):
    root = study[0].parent
    for k in (1, 2, 3):  # a again with seeds 3-4, 1 WAR lower; b never started there
        sweep_folder(root / f"fold{k}_aa", {"a": [39.0 + k, 43.0 + k]}, seeds=(3, 4),
                     values={"a": {"train.views": 1}, "b": {"train.views": 2}})
    folders = [*study, *(root / f"fold{k}_aa" for k in (1, 2, 3))]
    with pytest.raises(TgdferError, match=r"both study fold 1.*--label '\*_aa=A/A'"):
        merged_frame(folders)
    rep = report_study(folders, reference="a", labels=["*_aa=A/A"])
    assert list(rep.table.index) == ["a", "b", "a A/A"]  # "b A/A" never ran: left out
    assert rep.table.loc["a A/A", "vs a (WAR)"] == "-1.00 (the same on every fold: no test)"  # fold means paired
    assert rep.table.loc["a A/A", "runs"] == "6/6 done"
    assert "over the 4 comparisons" in rep.note
    result = runner.invoke(app, ["report", *map(str, folders), "--label", "*_aa=A/A", "--reference", "a"])
    assert result.exit_code == 0, result.output
    assert "a A/A" in result.output and "give --out FOLDER" in " ".join(result.output.split())


@pytest.mark.parametrize("case, words", [
    ("other points", "fold2: holds other points than"),
    ("several folds", "fold2: a sweep over folds 1, 2; merged sweep folders must each be one fold"),
    ("no fold in name", "part2: its sweep ran on a train/test split (fold = None), so its study fold is read"),
    ("other values", "fold2: point 'b' has other values"),
    ("label matches nothing", "--label: '*_x' matches none of the folders' names (fold1, fold2)"),
    ("bad label", "--label: give GLOB=TEXT"),
    ("unknown reference", "--reference: no point 'c' in this table"),
    ("csv among folders", "is a file: give one per-run CSV alone"),
])
def test_wrong_inputs_are_refused_naming_the_folder_or_option(tmp_path, case, words):
    one = sweep_folder(tmp_path / "fold1", STUDY[1])
    wars, kw, labels, reference = STUDY[2], {}, [], None
    name = "fold2"
    if case == "other points":
        wars = {"a": STUDY[2]["a"]}
    elif case == "several folds":
        kw = {"folds": (1, 2), "seeds": (0,)}
        wars = {p: [w[0], w[1]] for p, w in STUDY[2].items()}
    elif case == "no fold in name":
        name = "part2"
    elif case == "other values":
        kw = {"values": {"a": {"train.views": 1}, "b": {"train.views": 9}}}
    elif case == "label matches nothing":
        labels = ["*_x=A/A"]
    elif case == "bad label":
        labels = ["A/A"]
    elif case == "unknown reference":
        reference = "c"
    other = sweep_folder(tmp_path / name, wars, **kw)
    if case == "csv among folders":
        other = tmp_path / "runs.csv"
        other.write_text("point,fold,seed,UAR,WAR\n")
    with pytest.raises((TgdferError, ConfigError)) as e:
        report_study([one, other], tmp_path / "out", reference=reference, labels=labels)
    assert words in str(e.value)
    assert not (tmp_path / "out").exists()
    args = ["report", str(one), str(other), *(f"--label={x}" for x in labels),
            *(["--reference", reference] if reference else [])]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2 and words in " ".join(result.output.split()) and "Traceback" not in result.output


def test_per_run_csv_errors_name_the_file_and_column(tmp_path):
    bad = tmp_path / "runs.csv"
    bad.write_text("point,fold,WAR\na,1,40\n")
    with pytest.raises(TgdferError, match=r"runs.csv: no column 'seed'"):
        runs_frame(bad)
    bad.write_text("point,fold,seed,UAR,WAR\na,1,0,30,40\na,1,0,31,41\n")
    with pytest.raises(TgdferError, match=r"runs.csv: point 'a', fold 1, seed 0 has 2 rows"):
        runs_frame(bad)
    result = runner.invoke(app, ["report", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "page.html")])
    assert result.exit_code == 2 and "--out" in result.output and "--html" in result.output


def test_one_sweep_folder_writes_into_out_when_given(tmp_path):
    folder = sweep_folder(tmp_path / "sweep", {"a": [40.0], "b": [38.0]}, folds=(1,), seeds=(0,))
    rep = report_study([folder], tmp_path / "elsewhere")
    assert all(p.parent == tmp_path / "elsewhere" for p in rep.paths) and not (folder / "results.csv").exists()
    assert rep.table.loc["b", "WAR"] == 38.0


def _md_table(text: str) -> pd.DataFrame:
    """The first pipe table of a Markdown text, as text cells indexed by its first column."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in [lines[0], *lines[2:]]]
    return pd.DataFrame(cells[1:], columns=cells[0]).set_index(cells[0][0])


def test_report_of_the_shipped_study_csv_agrees_with_its_docs_table(tmp_path):
    """`tgdfer report docs/cache_study_runs.csv --reference fresh` gives docs/cache_study.md's differences,
    intervals, MDEs, marks and means: the committed study re-reported without its runs."""
    result = runner.invoke(app, ["report", "docs/cache_study_runs.csv", "--reference", "fresh",
                                 "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "over the 28 comparisons of this table" in " ".join(result.output.split())
    ours = _md_table((tmp_path / "results.md").read_text())
    docs = _md_table((ROOT / "docs" / "cache_study.md").read_text())
    assert sorted(ours.index) == sorted(docs.index) and len(docs) == 8
    for m, digits in (("UAR", 2), ("WAR", 2), ("AUROC", 3), ("AUROC sim", 3)):
        for point in docs.index:
            want = docs.loc[point, f"d{m} vs fresh"]
            got = ours.loc[point, f"vs fresh ({m})"]
            assert got == ("reference" if want == "-" else want), (point, m)
            mean, std = docs.loc[point, m].split(" ± ")
            assert float(ours.loc[point, m]) == pytest.approx(float(mean), abs=0.6 * 10 ** -digits), (point, m)
            assert float(ours.loc[point, f"{m} std"]) == pytest.approx(float(std), abs=0.6 * 10 ** -digits)
