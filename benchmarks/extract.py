"""Extract benchmark: `tgdfer.extraction.extract` throughput versus the bare image-encoder forward.

For each frame source of a freshly generated SynthDFER set (mp4 videos, JPEG frame folders) it
times, in one process with the same torch threads, device and precision:

  pipeline  the whole `extract` call: encoder load, text features, DataLoader workers decoding,
            sampling and augmenting, the image encoder, float16 store writes;
  bare      `encode_images` on pre-made random pixels, over the same batches (batch_clips *
            views * frames images each, the last one as short as the pipeline's), after a warm-up.

ratio = pipeline frames/s / bare frames/s; the target is >= 0.9 (decoding and writing hidden
behind the encoder). `setup s` is the part of the call before the first clip (encoder load, text
features, store creation); `stream ratio` leaves it out, which is what a long run approaches;
`busy` is the share of that streaming part spent inside encode_images (1.0: the encoder never
waited for data or writes); `enc ratio` is bare seconds / the pipeline's seconds inside
encode_images (below 1: the encoder itself ran slower beside the data path; stream ratio = busy x
enc ratio); `cpu ratio` is bare / pipeline CPU seconds of the streaming part (workers included;
until session 11 the setup's CPU counted too).
Bare and pipeline run back to back in each of --repeats rounds (the pipeline first in every
other), so that load from other processes hits both alike; the round with the median stream ratio
is shown, with every round's ratio and, from 6 rounds on, a distribution-free 95 % interval for
the median round; the last lines say whether that interval lies above issue 19's goal (stream ratio
0.95), below it, or across it (undecided). --bare picks the reference: one encoder kept warm through the
rounds (default), one built and freed for each pass (fresh, as extract builds its own), or the
pipeline's own encoder called again on the same pixels right after each of its calls (paired: each
pair seconds apart, so that a drifting machine speed, which rounds minutes apart cannot pair out,
cancels; the pipeline's times and CPU leave those calls out).

    python benchmarks/extract.py                        # ViT-B-32, random weights, fp32, CPU
    python benchmarks/extract.py --precision bf16 --clips 40
    python benchmarks/extract.py --workers 2 --threads 2
    python benchmarks/extract.py --repeats 3 --bare fresh kept  # both references, paired rounds
    python benchmarks/extract.py --repeats 6 --bare paired      # bare and pipeline paired batch by batch
    python benchmarks/extract.py --quick                # tiny model, a few clips: smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import logging
import math
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

import tgdfer.extraction
from tgdfer.augment import AugmentConfig
from tgdfer.encoders import EncoderConfig, LoadedEncoder, encode_images, encode_texts, load_encoder
from tgdfer.extraction import ExtractConfig, extract, resolve_device
from tgdfer.prompts import build_prompt_sets
from tgdfer.readers import load_clips
from tgdfer.synth import SynthConfig, generate

SOURCES = {"video": "videos_dir", "frames": "frames_dir"}  # source name -> read_dfew argument
TARGET = 0.9  # pipeline / bare frames/s of the whole call (setup included) the benchmark was built for
GOAL = 0.95  # issue 19: the stream ratio (setup left out) that extraction should reach
PAIRED_BUSY = 0.95  # --bare paired below this busy share: the inserted calls may have hidden waits for data


@dataclass
class Row:
    """One (source, workers, batch_clips) measurement."""

    source: str  # "video" | "frames"
    workers: int  # DataLoader workers of the pipeline
    batch_clips: int  # clips per encoder call (pipeline and bare)
    images: int  # images through the encoder (same count for pipeline and bare)
    seconds: float  # the whole extract call
    setup: float  # seconds of the call before the first clip (encoder load, text features, store)
    cpu: float  # CPU seconds of the call's streaming part (setup left out), DataLoader workers included
    encoding: float  # seconds the call spent inside encode_images (image batches)
    bare_seconds: float  # encode_images over the same batches
    bare_cpu: float  # CPU seconds of those encode_images calls
    round_ratios: tuple[float, ...] = ()  # every round's stream ratio, in the order run
    steady: float | None = None  # --bare paired: the stream ratio from the second encoder call on (steady_ratio)
    round_steady: tuple[float, ...] = ()  # --bare paired: every round's steady ratio, in the order run
    bare: str = "kept"  # the bare reference: "kept" (one model through all rounds), "fresh" (built per pass) or
    # "paired" (the pipeline's encoder again on each batch's pixels, right after the pipeline's call)

    @property
    def fps(self) -> float:
        return self.images / self.seconds

    @property
    def bare_fps(self) -> float:
        return self.images / self.bare_seconds

    @property
    def ratio(self) -> float:
        return self.fps / self.bare_fps

    @property
    def stream_ratio(self) -> float:
        return self.images / (self.seconds - self.setup) / self.bare_fps

    @property
    def busy(self) -> float:
        """Share of the streaming part spent encoding: 1.0 = the encoder never waited for data or writes."""
        return self.encoding / (self.seconds - self.setup)

    @property
    def encoder_ratio(self) -> float:
        """bare seconds / the pipeline's seconds inside encode_images, over the same batches: below 1 when
        the encoder itself ran slower in the pipeline (beside the workers); stream_ratio = busy * this."""
        return self.bare_seconds / self.encoding

    @property
    def cpu_ratio(self) -> float:
        """bare CPU / the pipeline's streaming CPU: below 1 by the work decoding, augmenting and writing add."""
        return self.bare_cpu / self.cpu


