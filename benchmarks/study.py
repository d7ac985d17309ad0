"""A study's table and plot from a finished sweep on SynthDFER (docs/cache-study.md, docs/paper-mapping.md).

For every run of the sweep: test UAR/WAR (its final.json), the localisation AUROC of the influence
against SynthDFER's expression frames in both Eq. 12 modes (tgdfer.evaluation.localise_run on its
checkpoint: "AUROC" relative, "AUROC sim" the raw similarity), and its training time
(metrics.csv). Per point: mean ± std over its folds x seeds, and the paired difference to the
reference point: seeds averaged within each fold, a 95% t interval over the folds, "*" where the
Holm-adjusted p < 0.05 over every difference of the table, else the minimum detectable effect
(tgdfer.stats, docs/statistics.md).

    python benchmarks/study.py runs/sweeps/cache_views --reference fresh      # docs/cache_views.md
    python benchmarks/study.py runs/sweeps/deviations --reference recommended # docs/deviations.md
    python benchmarks/study.py --runs docs/deviations_runs.csv --quotes       # re-render from the CSV alone

`--quotes` also rewrites every number quoted in README.md and docs/*.md between
`<!-- from STUDY: SPEC -->` and `<!-- /from -->` from docs/<STUDY>_runs.csv (the forms are listed
above `QUOTE`); tests/test_docs_numbers.py fails when a quoted number or a table differs from the CSV.

`--runs docs/cache_views_runs.csv` starts from the rows of an earlier run of this script, so that
a sweep folder holding only some points (`tgdfer sweep ... --point NAME`) completes the study: a
run found in the folder replaces the earlier row of the same point, fold and seed.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tgdfer.stats import Paired


def run_rows(sweep_dir: Path) -> pd.DataFrame:
    """One row per finished run: point, fold, seed, UAR, WAR, AUROC, train seconds (all epochs)."""
    from tgdfer.evaluation import load_run, localise_run

    rows = []
    for final in sorted(sweep_dir.glob("*/*/final.json")):
        run = final.parent
        point = run.parent.name
        res = json.loads(final.read_text())
        lr = load_run(run, device="cpu")
        loc = localise_run(lr) or {}
        seconds = pd.read_csv(run / "metrics.csv")["seconds"].sum()
        rows.append({"point": point, "fold": res["fold"], "seed": res["seed"],
                     "UAR": 100 * res["test"]["uar"], "WAR": 100 * res["test"]["war"],
                     "AUROC": loc.get("relative AUROC", float("nan")),
                     "AUROC sim": loc.get("similarity AUROC", float("nan")), "train_s": seconds})
    return pd.DataFrame(rows)


def merge_runs(earlier: pd.DataFrame | None, found: pd.DataFrame) -> pd.DataFrame:
    """`earlier` rows without a run in `found` (same point, fold, seed), then `found`'s, in the earlier order."""
    if earlier is None or earlier.empty:
        return found
    if found.empty:
        return earlier
    key = ["point", "fold", "seed"]
    both = pd.concat([earlier, found], ignore_index=True).drop_duplicates(key, keep="last")
    order = {p: i for i, p in enumerate(dict.fromkeys([*earlier.point, *found.point]))}
    return both.sort_values(key, key=lambda c: c.map(order) if c.name == "point" else c, kind="stable") \
        .reset_index(drop=True)


METRICS = (("UAR", 2), ("WAR", 2), ("AUROC", 3), ("AUROC sim", 3))
DIGITS = dict(METRICS)


@dataclass(frozen=True)
class Study:
    """A study shipped in docs/: its reference point and the order of its table's rows."""

    reference: str
    order: tuple[str, ...]


STUDIES = {
    "cache_study": Study("fresh", ("V1", "V2", "V4", "V7", "V8", "V16", "fresh", "V8 A/A")),
    "augment_study": Study("paper", ("paper", "dfew", "ferv39k")),
    "cache_views": Study("fresh", ("V1", "V2", "V4", "V8", "V16", "V2-frame", "V4-frame", "fresh", "end-to-end")),
    "deviations": Study("recommended", ("recommended", "coarse-literal", "pos-std-1", "drop-last", "pixels-0-1",
                                        "prompts-dfer-clip", "prepend-feature", "prepend-token", "pool-max",
                                        "pool-top2", "pool-attention", "paper")),
}


def comparisons(df: pd.DataFrame, reference: str, order: list[str]) -> dict[tuple[str, str], "Paired"]:
    """(point, metric) -> fold-level paired difference to `reference`, Holm-adjusted over the whole table
    (the table `tgdfer report RUNS.csv --reference REFERENCE` prints: tgdfer.sweep.versus_reference)."""
    from tgdfer.sweep import versus_reference

    if not (df.point == reference).any():
        return {}
    return versus_reference(df, order, reference, [m for m, _ in METRICS])


