"""Optional TensorBoard logs of training (`[train] tensorboard = true`): <run>/tensorboard/ per run folder.

The scalars are those of the per-epoch log lines and metrics.csv: loss, train_acc, test_war,
test_uar, val_war, val_uar (with a validation split), lr, clips_per_s; step = epoch. The writer is
torch's `torch.utils.tensorboard.SummaryWriter`, which needs the `tensorboard` package: install
the extra with `pip install 'tgdfer[tensorboard]'`. View with `tensorboard --logdir runs/`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

from .errors import ConfigError

SCALARS = ("loss", "train_acc", "test_war", "test_uar", "val_war", "val_uar", "lr", "clips_per_s")
FOLDER = "tensorboard"  # under each run folder


def check_tensorboard() -> None:
    """ConfigError naming the extra when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as e:  # torch raises ImportError naming tensorboard when it is not installed
        raise ConfigError("train.tensorboard", "needs the tensorboard package, which is not installed: "
                          f"pip install 'tgdfer[tensorboard]' (or set train.tensorboard=false) ({e})") from None


@contextlib.contextmanager
def epoch_writers(runs: Sequence[str | Path], enabled: bool) -> Iterator[list[Optional[Any]]]:
    """One SummaryWriter per run folder (<run>/tensorboard), or Nones when not enabled; closed at the end."""
    if not enabled:
        yield [None] * len(runs)
        return
    check_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    writers = [SummaryWriter(log_dir=str(Path(r) / FOLDER)) for r in runs]
    try:
        yield writers
    finally:
        for w in writers:
            w.close()


def write_epoch(writer: Optional[Any], record: Any) -> None:
    """One epoch's scalars (an EpochRecord), step = epoch; NaN ones (no validation split) are left out."""
    if writer is None:
        return
    for name in SCALARS:
        value = float(getattr(record, name))
        if not math.isnan(value):
            writer.add_scalar(name, value, record.epoch)
    writer.flush()
