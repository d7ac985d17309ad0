"""Helpers of the powered cache-fidelity study (docs/cache-study.md, pipelines/cache_study.toml).

    python benchmarks/cache_study.py split data/study        # 5 independent study folds from 10 synth folds
    python benchmarks/cache_study.py run 1                   # fold 1: extract its store, sweep every point, A/A
    python benchmarks/cache_study.py report                  # all folds: docs/cache_study.md, _runs.csv, plot
    tgdfer report docs/cache_study_runs.csv --reference fresh   # the same differences, from the CSV alone
    python benchmarks/cache_study.py fp32                    # fp16 storage vs fp32 features at test time
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


def fold_settings(k: int, store: str = "cache/study/fold{k}.zarr") -> list[str]:
    """The --set overrides that point a study's pipeline at fold k's data and store (`store`: a path
    with `{k}` for the fold; benchmarks/augment_study.py passes its own)."""
    return ["--set", f'data.args={{csv_file="data/study/folds/fold{k}.csv", id_col="clip_id", missing="error"}}',
            "--set", f'extract.store="{store.format(k=k)}"']


def run_fold(k: int, tgdfer: list[str], steps: str = "extract,sweep") -> None:
    """Fold k: extract its store (resumes), then every point of the sweep (3 seeds batched) and the A/A
    rerun of V8; `steps` chooses ("extract", "sweep" or both)."""
    plan = {"extract": [["extract", "-c", PIPELINE, *fold_settings(k)]],
            "sweep": [["sweep", SWEEP, *fold_settings(k), "--out", str(SWEEPS / f"fold{k}")],
                      ["sweep", SWEEP, *fold_settings(k), "--point", "V8", "--seeds", "3-5",
                       "--out", str(SWEEPS / f"fold{k}_aa")]]}
    for name in steps.split(","):
        for step in plan[name]:
            print("+", " ".join([*tgdfer, *step]), flush=True)
            subprocess.run([*tgdfer, *step], check=True)


AA = "V8 A/A"  # V8 again with seeds 3-5: the A/A control, must come out null


def gather(sweeps: Path = SWEEPS, extra: tuple[tuple[str, str], ...] = (("_aa", AA),),
           folds: tuple[int, ...] = tuple(range(1, STUDY_FOLDS + 1))) -> pd.DataFrame:
    """One row per finished run of every fold (study.run_rows per fold folder; the fold is the folder's).

    `extra`: (suffix, point) pairs, folders `fold<k><suffix>` whose runs count as that point (the cache
    study's A/A rerun); benchmarks/augment_study.py gathers its own sweeps with none. `folds`: which."""
    from study import run_rows

    frames = []
    for k in folds:
        folders = [(sweeps / f"fold{k}", None), *((sweeps / f"fold{k}{suffix}", name) for suffix, name in extra)]
        for folder, rename in folders:
            if folder.is_dir():
                rows = run_rows(folder)
                if len(rows):
                    frames.append(rows.assign(fold=k, point=rename or rows["point"]))
    if not frames:
        sys.exit(f"no finished runs under {sweeps}")
    return pd.concat(frames, ignore_index=True)


def fp32_control(points: tuple[str, ...] = ("V8", "fresh"), seeds: tuple[int, ...] = (0, 1, 2)) -> pd.DataFrame:
    """fp16 storage against fp32 at test time: every trained run of `points` scores its fold's test clips on
    the store's view 0 (float16) and on the same view re-encoded by the live path in float32. Per run: how
    many predictions flip and the WAR on each; per fold, how far the stored features are from fp32."""
    import numpy as np
    import torch

    from tgdfer.encoders import load_encoder
    from tgdfer.evaluation import forward, load_run
    from tgdfer.live import LiveFeatures
    from tgdfer.pipeline import load_pipeline
    from tgdfer.store import FeatureStore

    pipe = load_pipeline(PIPELINE)
    enc = load_encoder(pipe.encoder)
    out = []
    for k in range(1, STUDY_FOLDS + 1):
        with FeatureStore.open(f"cache/study/fold{k}.zarr") as store:
            test = np.flatnonzero((store.clips["split"] == "test").to_numpy())
            live = LiveFeatures(enc, store, workers=1)
            with torch.no_grad():
                fp32 = live.view0(test)  # [n, T, D] float32, the live path's view 0
            live.close()
            fp16 = torch.from_numpy(store.read_feats(test)[:, 0]).float()  # [n, T, D] as stored
        rel = float(((fp32 - fp16).abs() / fp32.abs().clamp_min(1e-3)).max())
        for point in points:
            for seed in seeds:
                run = load_run(SWEEPS / f"fold{k}" / point / f"seed{seed}", device="cpu")
                y = run.labels[test]
                a, _ = forward(run.head, fp16)
                b, _ = forward(run.head, fp32)
                out.append({"fold": k, "point": point, "seed": seed, "clips": len(test),
                            "flipped": int((a.argmax(1) != b.argmax(1)).sum()),
                            "WAR fp16": 100 * float((a.argmax(1) == y).mean()),
                            "WAR fp32": 100 * float((b.argmax(1) == y).mean()),
                            "max rel. feature diff": rel})
    return pd.DataFrame(out)


def views_table(epochs: int = 50) -> pd.DataFrame:
    """Expected distinct augmented views a clip trains on, per point of pipelines/sweeps/cache_study.toml."""
    from tgdfer.views import distinct_views

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
    rp.add_argument("--steps", default="extract,sweep", help="extract, sweep, or both (comma-separated)")
    sub.add_parser("fp32", help="the fp16-vs-fp32 control at test time: docs/cache_study_fp32.csv")
    sub.add_parser("report", help="gather every fold's runs into docs/cache_study_runs.csv, then render it")
    vp = sub.add_parser("views")
    vp.add_argument("--epochs", type=int, default=50)
    args = ap.parse_args()
    if args.cmd == "split":
        split(args.data)
    elif args.cmd == "run":
        run_fold(args.fold, [sys.executable, "-m", "tgdfer", "--threads", str(args.threads)], args.steps)
    elif args.cmd == "fp32":
        df = fp32_control()
        df.to_csv("docs/cache_study_fp32.csv", index=False, float_format="%.6f")
        print(df.to_string(index=False))
    elif args.cmd == "report":
        runs = Path("docs/cache_study_runs.csv")
        gather().to_csv(runs, index=False, float_format="%.4f")
        print(f"wrote {runs}; rendering it:", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("study.py")), "--runs", str(runs)], check=True)
    else:
        print(views_table(args.epochs).to_string(index=False))


if __name__ == "__main__":
    main()
