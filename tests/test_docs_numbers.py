"""The numbers in README.md and docs/ about the shipped studies are what their run CSVs give.

`benchmarks/study.py` renders the study tables and every number quoted between
`<!-- from STUDY: SPEC -->` and `<!-- /from -->`; this test recomputes them from
docs/<STUDY>_runs.csv and fails on any difference (fix: `python benchmarks/study.py --runs
docs/<STUDY>_runs.csv --quotes`, then read the prose around what changed).
"""

import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"


def _study():
    spec = importlib.util.spec_from_file_location("benchmarks_study", ROOT / "benchmarks" / "study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


study = _study()


@pytest.mark.parametrize("name", sorted(study.STUDIES))
def test_study_tables_are_rendered_from_their_csv(name):
    df = pd.read_csv(DOCS / f"{name}_runs.csv")
    known = study.STUDIES[name]
    assert sorted(set(df.point)) == sorted(known.order)
    rendered = study.render_table(df, known.reference, list(known.order))
    assert rendered in (DOCS / f"{name}.md").read_text(), f"docs/{name}.md: re-render with benchmarks/study.py"


@pytest.mark.parametrize("path", study.QUOTING)
def test_quoted_numbers_match_the_csvs(path):
    text = (ROOT / path).read_text()
    quoted = list(study.QUOTE.finditer(text))
    wanted = list(study.QUOTE.finditer(study.render_quotes(text, DOCS)))
    assert len(quoted) == len(wanted)
    wrong = [(q["spec"], q["text"], w["text"]) for q, w in zip(quoted, wanted) if q["text"] != w["text"]]
    assert not wrong, f"{path}: quoted numbers differ from the CSV (spec, quoted, CSV): {wrong}"


def test_every_file_with_quotes_is_checked():
    files = [ROOT / "README.md", *DOCS.glob("*.md")]
    quoting = {str(p.relative_to(ROOT)) for p in files if study.QUOTE.search(p.read_text())}
    assert quoting <= set(study.QUOTING) and "README.md" in quoting and "docs/paper-mapping.md" in quoting


def test_quote_forms_on_a_small_study():
    idx = [(f, s) for f in (1, 2, 3) for s in (0, 1)]
    rows = [{"point": p, "fold": f, "seed": s, "UAR": v, "WAR": v, "AUROC": v / 100, "AUROC sim": v / 100,
             "train_s": 1.0}
            for p, base in (("ref", 50.0), ("a", 40.0), ("b", 50.0)) for (f, s) in idx
            for v in [base + f + (0.5 * s + 0.25 * f if p == "a" else 0)]]
    df = pd.DataFrame(rows)
    known = study.Study("ref", ("ref", "a", "b"))
    assert study.quote(df, known, "a:WAR") == "42.75 ± 1.15"  # 41.25, 41.75, 42.5, 43, 43.75, 44.25
    cell = study.quote(df, known, "a:WAR - ref:WAR")  # -9.5, -9.25, -9.0 by fold: marked after Holm over 8
    assert cell == "-9.25 [-9.87, -8.63] *"
    assert study.quote(df, known, "ref:WAR - a:WAR") == "+9.25 [+8.63, +9.87] *"  # the same cell, other side
    assert study.quote(df, known, "b:WAR - ref:WAR") == "+0.00 (the same on every fold: no test)"  # identical
    assert study.quote(df, known, "b:UAR,WAR == ref:UAR,WAR") == "6 of 6"
    assert study.quote(df, known, "a:WAR == ref:WAR") == "0 of 6"
    with pytest.raises(ValueError, match="nosuch"):
        study.quote(df, known, "nosuch:WAR")
    marked = '<!-- from demo: a:WAR -->99<!-- /from -->'
    assert re.fullmatch(study.QUOTE, marked)["text"] == "99"


# -- citations of the paper (arXiv 2511.10958) ------------------------------------------------------

PAPER = {  # what the paper numbers: its sections, equations, tables and figures
    "Sec.": {"1", "2", "2.1", "2.2", "2.3", "3", "3.1", "3.2", "3.2.1", "3.2.2", "3.3", "3.3.1", "3.3.2", "4", "4.1",
             "4.2", "4.3", "4.4", "4.4.1", "4.4.2", "4.4.3", "4.4.4", "4.5", "4.5.1", "4.5.2", "5", "6", "7"},
    "Eq.": {str(i) for i in range(1, 13)},
    "Table": {str(i) for i in range(1, 7)},
    "Fig.": {str(i) for i in range(1, 5)},
}
CITED = re.compile(r"\b(Sec\.|Section|Eq\.|Table|Fig\.|Figure) (\d+(?:\.\d+)*)(?:\s*-\s*(\d+(?:\.\d+)*))?")


def test_every_citation_names_a_part_the_paper_has():
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("tgdfer/**/*.py"), *ROOT.glob("tgdfer/**/*.toml"),
             *ROOT.glob("pipelines/**/*.toml"), *ROOT.glob("benchmarks/*.py")]
    kind = {"Section": "Sec.", "Figure": "Fig."}
    wrong = []
    for path in files:
        for m in CITED.finditer(path.read_text()):
            k = kind.get(m[1], m[1])
            wrong += [(str(path.relative_to(ROOT)), m[0]) for n in filter(None, (m[2], m[3])) if n not in PAPER[k]]
    assert not wrong, f"citations of parts the paper does not have: {wrong}"


def test_every_deviation_says_where_its_literal_reading_comes_from():
    text = (DOCS / "paper-mapping.md").read_text()
    table = text.split("## Deviations", 1)[1].split("\n\n| Where | Source |", 1)[1].split("\n\n", 1)[0]
    rows = [r.split(" | ") for r in table.splitlines()[2:]]  # after the header's rest and the rule line
    assert len(rows) >= 10 and {r[1] for r in rows} <= {"paper text", "silence, filled from DFER-CLIP", "tgdfer's choice"}
    augmentation = [r for r in rows if r[0].startswith("| Augmentation")]
    assert len(augmentation) == 2 and all("<!-- from augment_study: paper:WAR - " in r[-1] for r in augmentation)
    assert "not measured" not in table
