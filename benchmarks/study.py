"""A study's table and plot from a finished sweep on SynthDFER (docs/cache-study.md, docs/paper-mapping.md).

For every run of the sweep: test UAR/WAR (its final.json), the localisation AUROC of the influence
against SynthDFER's expression frames in both Eq. 12 modes (tgdfer.evaluate.localise_run on its
checkpoint: "AUROC" relative, "AUROC sim" the raw similarity), and its training time
(metrics.csv). Per point: mean ± std over its folds x seeds, and the paired difference to the
reference point over the same folds and seeds with a 95% t interval (tgdfer.stats).

    python benchmarks/study.py runs/sweeps/cache_views --reference fresh      # docs/cache_views.md
    python benchmarks/study.py runs/sweeps/deviations --reference recommended # docs/deviations.md

`--runs docs/cache_views_runs.csv` starts from the rows of an earlier run of this script, so that
a sweep folder holding only some points (`tgdfer sweep ... --point NAME`) completes the study: a
run found in the folder replaces the earlier row of the same point, fold and seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def run_rows(sweep_dir: Path) -> pd.DataFrame:
    """One row per finished run: point, fold, seed, UAR, WAR, AUROC, train seconds (all epochs)."""
    from tgdfer.evaluate import load_run, localise_run

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
    key = ["point", "fold", "seed"]
    both = pd.concat([earlier, found], ignore_index=True).drop_duplicates(key, keep="last")
    order = {p: i for i, p in enumerate(dict.fromkeys([*earlier.point, *found.point]))}
    return both.sort_values(key, key=lambda c: c.map(order) if c.name == "point" else c, kind="stable") \
        .reset_index(drop=True)


METRICS = (("UAR", 2), ("WAR", 2), ("AUROC", 3), ("AUROC sim", 3))


def summary(df: pd.DataFrame, reference: str, order: list[str]) -> pd.DataFrame:
    """Per point: runs, mean ± std of UAR/WAR/AUROC, paired difference to `reference` (95% t interval)."""
    from tgdfer.stats import mean_std, paired_on

    ref = df[df.point == reference].set_index(["fold", "seed"])
    out = []
    for point in order:
        sub = df[df.point == point].set_index(["fold", "seed"])
        row = {"point": point, "runs": len(sub)}
        for m, digits in METRICS:
            row[m] = mean_std(sub[m], digits)
        for m, digits in METRICS:
            if point != reference and len(ref):
                row[f"d{m} vs {reference}"] = paired_on(sub[m], ref[m]).format(digits)
        row["train s/run"] = f"{sub.train_s.mean():.1f}"
        out.append(row)
    return pd.DataFrame(out).set_index("point")


def plot(df: pd.DataFrame, order: list[str], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
        ax.set_title(f"{m} (mean ± std, runs in grey)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--reference", required=True, help="point the others are compared with (paired)")
    ap.add_argument("--out", type=Path, default=Path("docs"), help="where <sweep>.md, <sweep>_runs.csv and "
                    "figures/<sweep>.png go")
    ap.add_argument("--runs", type=Path, default=None, help="an earlier <sweep>_runs.csv whose rows the sweep "
                    "folder's runs complete (same point, fold and seed: the folder's run wins)")
    args = ap.parse_args()
    df = merge_runs(pd.read_csv(args.runs) if args.runs else None, run_rows(args.sweep_dir))
    from tgdfer.metrics import to_markdown

    listed = json.loads((args.sweep_dir / "points.json").read_text()).get("points", [])
    order = [p["name"] for p in listed if p["name"] in set(df.point)] or list(dict.fromkeys(df.point))
    table = summary(df, args.reference, order)
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.sweep_dir.name
    df.to_csv(args.out / f"{name}_runs.csv", index=False, float_format="%.4f")
    md = args.out / f"{name}.md"
    head = md.read_text().split("\n|", 1)[0] + "\n" if md.is_file() and "\n|" in md.read_text() else ""
    md.write_text(head + to_markdown(table, note="* the paired 95% interval excludes 0"))  # the prose above stays
    plot(df, order, args.out / "figures" / f"{name}.png")
    print(table.to_string())


if __name__ == "__main__":
    main()
