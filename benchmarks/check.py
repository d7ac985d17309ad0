"""check benchmark: `tgdfer check` on a FERV39k-shaped tree, stat and headers versus decoding every frame.

Builds FERV39k's layout in a temporary folder: `2_ClipsforFaceCrop/<Scene>/<Emotion>/<NNNN>/`
frame folders (--clips of them, 38,935 as in FERV39k, --frames JPEGs each; the JPEGs are hard
links to a few tiny real JPEG files, so the tree costs directory entries, not disk) and the
official setup lists `4_setups/All_scenes/{train,test}_All.csv`. Then runs, each as its own
`python -m tgdfer check` process on the same pipeline file with --workers processes:

  stat+headers  `tgdfer check` as it is now: frames listed and stat'ed, first and last headers read;
  --decode      `tgdfer check --decode`: every frame decoded (what check did before);
  baseline      with --baseline-src DIR, the `tgdfer` package in DIR (e.g. the commit before
                this change: `git archive 80c4d52 tgdfer | tar -x -C /tmp/tgdfer_old`), default options.

and prints seconds (wall, including reading the annotations; `cpu` = user + system seconds of the
process and its workers, which a busy shared machine inflates less than the wall time) and peak
memory side by side:
`rss tree` is the peak of the summed RSS of the process and its workers (sampled every 50 ms),
`rss max` the largest single process (the kernel's maxrss). The page cache is warm for every run
(the tree was just written and a warm-up listing reads it once).

    python benchmarks/check.py                                   # 38,935 clips x 24 frames, 2 workers
    python benchmarks/check.py --baseline-src /tmp/tgdfer_old     # also the old check
    python benchmarks/check.py --clips 2000 --frames 8           # a smoke run
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCENES = ("Action", "Anime", "Beauty", "Business", "Daily-life", "Education", "Entertainment", "Festival",
          "Game", "Military", "News", "Party", "Performance", "Political", "Reality-show", "Speech",
          "Sports", "Talk-show", "Travel", "Vlog", "Weather", "Wedding")  # FERV39k's 22 scenes
EMOTIONS = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")
LINKS_PER_FILE = 60_000  # ext4 allows 65,000 hard links to one inode


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=38_935, help="frame folders (FERV39k: 38,935)")
    p.add_argument("--frames", type=int, default=24, help="JPEG frames per folder")
    p.add_argument("--workers", type=int, default=2, help="tgdfer check --workers")
    p.add_argument("--dir", type=Path, default=None, help="where to build the tree (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the tree (it is removed at the end otherwise)")
    p.add_argument("--baseline-src", type=Path, default=None, help="a folder holding an older tgdfer package")
    p.add_argument("--skip-decode", action="store_true", help="leave out the --decode run")
    return p.parse_args(argv)


def build_tree(root: Path, clips: int, frames: int) -> Path:
    """FERV39k's layout under root; returns the pipeline file that reads it."""
    crops, setup = root / "2_ClipsforFaceCrop", root / "4_setups" / "All_scenes"
    setup.mkdir(parents=True, exist_ok=True)
    pool = root / "pool"
    pool.mkdir(exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 80, 60)).save(buf, format="JPEG")
    sources = []
    for i in range(clips * frames // LINKS_PER_FILE + 1):
        sources.append(pool / f"frame_{i}.jpg")
        sources[-1].write_bytes(buf.getvalue())
    lines: dict[str, list[str]] = {"train": [], "test": []}
    made = 0
    for c in range(clips):
        scene, emotion = SCENES[c % len(SCENES)], EMOTIONS[(c // len(SCENES)) % len(EMOTIONS)]
        rel = f"{scene}/{emotion}/{c // (len(SCENES) * len(EMOTIONS)) + 1:04d}"
        folder = crops / rel
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(1, frames + 1):
            os.link(sources[made // LINKS_PER_FILE], folder / f"{f:04d}.jpg")
            made += 1
        lines["test" if c % 5 == 0 else "train"].append(f"{rel} {emotion}")
    for part, rows in lines.items():
        (setup / f"{part}_All.csv").write_text("\n".join(rows) + "\n")
    return write_pipeline(root, setup, crops)


def write_pipeline(root: Path, setup: Path, crops: Path) -> Path:
    config = root / "ferv39k_bench.toml"
    config.write_text(f'[data]\nkind = "ferv39k"\nargs = {{ lists = "{setup}", root = "{crops}", '
                      f'label_from_path = -2, frame_cache = "none" }}\n')
    return config


def tree_rss(pid: int) -> int:
    """Summed RSS in bytes of pid and its descendants (0 for a process gone meanwhile)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def run(label: str, src: Path, config: Path, workers: int, extra: list[str], cwd: Path) -> dict:
    """One `python -m tgdfer check` process: seconds, peak tree RSS, largest process RSS, summary line."""
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "tgdfer", "check", str(config), "--workers", str(workers),
           "--csv", str(cwd / f"check_{label.replace('+', '_').replace('-', '')}.csv"), *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    summary = next((ln.strip() for ln in reversed(out.splitlines()) if " ok" in ln or "error" in ln), out[-200:])
    return dict(label=label, seconds=seconds, cpu=usage.ru_utime + usage.ru_stime, rss_tree=peak[0] / 2**20,
                rss_max=usage.ru_maxrss / 1024, code=proc.returncode, summary=summary.split(";")[0])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="tgdfer_check_bench_"))
    try:
        t = time.perf_counter()
        config = build_tree(root, args.clips, args.frames)
        print(f"built {args.clips} clips x {args.frames} frames under {root} in {time.perf_counter() - t:.0f} s; "
              f"workers {args.workers}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
        for _ in os.walk(root / "2_ClipsforFaceCrop"):  # warm the page cache for every run alike
            pass
        runs = [("stat+headers", REPO, [])]
        if args.baseline_src:
            runs.append(("baseline", args.baseline_src.resolve(), []))
        if not args.skip_decode:
            runs.append(("--decode", REPO, ["--decode"]))
        rows = []
        for label, src, extra in runs:
            rows.append(run(label, src, config, args.workers, extra, root))
            r = rows[-1]
            print(f"{r['label']:>13}  {r['seconds']:7.1f} s  cpu {r['cpu']:7.1f} s  rss tree {r['rss_tree']:7.0f} MB  "
                  f"rss max {r['rss_max']:6.0f} MB  exit {r['code']}  {r['summary']}", flush=True)
        fast = rows[0]["seconds"]
        print(f"load average now {os.getloadavg()[0]:.1f}")
        print("side by side: " + ", ".join(f"{r['label']} {r['seconds']:.1f} s ({r['seconds'] / fast:.1f}x), "
                                           f"{r['rss_tree']:.0f} MB" for r in rows))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
