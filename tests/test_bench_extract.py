"""benchmarks/extract.py's statistic: paired rounds, the order alternating, the median round reported,
and the two bare references (one model kept through the rounds, or one built per pass). The timing
functions are replaced by scripted ones: what is checked is the bookkeeping, not a speed."""

import argparse
import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[1]


def _bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmarks_extract", ROOT / "benchmarks" / "extract.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _bench()
IMAGES = 2 * 2 * 4  # 2 clips x 2 views x 4 frames, one batch


def _run(monkeypatch, pipeline_seconds: list[float], bare_ref: str):
    """measure() over len(pipeline_seconds) rounds with bare passes of 10 s and the given pipeline times
    (1 s of setup each); returns (row, the call order, the bare references passed, encoders loaded)."""
    calls, refs, loaded = [], [], []
    it = iter(pipeline_seconds)

    def bare(ref, device, sizes):
        calls.append("bare")
        refs.append(ref)
        assert sizes == [IMAGES]
        return 10.0, 20.0

    def pipeline(args, table, store, workers, batch_clips, paired):
        calls.append("pipeline")
        assert paired is None  # a separate bare pass, none inside the pipeline
        stream = next(it)
        return IMAGES, stream + 1.0, 1.0, 2.0, 0.9 * stream, None  # images, seconds, setup, cpu, encoding, steady

    monkeypatch.setattr(bench, "time_bare", bare)
    monkeypatch.setattr(bench, "time_pipeline", pipeline)
    monkeypatch.setattr(bench, "load_encoder", lambda cfg, device: loaded.append(cfg) or "kept-encoder")
    monkeypatch.setattr(bench, "warm_up", lambda enc, size, calls: None)
    args = argparse.Namespace(views=2, frames=4, repeats=len(pipeline_seconds), warmup=1)
    cfg = bench.EncoderConfig(model="tgdfer-tiny-vit", pretrained="none")
    row = bench.measure(args, cfg, "cpu", pd.DataFrame({"clip": [1, 2]}), "frames", 1, 2, Path("/tmp"), bare_ref)
    return row, calls, refs, loaded, cfg


def test_the_median_round_is_reported_with_every_round(monkeypatch):
    # stream ratios 10/s: 1.0, 0.5, 2.0, 0.8 -> sorted 0.5, 0.8, 1.0, 2.0; the lower middle is 0.8
    row, calls, *_ = _run(monkeypatch, [10.0, 20.0, 5.0, 12.5], "fresh")
    assert row.round_ratios == pytest.approx((1.0, 0.5, 2.0, 0.8))
    assert row.stream_ratio == pytest.approx(0.8) and row.seconds == 13.5
    assert calls == ["bare", "pipeline", "pipeline", "bare", "bare", "pipeline", "pipeline", "bare"]


def test_an_odd_count_reports_the_middle(monkeypatch):
    row, *_ = _run(monkeypatch, [10.0, 20.0, 5.0], "fresh")
    assert row.stream_ratio == 1.0 and row.bare == "fresh"


def test_the_two_references(monkeypatch):
    _, _, refs, loaded, cfg = _run(monkeypatch, [10.0, 10.0, 10.0], "fresh")
    assert refs == [cfg] * 3 and loaded == []  # each pass builds its own (time_bare)
    row, _, refs, loaded, cfg = _run(monkeypatch, [10.0, 10.0, 10.0], "kept")
    assert refs == ["kept-encoder"] * 3 and loaded == [cfg]  # one model, built once, through the rounds
    assert row.bare == "kept"


def test_the_median_interval_takes_the_order_statistics_its_coverage_allows():
    # n = 5: even (min, max) covers the median with 1 - 2/32 = 0.9375 < 0.95 -> no interval
    assert bench.median_interval([1, 2, 3, 4, 5]) is None
    # n = 6: (min, max) covers 1 - 2/64 = 0.969
    assert bench.median_interval([6, 1, 5, 2, 4, 3]) == (1, 6)
    # n = 8: (x2, x7) would cover 1 - 2 * 9/256 = 0.930, so still (min, max)
    assert bench.median_interval(list(range(8))) == (0, 7)
    # n = 10: (x2, x9) covers 1 - 2 * 11/1024 = 0.979; (x3, x8) only 0.891
    assert bench.median_interval(list(range(10, 0, -1))) == (2, 9)
    assert bench.median_interval(list(range(10)), level=0.89) == (2, 7)


def test_the_verdict_needs_the_whole_interval_on_one_side_of_the_goal():
    assert bench.verdict([0.96, 0.97, 0.99, 1.0, 1.02, 0.98]) == "meets"
    assert bench.verdict([0.90, 0.91, 0.93, 0.92, 0.94, 0.89]) == "misses"
    assert bench.verdict([0.90, 0.97, 0.99, 1.0, 1.02, 0.98]) == "undecided"  # min 0.90 < 0.95 <= max
    assert bench.verdict([0.99, 1.0, 1.02, 0.98, 0.97]).startswith("undecided (a 95% interval needs more rounds")


def test_the_stream_ratio_splits_into_busy_times_the_encoders_own_ratio(monkeypatch):
    row, *_ = _run(monkeypatch, [12.5], "fresh")  # stream 12.5 s, 0.9 of it encoding; bare 10 s
    assert row.busy == pytest.approx(0.9) and row.encoder_ratio == pytest.approx(10 / 11.25)
    assert row.stream_ratio == pytest.approx(row.busy * row.encoder_ratio) == pytest.approx(0.8)