def summary(df: pd.DataFrame, reference: str, order: list[str]) -> tuple[pd.DataFrame, str]:
    """Per point: runs, mean ± std of UAR/WAR/AUROC, the paired difference to `reference` (folds,
    Holm over every difference of the table); and the note that says so under the table."""
    from tgdfer.stats import family_note, mean_std

    diffs = comparisons(df, reference, order)
    out = []
    for point in order:
        sub = df[df.point == point]
        row = {"point": point, "runs": len(sub)}
        for m, digits in METRICS:
            row[m] = mean_std(sub[m], digits)
        for m, digits in METRICS:
            if (point, m) in diffs:
                row[f"d{m} vs {reference}"] = diffs[point, m].format(digits)
        row["train s/run"] = f"{sub.train_s.mean():.1f}"
        out.append(row)
    note = family_note(len(diffs), df.fold.nunique()) + f" Mean ± std over the {df.groupby('point').size().max()} runs."
    return pd.DataFrame(out).set_index("point"), note


def render_table(df: pd.DataFrame, reference: str, order: list[str]) -> str:
    from tgdfer.metrics import to_markdown

    table, note = summary(df, reference, order)
    return to_markdown(table, note=note)


# -- numbers quoted in the prose ------------------------------------------------------------------
# A quoted number sits between `<!-- from STUDY: SPEC -->` and `<!-- /from -->` in README.md or docs/*.md;
# `--quotes` rewrites them from docs/<STUDY>_runs.csv and tests/test_docs_numbers.py fails when one differs.
#   V1:AUROC                      mean ± std over the point's runs ("0.766 ± 0.028")
#   V1:AUROC - fresh:AUROC        fold-level paired difference with its interval; against the study's reference
#                                 on the same metric it is the table's cell (Holm over the table), else a
#                                 single planned comparison; "fresh:AUROC - V1:AUROC" is that cell negated
#                                 (same interval mirrored, same Holm mark)
#   end-to-end:UAR,WAR == fresh:UAR,WAR   in how many runs (same fold and seed) all are equal ("6 of 9")

QUOTE = re.compile(r"<!-- from (?P<study>[\w-]+): (?P<spec>.+?) -->(?P<text>.*?)<!-- /from -->", re.S)


def _operand(df: pd.DataFrame, spec: str) -> tuple[pd.Series, str]:
    point, metric = (part.strip() for part in spec.split(":", 1))
    sub = df[df.point == point]
    if sub.empty or metric not in DIGITS:
        raise ValueError(f"no point {point!r} or metric {metric!r} in this study ({spec!r})")
    return sub.set_index(["fold", "seed"])[metric], metric


def quote(df: pd.DataFrame, study: Study, spec: str, table: Optional[dict] = None) -> str:
    """The text a `<!-- from STUDY: SPEC -->` marker must hold (see above); `table`: the study's
    `comparisons`, when the caller has them already."""
    from tgdfer.stats import mean_std, paired_by_fold

    if "==" in spec:  # every listed metric equal, run by run
        sides = []
        for part in spec.split("=="):
            point, metrics = (x.strip() for x in part.split(":", 1))
            sides.append(pd.concat([_operand(df, f"{point}:{m}")[0] for m in metrics.split(",")], axis=1))
        a, b = sides
        both = a.index.intersection(b.index)
        same = (a.loc[both].round(4).to_numpy() == b.loc[both].round(4).to_numpy()).all(axis=1)
        return f"{int(same.sum())} of {len(both)}"
    if " - " not in spec:
        values, metric = _operand(df, spec)
        return mean_std(values, DIGITS[metric])
    (a, ma), (b, mb) = (_operand(df, part) for part in spec.split(" - "))
    point_a, point_b = (part.split(":")[0].strip() for part in spec.split(" - "))
    if ma == mb and study.reference in (point_a, point_b) and point_a != point_b:
        if table is None:
            table = comparisons(df, study.reference, [p for p in study.order if p in set(df.point)])
        if point_b == study.reference:
            return table[point_a, ma].format(DIGITS[ma])
        return (-table[point_b, ma]).format(DIGITS[ma])  # reference - point: the table's cell seen from the other side
    return paired_by_fold(a, b).format(DIGITS[ma])


