"""Helpers of the augmentation-recipe study (docs/augment-study.md, pipelines/augment_study.toml).

    python benchmarks/cache_study.py split data/study        # the cache study's 5 independent folds (same data)
    python benchmarks/augment_study.py recipes               # each recipe's [augment] and its --set overrides
    python benchmarks/augment_study.py run 1                 # fold 1: extract its 3 stores, sweep the 3 points
    python benchmarks/augment_study.py report                # all folds: docs/augment_study.md, _runs.csv, plot

Three recipes, each a store of its own per fold (augmentation happens at extraction):
"paper" (Sec. 4.2's four augmentations together: the paper profile's [augment]), "dfew" and
"ferv39k" (DFER-CLIP's recipes, `AugmentConfig.reference`). The recipes are read from those
sources, not restated here. Data, folds, head and schedule are the powered cache study's; its
split and gather helpers are reused (benchmarks/cache_study.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/cache_study.py, benchmarks/study.py

from cache_study import STUDY_FOLDS, fold_settings, gather  # noqa: E402

PIPELINE, SWEEP = "pipelines/augment_study.toml", "pipelines/sweeps/augment_study.toml"
SWEEPS = Path("runs/sweeps/augment_study")
STORE = "cache/augment_study/fold{k}/{recipe}.zarr"
RECIPES = ("paper", "dfew", "ferv39k")


def recipe(name: str):
    """The recipe's AugmentConfig: "paper" = the paper profile's [augment] over the defaults,
    "dfew" / "ferv39k" = DFER-CLIP's (`AugmentConfig.reference`)."""
    from tgdfer.augment import AugmentConfig
    from tgdfer.dataconfig import load_profile

    if name == "paper":
        return AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in load_profile("paper").get("augment", {}).items()})
    return AugmentConfig.reference(name)


def augment_settings(name: str) -> list[str]:
    """--set overrides that give a pipeline the recipe's [augment], every field stated."""
    from tgdfer.config import toml_value

    cfg = asdict(recipe(name))
    return [x for f in fields(recipe(name)) for x in ("--set", f"augment.{f.name}={toml_value(cfg[f.name])}")]


def fold_sweep(k: int) -> Path:
    """The sweep file for fold k: the shipped file (fold 1's stores), or a copy with fold k's store paths."""
    if k == 1:
        return Path(SWEEP)
    text = Path(SWEEP).read_text()
    old, new = "cache/augment_study/fold1/", f"cache/augment_study/fold{k}/"
    if text.count(old) != len(RECIPES):
        sys.exit(f"{SWEEP}: expected {len(RECIPES)} store paths under {old}, found {text.count(old)}")
    path = SWEEPS / f"fold{k}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {SWEEP} for study fold {k} (written by benchmarks/augment_study.py)\n" + text.replace(old, new))
    return path


def run_fold(k: int, tgdfer: list[str], steps: str = "extract,sweep", recipes: tuple[str, ...] = RECIPES) -> None:
    """Fold k: extract the recipes' stores (each resumes), then their points of the sweep (3 seeds batched)."""
    plan = {"extract": lambda: [["extract", "-c", PIPELINE, *fold_settings(k, STORE.replace("{recipe}", r)),
                                 *augment_settings(r)] for r in recipes],
            "sweep": lambda: [["sweep", str(fold_sweep(k)), *fold_settings(k, STORE.replace("{recipe}", "dfew")),
                               *(x for r in recipes for x in ("--point", r)), "--out", str(SWEEPS / f"fold{k}")]]}
    for name in steps.split(","):
        for step in plan[name]():
            print("+", " ".join([*tgdfer, *step]), flush=True)
            subprocess.run([*tgdfer, *step], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("recipes", help="each recipe's [augment] and the --set overrides that give it")
    rp = sub.add_parser("run")
    rp.add_argument("fold", type=int, choices=range(1, STUDY_FOLDS + 1))
    rp.add_argument("--threads", type=int, default=1, help="torch threads of each tgdfer command")
    rp.add_argument("--steps", default="extract,sweep", help="extract, sweep, or both (comma-separated)")
    rp.add_argument("--recipes", default=",".join(RECIPES), help="which recipes' stores and points (comma-separated)")
    pp = sub.add_parser("report", help="gather every fold's runs into docs/augment_study_runs.csv, then render it")
    pp.add_argument("--folds", default=",".join(map(str, range(1, STUDY_FOLDS + 1))),
                    help="the folds to gather (comma-separated; default: all)")
    pp.add_argument("--runs", type=Path, default=None, help="an earlier augment_study_runs.csv whose rows the "
                    "gathered folds complete (same point, fold and seed: the gathered run wins)")
    args = ap.parse_args()
    if args.cmd == "recipes":
        for r in RECIPES:
            print(f"{r}: {recipe(r)}\n  {' '.join(augment_settings(r))}")
    elif args.cmd == "run":
        recipes = tuple(args.recipes.split(","))
        if not set(recipes) <= set(RECIPES):
            ap.error(f"--recipes: {args.recipes!r}; the recipes are {', '.join(RECIPES)}")
        run_fold(args.fold, [sys.executable, "-m", "tgdfer", "--threads", str(args.threads)], args.steps, recipes)
    else:
        import pandas as pd
        from study import merge_runs

        runs = Path("docs/augment_study_runs.csv")
        found = gather(SWEEPS, extra=(), folds=tuple(int(k) for k in args.folds.split(",")))
        merge_runs(pd.read_csv(args.runs) if args.runs else None, found).to_csv(runs, index=False, float_format="%.4f")
        print(f"wrote {runs}; rendering it:", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("study.py")), "--runs", str(runs)], check=True)


if __name__ == "__main__":
    main()
