"""How small can the proxy-CLIP learnability check be? The test's whole path at chosen sizes, over seeds.

For every proxy seed: train the proxy CLIP (tgdfer.proxy) at the given settings, render a held-out
SynthDFER set (another seed, other people), extract it with the proxy weights, train the
TG-DFER head on fold 1 and score the held-out fold, then localise (evaluate). Prints, per
seed, the wall/CPU seconds of each stage and what the checks in tests/test_proxy.py look at:

  zero-shot   held-out accuracy of the mean view-0 frame feature against each stored prompt set's
              text features (the worst set; chance 1/7 = 0.14)
  WAR, UAR    the head on the test fold (UAR chance 0.14; "majority" = WAR of the largest class)
  AUROC       relative localisation AUROC of the influence, and random's

    python benchmarks/learnability.py --seeds 1234 1 2           # the test's settings (tests/proxy_check.py)
    python benchmarks/learnability.py --set proxy.steps=100      # ... with one field changed
    python benchmarks/learnability.py --demo                     # the demo's settings (pipelines/synthetic.toml)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from proxy_check import DEMO, OVERRIDES, zero_shot  # noqa: E402  (tests/proxy_check.py: the test's settings)

from tgdfer.encoders import EncoderConfig  # noqa: E402
from tgdfer.evaluation import evaluate  # noqa: E402
from tgdfer.extraction import extract  # noqa: E402
from tgdfer.labels import NUM_CLASSES  # noqa: E402
from tgdfer.pipeline import load_pipeline  # noqa: E402
from tgdfer.proxy import train_proxy  # noqa: E402
from tgdfer.readers import read_dfew  # noqa: E402
from tgdfer.synth import generate  # noqa: E402
from tgdfer.threads import apply_threads, auto_threads  # noqa: E402
from tgdfer.training import train  # noqa: E402


@contextmanager
def stage(times: dict, name: str) -> Iterator[None]:
    """Record the wall and CPU seconds (this process) of the block as times[name] = "wall/cpu"."""
    w, c = time.perf_counter(), time.process_time()
    yield
    times[name] = f"{time.perf_counter() - w:.0f}/{time.process_time() - c:.0f}"


def run_once(root: Path, pipe) -> dict:
    """The test's path once, in `root`: wall/CPU seconds per stage and the scores."""
    t = {}
    with stage(t, "proxy s"):
        weights = train_proxy(root / "proxy.pt", pipe.proxy, workdir=root)
    with stage(t, "synth s"):
        generate(root / "synth", pipe.synth)
        table = read_dfew(root / "synth" / "EmoLabel_DataSplit", frames_dir=root / "synth" / "frames").table
    enc = EncoderConfig(model=pipe.encoder.model, pretrained=str(weights))
    with stage(t, "extract s"):
        res = extract(replace(pipe.extract, store=str(root / "f.zarr")), pipe.augment, enc, table, data_kind="dfew")
        assert res.ok and res.extracted == len(table)
    with stage(t, "train s"):
        tr = train(pipe.head, replace(pipe.train, store=str(root / "f.zarr"), out=str(root / "run")), encoder=enc)
    with stage(t, "evaluate s"):
        ev = evaluate([tr.run], out=root / "eval", device="cpu", figures=False)
    loc = ev.localisation.iloc[0]
    support = np.asarray(tr.test.confusion).sum(axis=1)  # test clips per true class
    zs = zero_shot(root / "f.zarr")
    return {**t, "zero-shot min": min(zs.values()), "WAR": tr.test.war, "UAR": tr.test.uar,
            "majority": support.max() / support.sum(), "AUROC": loc["relative AUROC"], "random": loc["random AUROC"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="proxy seeds (default: the config's); "
                   "the held-out set keeps synth.seed")
    p.add_argument("--set", dest="sets", action="append", default=[], help="override after the test's settings, "
                   "e.g. --set proxy.steps=300 (repeatable)")
    p.add_argument("--demo", action="store_true", help="the demo's settings (pipelines/synthetic.toml alone)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = tgdfer.threads' choice)")
    args = p.parse_args(argv)
    print(f"{apply_threads(auto_threads(args.threads))}, load average {os.getloadavg()[0]:.1f}", flush=True)
    overrides = ([] if args.demo else OVERRIDES) + ["train.device=\"cpu\""] + args.sets
    pipe = load_pipeline(DEMO, overrides)
    print("settings:", " ".join(overrides), flush=True)
    rows = []
    for seed in args.seeds or [pipe.proxy.seed]:
        with tempfile.TemporaryDirectory(prefix="tgdfer-learn-") as tmp:
            row = {"seed": seed, **run_once(Path(tmp), replace(pipe, proxy=replace(pipe.proxy, seed=seed)))}
        rows.append(row)
        print("  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
              f" load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"CPU seconds of this process: {time.process_time():.0f}")
    for key in ("zero-shot min", "WAR", "UAR", "AUROC"):
        vals = [r[key] for r in rows]
        print(f"{key}: min {min(vals):.3f} mean {np.mean(vals):.3f}")
    print(f"chance UAR {1 / NUM_CLASSES:.3f}")


if __name__ == "__main__":
    main()