def test_paired_bare_calls_follow_each_pipeline_call_and_leave_its_times(monkeypatch):
    """timed_encoder with `paired`: each pipeline call is followed by one on the same encoder and pixels;
    the pipeline gets the first call's features, the second's time goes to `paired` only."""
    seen, clock = [], iter([1.0, 4.0, 4.0, 6.0])  # pipeline call 3 s, bare call 2 s
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(bench, "cpu_seconds", lambda: 0.0)

    def inner(enc, pixels):
        seen.append((enc, pixels))
        return bench.torch.full((1, 2), float(len(seen)))

    monkeypatch.setattr(bench.tgdfer.extraction, "encode_images", inner)
    spent, paired = [], []
    with bench.timed_encoder(spent, paired):
        feats = bench.tgdfer.extraction.encode_images("enc", "pixels")
    assert bench.tgdfer.extraction.encode_images is inner  # restored
    assert seen == [("enc", "pixels")] * 2 and feats.tolist() == [[1.0, 1.0]]
    assert spent == [3.0] and paired == [bench.Pair(start=1.0, pipeline=3.0, bare=2.0, bare_cpu=0.0)]


def test_the_paired_reference_takes_its_bare_times_from_the_pipelines_calls(monkeypatch):
    calls = []

    def pipeline(args, table, store, workers, batch_clips, paired):
        calls.append("pipeline")
        paired += [bench.Pair(0.0, 5.0, 4.0, 7.0), bench.Pair(9.0, 3.0, 3.0, 5.0)]  # two calls, bare 7 s in all
        return 2 * IMAGES, 11.0, 1.0, 2.0, 8.0, 0.9  # stream 10 s, 8 of them encoding; steady 0.9

    monkeypatch.setattr(bench, "time_bare", lambda *a: calls.append("bare"))
    monkeypatch.setattr(bench, "time_pipeline", pipeline)
    args = argparse.Namespace(views=2, frames=4, repeats=2, warmup=1)
    cfg = bench.EncoderConfig(model="tgdfer-tiny-vit", pretrained="none")
    row = bench.measure(args, cfg, "cpu", pd.DataFrame({"clip": [1, 2, 3, 4]}), "frames", 1, 2, Path("/tmp"),
                        "paired")
    assert calls == ["pipeline", "pipeline"]  # no bare pass of its own
    assert row.bare_seconds == 7.0 and row.bare_cpu == 12.0 and row.bare == "paired"
    assert row.encoder_ratio == pytest.approx(7 / 8) and row.busy == pytest.approx(0.8)
    assert row.stream_ratio == pytest.approx(0.7) and row.round_ratios == pytest.approx((0.7, 0.7))
    assert row.round_steady == (0.9, 0.9)
    monkeypatch.setattr(bench, "time_pipeline",  # one encoder call where the two batches need two
                        lambda *a: (a[-1].append(bench.Pair(0, 1, 1, 1)), (2 * IMAGES, 3.0, 1.0, 1.0, 1.0, None))[1])
    with pytest.raises(RuntimeError, match="1 encoder calls, 2 expected"):
        bench.measure(args, cfg, "cpu", pd.DataFrame({"clip": [1, 2, 3, 4]}), "frames", 1, 2, Path("/tmp"), "paired")


def test_the_steady_ratio_starts_at_the_second_encoder_call():
    # calls at t = 10 (pipeline 6 s, bare 5 s), t = 22 (4 s, 3 s), t = 30 (4 s, 3 s); the stream ends at 40.
    # From t = 22: 18 s of wall, 6 of them the inserted bare calls -> the pipeline's own 12 s against bare 6 s.
    pairs = [bench.Pair(10.0, 6.0, 5.0, 0.0), bench.Pair(22.0, 4.0, 3.0, 0.0), bench.Pair(30.0, 4.0, 3.0, 0.0)]
    assert bench.steady_ratio(pairs, 40.0) == pytest.approx(6 / 12)
    assert bench.steady_ratio(pairs[:1], 40.0) is None  # one call: no window after it


def test_a_paired_row_whose_encoder_waited_for_data_is_flagged():
    from rich.console import Console

    def report(encoding: float) -> str:  # stream 10 s; busy = encoding / 10
        row = bench.Row("frames", 1, 4, 128, 11.0, 1.0, 10.0, encoding, 9.0, 9.0, round_ratios=(0.9,),
                        bare="paired", steady=0.9, round_steady=(0.9,))
        console = Console(record=True, width=250)
        bench.print_report(console, [row])
        return console.export_text()

    assert "caution: the encoder waited for data (90% busy)" in report(9.0)
    assert "caution" not in report(9.8)


def test_a_pass_of_one_encoder_call_has_no_steady_ratio_to_report(monkeypatch):
    def pipeline(args, table, store, workers, batch_clips, paired):
        paired.append(bench.Pair(0.0, 5.0, 4.0, 7.0))  # one call: steady_ratio gives None
        return IMAGES, 6.0, 1.0, 2.0, 5.0, None

    monkeypatch.setattr(bench, "time_pipeline", pipeline)
    args = argparse.Namespace(views=2, frames=4, repeats=2, warmup=1)
    cfg = bench.EncoderConfig(model="tgdfer-tiny-vit", pretrained="none")
    row = bench.measure(args, cfg, "cpu", pd.DataFrame({"clip": [1, 2]}), "frames", 1, 2, Path("/tmp"), "paired")
    assert row.round_steady == () and row.stream_ratio == pytest.approx(0.8)
    from rich.console import Console
    console = Console(record=True, width=250)
    bench.print_report(console, [row])  # no steady column value, no steady line
    assert "steady (from" not in console.export_text()
