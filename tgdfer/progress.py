"""Progress of long jobs (extract, train-head, the proxy CLIP) for terminals, batch logs and notebooks.

A long job takes `progress=`: a callable that receives a `ProgressEvent` after every unit of
work (an extraction batch, a training epoch, a proxy step). What can be passed:

    def show(e: ProgressEvent): print(e.line())          # any callable (the ProgressCallback protocol)
    tgdfer.train(pipe, progress=tqdm.auto.tqdm())        # a tqdm bar (a notebook shows it)
    tgdfer.train(pipe, progress=rich.progress.Progress())  # a started rich Progress: one task per stage
    tgdfer.train(pipe, progress=LineLogger())            # one plain line per epoch / block, on stderr

`as_callback` turns any of these into a ProgressCallback. The CLI draws rich bars on a terminal
and writes `LineLogger` lines when stderr is not one (Slurm, nohup, CI): only events with
`log=True` (every epoch, every extraction block, the stage ends) become a line.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Optional, Protocol


@dataclass
class ProgressEvent:
    stage: str  # "extract", "train-head", "proxy data", "proxy image", "proxy text"
    done: int  # units finished in this stage
    total: Optional[int]  # units in the stage (None: not known)
    unit: str = ""  # what a unit is: "clips", "epoch", "step"
    detail: str = ""  # who: "x5 replicas", "fold 1 seed 0", "shard 1/2"
    metrics: dict[str, float] = field(default_factory=dict)  # of the last unit: loss, test_war, ... (means over replicas)
    elapsed: float = 0.0  # seconds since the stage started
    log: bool = True  # worth a line in a batch log (each epoch, each extraction block, a stage's end)
    eta: Optional[float] = None  # seconds left at this session's pace (None: not known yet)

    def line(self) -> str:
        """One plain line: `train-head x5 replicas epoch 3/20 loss 1.234 test_war 0.412 elapsed 0:00:12 ETA 0:01:08`."""
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        parts = [self.stage, self.detail, f"{self.unit} {count}" if self.unit else count]
        parts += [f"{k} {_number(v)}" for k, v in self.metrics.items()]
        parts.append(f"elapsed {_clock(self.elapsed)}")
        if self.eta is not None:
            parts.append(f"ETA {_clock(self.eta)}")
        return " ".join(p for p in parts if p)


class ProgressCallback(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


def _number(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def every_tenth(done: int, total: Optional[int]) -> bool:
    """True at each tenth of a stage and at its end: when a unit-by-unit stage is worth a log line."""
    if not total:
        return True
    return done >= total or done * 10 // total > (done - 1) * 10 // total


class LineLogger:
    """Writes `event.line()` for every event with `log=True` to `stream` (stderr by default), flushed."""

    def __init__(self, stream: Optional[IO[str]] = None, write: Optional[Any] = None):
        self.stream, self.write = stream, write  # `write(text)` (e.g. a rich console's print) instead of a stream

    def __call__(self, event: ProgressEvent) -> None:
        if not event.log:
            return
        if self.write is not None:
            self.write(event.line())
            return
        stream = self.stream or sys.stderr
        stream.write(event.line() + "\n")
        stream.flush()


class TqdmCallback:
    """Drives a tqdm bar (tqdm, tqdm.auto, tqdm.notebook): total, position, stage and metrics."""

    def __init__(self, bar: Any):
        self.bar = bar

    def __call__(self, event: ProgressEvent) -> None:
        bar = self.bar
        if event.total is not None and bar.total != event.total:
            bar.total = event.total
        bar.n = event.done
        bar.set_description(" ".join(p for p in (event.stage, event.detail) if p), refresh=False)
        bar.set_postfix({k: _number(v) for k, v in event.metrics.items()}, refresh=False)
        bar.refresh()


class RichCallback:
    """Drives a rich `Progress` (started by the caller): one task per stage, metrics in its description."""

    def __init__(self, progress: Any):
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: ProgressEvent) -> None:
        metrics = " ".join(f"{k} {_number(v)}" for k, v in event.metrics.items())
        text = " ".join(p for p in (event.stage, event.detail, metrics) if p)
        if event.stage not in self.tasks:
            self.tasks[event.stage] = self.progress.add_task(text, total=event.total)
        self.progress.update(self.tasks[event.stage], total=event.total, completed=event.done, description=text)


def as_callback(progress: Any) -> Optional[ProgressCallback]:
    """None, a ProgressCallback, a tqdm bar or a rich Progress -> a ProgressCallback (or None)."""
    if progress is None:
        return None
    if hasattr(progress, "add_task") and hasattr(progress, "update"):  # rich.progress.Progress
        return RichCallback(progress)
    if hasattr(progress, "set_postfix") and hasattr(progress, "total"):  # tqdm and its notebook/auto variants
        return TqdmCallback(progress)
    if callable(progress):
        return progress
    raise TypeError(f"progress must be a callable taking a ProgressEvent, a tqdm bar or a rich Progress, "
                    f"got {type(progress).__name__}")


class Stage:
    """Emits one stage's events with elapsed time and ETA: `stage.update(done, metrics=..., log=...)`."""

    def __init__(self, callback: Optional[ProgressCallback], stage: str, total: Optional[int], unit: str = "",
                 detail: str = "", start: int = 0):
        self.callback, self.stage, self.total, self.unit, self.detail = callback, stage, total, unit, detail
        self.t0, self.start = time.perf_counter(), start  # `start`: units done before (a resumed job): not in the pace

    def update(self, done: int, metrics: Optional[dict[str, float]] = None, log: bool = True) -> None:
        if self.callback is None:
            return
        elapsed = time.perf_counter() - self.t0
        eta = (elapsed / (done - self.start) * max(self.total - done, 0)
               if self.total is not None and done > self.start else None)
        self.callback(ProgressEvent(self.stage, done, self.total, self.unit, self.detail, dict(metrics or {}),
                                    elapsed, log, eta))