def render_quotes(text: str, runs_dir: Path) -> str:
    """`text` with every quoted number recomputed from `runs_dir`/<STUDY>_runs.csv."""
    loaded: dict[str, tuple[pd.DataFrame, dict]] = {}  # study -> its runs and its table's comparisons

    def fill(m: re.Match) -> str:
        name = m["study"]
        if name not in STUDIES:
            raise ValueError(f"no study {name!r} (one of {', '.join(STUDIES)})")
        if name not in loaded:
            df, known = pd.read_csv(runs_dir / f"{name}_runs.csv"), STUDIES[name]
            loaded[name] = df, comparisons(df, known.reference, [p for p in known.order if p in set(df.point)])
        df, table = loaded[name]
        text = quote(df, STUDIES[name], m["spec"], table)
        return m[0][: m.start("text") - m.start()] + text + "<!-- /from -->"

    return QUOTE.sub(fill, text)


QUOTING = ("README.md", "docs/augment-study.md", "docs/cache-study.md", "docs/cache_study.md", "docs/paper-mapping.md", "docs/deviations.md", "docs/cache_views.md")


def plot(df: pd.DataFrame, order: list[str], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tgdfer.figures import percent_limits

    fig = Figure(figsize=(9, 3.4))
    FigureCanvasAgg(fig)
    for ax, m in zip(fig.subplots(1, 3), ("UAR", "WAR", "AUROC")):  # AUROC: the relative influence
        g = df.groupby("point")[m]
        mean, std = g.mean().reindex(order), g.std(ddof=1).reindex(order)
        x = np.arange(len(order))
        ax.errorbar(x, mean, yerr=std, fmt="o", capsize=3)
        for i, p in enumerate(order):  # every run, so the spread is seen, not only summarised
            vals = df[df.point == p][m].to_numpy()
            ax.plot(np.full(len(vals), i) + 0.15, vals, ".", color="0.6", ms=3)
        ax.set_xticks(x, order, rotation=45, ha="right", fontsize=8)
        scale = 100 if m == "AUROC" else 1  # an axis of at least 20 points (0.2 AUROC): a small gap is not magnified
        ax.set_ylim(*(v / scale for v in percent_limits(scale * df[m])))
        ax.set_title(f"{m} (mean ± std, runs in grey)", fontsize=9)
    runs = df.groupby("point").size()
    fig.suptitle(f"n = {runs.sum()} runs ({runs.min()}-{runs.max()} per point)" if runs.nunique() > 1
                 else f"n = {runs.sum()} runs ({runs.iloc[0]} per point)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", type=Path, nargs="?", help="a finished sweep folder (omit to re-render from --runs)")
    ap.add_argument("--reference", help="point the others are compared with (paired; default: the study's own)")
    ap.add_argument("--out", type=Path, default=Path("docs"), help="where <sweep>.md, <sweep>_runs.csv and "
                    "figures/<sweep>.png go")
    ap.add_argument("--runs", type=Path, default=None, help="an earlier <sweep>_runs.csv whose rows the sweep "
                    "folder's runs complete (same point, fold and seed: the folder's run wins); alone, the "
                    "study is re-rendered from it")
    ap.add_argument("--quotes", action="store_true", help="also rewrite the numbers quoted in README.md and "
                    "docs/*.md (<!-- from STUDY: ... --> markers) from docs/<STUDY>_runs.csv")
    args = ap.parse_args()
    if args.sweep_dir is None and args.runs is None:
        ap.error("give a sweep folder, --runs, or both")
    df = merge_runs(pd.read_csv(args.runs) if args.runs else None,
                    run_rows(args.sweep_dir) if args.sweep_dir else pd.DataFrame())
    name = args.sweep_dir.name if args.sweep_dir else args.runs.name.removesuffix("_runs.csv")
    known = STUDIES.get(name)
    listed = json.loads((args.sweep_dir / "points.json").read_text()).get("points", []) if args.sweep_dir else []
    order = [p["name"] for p in listed] or (list(known.order) if known else [])
    order = [p for p in order if p in set(df.point)] + [p for p in dict.fromkeys(df.point) if p not in order]
    reference = args.reference or (known.reference if known else None)
    if reference is None:
        ap.error(f"--reference is needed: {name!r} is not one of the studies {', '.join(STUDIES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / f"{name}_runs.csv", index=False, float_format="%.4f")
    md = args.out / f"{name}.md"
    text = md.read_text() if md.is_file() else ""
    head = text.split("\n|", 1)[0] + "\n" if "\n|" in text and not text.startswith("|") else ""
    md.write_text(head + render_table(df, reference, order))  # the prose above the table stays
    plot(df, order, args.out / "figures" / f"{name}.png")
    print(summary(df, reference, order)[0].to_string())
    if args.quotes:
        for path in map(Path, QUOTING):
            text = path.read_text()
            new = render_quotes(text, args.out)
            if new != text:
                path.write_text(new)
                print(f"updated the quoted numbers in {path}")


if __name__ == "__main__":
    main()