@dataclass
class Pair:
    """One encoder call of the pipeline and the bare call on the same pixels right after it (--bare paired)."""

    start: float  # perf_counter when the pipeline's call began
    pipeline: float  # seconds of the pipeline's call
    bare: float  # seconds of the bare call
    bare_cpu: float  # CPU seconds of the bare call


def steady_ratio(pairs: list[Pair], end: float) -> float | None:
    """The stream ratio from the second encoder call on: bare seconds / the pipeline's own seconds of the
    window from that call's start to `end`, when `extract` returned (the inserted bare calls left out). What a run of
    thousands of batches approaches: the first call's one-time costs (a new model's first forward, the
    DataLoader worker's start and first batch) fall outside it. None with fewer than two calls."""
    if len(pairs) < 2:
        return None
    bare = sum(p.bare for p in pairs[1:])
    return bare / (end - pairs[1].start - bare)


def lower_median(values, key=None):
    """The middle item of `values` by `key`, the lower middle of an even count: an item that was measured."""
    return sorted(values, key=key)[(len(values) - 1) // 2]


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval for the median of `values`: the order statistics
    (x_(k), x_(n+1-k)) with the largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k), is at least
    `level`. None when even (min, max) falls short (n < 6 rounds for 95 %)."""
    x, n = sorted(values), len(values)
    cover = lambda k: 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n  # noqa: E731
    ks = [k for k in range(1, n // 2 + 1) if cover(k) >= level]
    return (x[ks[-1] - 1], x[n - ks[-1]]) if ks else None


def verdict(values: list[float], goal: float = GOAL, level: float = 0.95) -> str:
    """'meets' / 'misses' when the median's interval lies wholly above / below `goal`, else 'undecided'."""
    ci = median_interval(values, level)
    if ci is None:
        return f"undecided (a {level:.0%} interval needs more rounds)"
    return "meets" if ci[0] >= goal else "misses" if ci[1] < goal else "undecided"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32", help="open_clip model name (random weights)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast precision")
    p.add_argument("--clips", type=int, default=24, help="SynthDFER clips per source")
    p.add_argument("--views", type=int, default=2, help="views per clip (view 0 test-time, others augmented)")
    p.add_argument("--frames", type=int, default=16, help="frames per view")
    p.add_argument("--workers", type=int, nargs="+", default=[1], help="DataLoader workers (0 = main process); "
                   "several values: one row each")
    p.add_argument("--batch-clips", type=int, nargs="+", default=[4], help="clips per encoder call; several values: "
                   "one row each")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: torch's)")
    p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES), help="frame sources")
    p.add_argument("--size", type=int, default=112, help="SynthDFER frame side in pixels")
    p.add_argument("--warmup", type=int, default=1, help="bare encoder calls before timing (plus one text pass)")
    p.add_argument("--repeats", type=int, default=1, help="bare + pipeline rounds per source, each pair run back to "
                   "back; the round with the median stream ratio is shown, every round's ratio under the table")
    p.add_argument("--bare", nargs="+", default=["kept"], choices=["kept", "fresh", "paired"],
                   help="the bare reference: kept = one encoder warmed once and kept through the rounds (alive "
                   "beside the pipeline's); fresh = each bare pass builds and frees its own, so the process "
                   "holds one model at a time as `tgdfer extract` does; paired = the pipeline's own encoder "
                   "again on the same pixels right after each of its calls (pairs seconds apart: the least "
                   "noise on a machine whose speed drifts; for an encoder-bound pipeline, a CPU's: the "
                   "inserted calls let the workers decode ahead); several: a row each")
    p.add_argument("--quick", action="store_true", help="tiny model, 4 clips, 4 frames: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.clips, args.frames = "tgdfer-tiny-vit", 4, 4
    return args


def make_data(root: Path, clips: int, size: int) -> Path:
    """A SynthDFER set with both mp4 videos and JPEG folders (not timed)."""
    out = root / "synth"
    generate(out, SynthConfig(clips=clips, format="both", size=size, folds=min(5, clips)))
    return out


def clip_table(data: Path, source: str) -> pd.DataFrame:
    """The clip table of one source, read as a user would (DFEW reader)."""
    folder = data / ("videos" if source == "video" else "frames")
    kwargs = {SOURCES[source]: folder}
    return load_clips("dfew", split_dir=data / "EmoLabel_DataSplit", **kwargs).table


def batch_sizes(clips: int, batch_clips: int, views: int, frames: int) -> list[int]:
    """Images per encoder call of the pipeline: full batches, then the remainder."""
    sizes = [batch_clips] * (clips // batch_clips) + ([clips % batch_clips] if clips % batch_clips else [])
    return [b * views * frames for b in sizes]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (DataLoader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def warm_up(enc: LoadedEncoder, size: int, calls: int) -> None:
    """First-call costs (kernel selection, tokenizer, text shapes) paid before any timing, both towers."""
    pixels = torch.randn(size, 3, enc.image_size, enc.image_size)  # [N, 3, S, S]
    for _ in range(calls):
        encode_images(enc, pixels).cpu()
    for prompts in build_prompt_sets().values():  # the text features every extract call writes
        encode_texts(enc, prompts)


def time_bare(enc: LoadedEncoder | EncoderConfig, device: torch.device, sizes: list[int]) -> tuple[float, float]:
    """(seconds, CPU seconds) of encode_images over batches of `sizes` images (random pixels made beforehand).

    `enc` is a loaded encoder (kept by the caller, alive while the pipeline runs too), or a config:
    then the encoder is built for this pass, warmed with one call and freed after it, so the pipeline
    that runs next holds the only model in the process, as `tgdfer extract` does."""
    fresh = isinstance(enc, EncoderConfig)
    if fresh:
        enc = load_encoder(enc, device=device)
    pixels = torch.randn(max(sizes), 3, enc.image_size, enc.image_size, device=device)  # [N, 3, S, S], "normalised"
    if fresh:
        encode_images(enc, pixels[:max(sizes)]).cpu()  # a new model's first call (allocator, kernel choice)
    c0, t0 = cpu_seconds(), time.perf_counter()
    for n in sizes:
        encode_images(enc, pixels[:n]).cpu()  # .cpu(): waits for the GPU, as the pipeline's does
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    del enc, pixels
    gc.collect()
    return seconds, cpu


@contextlib.contextmanager
def timed_encoder(spent: list[float], paired: list[Pair] | None = None):
    """Wrap the encode_images that tgdfer.extraction calls, adding each call's seconds to `spent`.

    With `paired`, each call is followed by a bare one: the same encoder on the same pixels, timed
    apart; both calls go to `paired` as a Pair. The two calls of a pair are seconds apart,
    so a machine whose speed drifts from round to round slows both alike. The bare call comes second:
    the DataLoader hands the worker its next batch when the main process takes one, so the worker's
    decoding overlaps the pipeline's call (where it belongs), not the bare one."""
    inner = tgdfer.extraction.encode_images

    def timed(enc: LoadedEncoder, pixels: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        feats = inner(enc, pixels).cpu()  # .cpu(): waits for the GPU, which the pipeline's next line does
        spent.append(time.perf_counter() - start)
        if paired is not None:
            c0, t0 = cpu_seconds(), time.perf_counter()
            inner(enc, pixels).cpu()
            paired.append(Pair(start, spent[-1], time.perf_counter() - t0, cpu_seconds() - c0))
        return feats

    tgdfer.extraction.encode_images = timed
    try:
        yield
    finally:
        tgdfer.extraction.encode_images = inner


def time_pipeline(args: argparse.Namespace, table: pd.DataFrame, store: Path, workers: int,
                  batch_clips: int, paired: list[Pair] | None = None,
                  ) -> tuple[int, float, float, float, float, float | None]:
    """(images, seconds, setup seconds, CPU seconds, encoding seconds, steady ratio) of one whole `extract`
    call; the CPU seconds are the streaming part's (from the first clip on: the DataLoader workers start
    after it).

    With `paired` (a list), every encoder call of the pipeline is followed by a bare one (timed_encoder):
    each call's Pair goes to the list, the bare calls' seconds and CPU are left out of those returned,
    and the steady ratio is `steady_ratio`'s (None without `paired`)."""
    started: list[tuple[float, float]] = []  # (time, CPU seconds) when extract starts on the clips
    spent: list[float] = []
    cfg = ExtractConfig(store=str(store), views=args.views, frames=args.frames, batch_clips=batch_clips,
                        workers=workers, device=args.device)
    encoder = EncoderConfig(model=args.model, pretrained="none", precision=args.precision)
    t0 = time.perf_counter()
    with timed_encoder(spent, paired):
        result = extract(cfg, AugmentConfig(), encoder, table, data_kind="dfew", overwrite=True,
                         on_start=lambda todo, done: started.append((time.perf_counter(), cpu_seconds())))
    end = time.perf_counter()
    seconds, cpu = end - t0, cpu_seconds() - started[0][1]
    if result.failed or result.extracted != len(table):
        raise RuntimeError(f"extract read {result.extracted} of {len(table)} clips: {result.failures[:3]}")
    inserted, inserted_cpu = sum(p.bare for p in paired or []), sum(p.bare_cpu for p in paired or [])
    return (result.frames, seconds - inserted, started[0][0] - t0, cpu - inserted_cpu, sum(spent),
            steady_ratio(paired, end) if paired else None)


def measure(args: argparse.Namespace, encoder: EncoderConfig, device: torch.device, table: pd.DataFrame,
            source: str, workers: int, batch_clips: int, tmp: Path, bare_ref: str = "kept") -> Row:
    """Bare then pipeline, `args.repeats` rounds; the round with the median stream ratio counts.

    Each round pairs a bare run with the pipeline run next to it (bare first in rounds 1, 3, ...,
    pipeline first in rounds 2, 4, ...), so a round's ratio compares
    two measurements taken under the same load; the machine's speed can drift by more than the
    effect measured (25 % between identical matmul loops on a shared 2-core VM), which a best bare
    against a best pipeline from different rounds would turn into a biased ratio.

    `bare_ref` "kept": one bare encoder, built and warmed here, serves every round and stays alive
    while the pipeline builds its own; "fresh": each bare pass builds and frees its own (time_bare);
    "paired": no separate pass: after each of the pipeline's encoder calls the same encoder encodes the
    same pixels again, timed apart (timed_encoder), so bare and pipeline are paired batch by batch,
    seconds apart instead of a pass apart. Meant for an encoder-bound pipeline (a CPU): the inserted
    calls give the workers time to decode ahead, which would hide a data-bound one (a GPU's)."""
    sizes = batch_sizes(len(table), batch_clips, args.views, args.frames)
    ref: LoadedEncoder | EncoderConfig = encoder
    if bare_ref == "kept":
        ref = load_encoder(encoder, device=device)
        warm_up(ref, max(sizes), args.warmup)
    rounds = []
    for i in range(args.repeats):
        if bare_ref != "paired" and i % 2 == 0:
            bare, bare_cpu = time_bare(ref, device, sizes)
        paired: list[Pair] | None = [] if bare_ref == "paired" else None
        images, seconds, setup, cpu, encoding, steady = time_pipeline(args, table, tmp / f"{source}.zarr", workers,
                                                                      batch_clips, paired)
        if paired is not None:
            if len(paired) != len(sizes):
                raise RuntimeError(f"the pipeline made {len(paired)} encoder calls, {len(sizes)} expected")
            bare, bare_cpu = sum(p.bare for p in paired), sum(p.bare_cpu for p in paired)
        elif i % 2 == 1:  # every other round the pipeline goes first: no order effect favours either
            bare, bare_cpu = time_bare(ref, device, sizes)
        if images != sum(sizes):
            raise RuntimeError(f"the pipeline encoded {images} images, the bare run {sum(sizes)}")
        rounds.append(Row(source, workers, batch_clips, images, seconds, setup, cpu, encoding, bare, bare_cpu,
                          bare=bare_ref, steady=steady))
        print(f"  {source} round {i + 1}: stream ratio {rounds[-1].stream_ratio:.3f}"
              + (f", steady {steady:.3f}" if steady is not None else "")
              + (f"; bare / pipeline seconds, call by call: {' '.join(f'{p.bare / p.pipeline:.3f}' for p in paired)}"
                 if paired else ""), flush=True)
    median = lower_median(rounds, key=lambda r: r.stream_ratio)
    median.round_ratios = tuple(r.stream_ratio for r in rounds)
    if bare_ref == "paired" and all(r.steady is not None for r in rounds):  # None: one encoder call a pass
        median.round_steady = tuple(r.steady for r in rounds)
    return median


def print_report(console: Console, rows: list[Row]) -> None:
    table = Table(title="extract: pipeline vs bare image encoder")
    for col in ("source", "bare", "workers", "batch", "images", "seconds", "setup s", "frames/s", "bare frames/s", "ratio",
                "stream ratio", "95% CI", "busy", "enc ratio", "cpu ratio", "steady", "steady 95% CI"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for r in rows:
        steady = lower_median(r.round_steady) if r.round_steady else None
        table.add_row(r.source, r.bare, str(r.workers), str(r.batch_clips), str(r.images), f"{r.seconds:.1f}", f"{r.setup:.1f}", f"{r.fps:.1f}",
                      f"{r.bare_fps:.1f}", f"{r.ratio:.3f}", f"{r.stream_ratio:.3f}", _interval(r.round_ratios),
                      f"{r.busy:.3f}", f"{r.encoder_ratio:.3f}", f"{r.cpu_ratio:.3f}",
                      "-" if steady is None else f"{steady:.3f}", _interval(r.round_steady))
    console.print(table)
    for r in rows:
        console.print(f"ratio: {r.ratio:.3f}  source={r.source} bare={r.bare} workers={r.workers} batch_clips={r.batch_clips} "
                      f"stream_ratio={r.stream_ratio:.3f} "
                      f"target={TARGET}  stream goal {GOAL}: {verdict(list(r.round_ratios))}", highlight=False)
        console.print(f"  rounds: {' '.join(f'{x:.3f}' for x in r.round_ratios)}", highlight=False)
        if r.round_steady:
            console.print(f"  steady (from the second encoder call on): {' '.join(f'{x:.3f}' for x in r.round_steady)}"
                          f"; goal {GOAL}: {verdict(list(r.round_steady))}", highlight=False)
        if r.bare == "paired" and r.busy < PAIRED_BUSY:
            console.print(f"  caution: the encoder waited for data ({r.busy:.0%} busy); the paired bare calls give "
                          "the workers time to decode ahead, so this row's ratios flatter a data-bound pipeline: "
                          "use --bare fresh", highlight=False)


def _interval(ratios: tuple[float, ...]) -> str:
    ci = median_interval(list(ratios))
    return "-" if ci is None else f"{ci[0]:.3f}-{ci[1]:.3f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # random-weight warnings would drown the table
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=max(Console().width, 220))  # one line per row, also when piped to a file
    rows = []
    with tempfile.TemporaryDirectory(prefix="tgdfer-bench-") as tmp:
        data = make_data(Path(tmp), args.clips, args.size)  # first: its spawn pool is gone before any timing
        device = resolve_device(args.device)
        encoder = EncoderConfig(model=args.model, pretrained="none", precision=args.precision)
        enc = load_encoder(encoder, device=device)
        warm_up(enc, max(args.batch_clips) * args.views * args.frames, args.warmup)
        console.print(f"{args.model} (random weights) {enc.precision} on {device}, torch threads "
                      f"{torch.get_num_threads()}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; "
                      f"{args.clips} clips x {args.views} views x {args.frames} frames", highlight=False)
        del enc  # measure builds the bare reference: a kept one lives for its rows only
        for source in args.sources:
            table = clip_table(data, source)
            for workers, batch_clips, bare in itertools.product(args.workers, args.batch_clips, args.bare):
                rows.append(measure(args, encoder, device, table, source, workers, batch_clips, Path(tmp), bare))
    print_report(console, rows)
    return 0


if __name__ == "__main__":  # SynthDFER generation uses a spawn pool: keep the guard
    raise SystemExit(main())
