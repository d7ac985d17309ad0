"""Helpers of the powered cache-fidelity study (docs/cache-study.md, pipelines/cache_study.toml).

    python benchmarks/cache_study.py split data/study        # 5 independent study folds from 10 synth folds
    python benchmarks/cache_study.py run 1                   # fold 1: extract its store, sweep every point, A/A
    python benchmarks/cache_study.py report                  # all folds: docs/cache_study.md, _runs.csv, plot
    python benchmarks/cache_study.py views                   # expected distinct views per point (50 epochs)

`split`: SynthDFER writes 10 stratified folds of 400 clips (`--set synth.folds=10`); study fold
k = 1..5 tests on synth fold k and trains on synth fold k+5, written as `<data>/folds/fold<k>.csv`
(path, label, split). A fold is a train/test dataset of its own with its own store, so no clip is
in two study folds and the folds are independent replicates (DFEW's cross-validation folds share
three quarters of their training clips).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/study.py

STUDY_FOLDS = 5


def split(data: Path, folds: int = STUDY_FOLDS) -> list[Path]:
    """Write <data>/folds/fold<k>.csv: test = synth fold k, train = synth fold k + folds."""
    clips = pd.read_csv(data / "clips.csv", dtype={"clip_id": str})
    n_synth = clips["fold"].nunique()
    if n_synth < 2 * folds:
        sys.exit(f"{data / 'clips.csv'} has {n_synth} folds; the study needs {2 * folds} "
                 f"(tgdfer synth ... --set synth.folds={2 * folds})")
    out, written = data / "folds", []
    out.mkdir(exist_ok=True)
    for k in range(1, folds + 1):
        test, train = clips[clips["fold"] == k], clips[clips["fold"] == k + folds]
        table = pd.concat([train.assign(split="train"), test.assign(split="test")])
        path = out / f"fold{k}.csv"
        table[["clip_id", "path", "label", "split"]].assign(path=lambda t: "../" + t["path"]).to_csv(path, index=False)
        written.append(path)
        print(f"{path}: train {len(train)} clips (synth fold {k + folds}), test {len(test)} (synth fold {k})")
    return written


PIPELINE, SWEEP = "pipelines/cache_study.toml", "pipelines/sweeps/cache_study.toml"
SWEEPS = Path("runs/sweeps/cache_study")


def fold_settings(k: int) -> list[str]:
    """The --set overrides that point the study's pipeline at fold k's data and store."""
    return ["--set", f'data.args={{csv_file="data/study/folds/fold{k}.csv", id_col="clip_id", missing="error"}}',
            "--set", f'extract.store="cache/study/fold{k}.zarr"']


def run_fold(k: int, tgdfer: list[str]) -> None:
    """Fold k: extract (resumes), every point of the sweep (3 seeds batched), then the A/A rerun of V8."""
    steps = [["extract", "-c", PIPELINE, *fold_settings(k)],
             ["sweep", SWEEP, *fold_settings(k), "--out", str(SWEEPS / f"fold{k}")],
             ["sweep", SWEEP, *fold_settings(k), "--point", "V8", "--seeds", "3-5", "--out", str(SWEEPS / f"fold{k}_aa")]]
    for step in steps:
        print("+", " ".join([*tgdfer, *step]), flush=True)
        subprocess.run([*tgdfer, *step], check=True)


AA = "V8 A/A"  # V8 again with seeds 3-5: the A/A control, must come out null


def gather(sweeps: Path = SWEEPS) -> pd.DataFrame:
    """One row per finished run of every fold (study.run_rows per fold folder; the fold is the folder's)."""
    from study import run_rows

    frames = []
    for k in range(1, STUDY_FOLDS + 1):
        for folder, rename in ((sweeps / f"fold{k}", None), (sweeps / f"fold{k}_aa", AA)):
            if folder.is_dir():
                rows = run_rows(folder)
                if len(rows):
                    frames.append(rows.assign(fold=k, point=rename or rows["point"]))
    if not frames:
        sys.exit(f"no finished runs under {sweeps}")
    return pd.concat(frames, ignore_index=True)


def views_table(epochs: int = 50) -> pd.DataFrame:
    """Expected distinct augmented views a clip trains on, per point of pipelines/sweeps/cache_study.toml."""
    from tgdfer.training import distinct_views

    points = [("V1", 2, "random"), ("V2", 3, "random"), ("V4", 5, "random"), ("V7", 8, "random"),
              ("V8", 9, "random"), ("V16", 17, "random"), ("V50 random", 51, "random"), ("fresh", 51, "cycle")]
    return pd.DataFrame([{"point": p, "views": v - 1, "draw": d, "distinct views": round(distinct_views(v, epochs, d), 2)}
                         for p, v, d in points])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("split")
    sp.add_argument("data", type=Path)
    rp = sub.add_parser("run")
    rp.add_argument("fold", type=int, choices=range(1, STUDY_FOLDS + 1))
    rp.add_argument("--threads", type=int, default=1, help="torch threads of each tgdfer command")
    sub.add_parser("report", help="gather every fold's runs into docs/cache_study_runs.csv, then render it")
    vp = sub.add_parser("views")
    vp.add_argument("--epochs", type=int, default=50)
    args = ap.parse_args()
    if args.cmd == "split":
        split(args.data)
    elif args.cmd == "run":
        run_fold(args.fold, [sys.executable, "-m", "tgdfer", "--threads", str(args.threads)])
    elif args.cmd == "report":
        runs = Path("docs/cache_study_runs.csv")
        gather().to_csv(runs, index=False, float_format="%.4f")
        print(f"wrote {runs}; rendering it:", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("study.py")), "--runs", str(runs)], check=True)
    else:
        print(views_table(args.epochs).to_string(index=False))


if __name__ == "__main__":
    main()
