"""Temporary files of atomic writes: `.<name>.<pid>.tmp` beside the target, renamed onto it when complete.

A process killed between writing and renaming leaves its temporary file behind; `tmp_path`
names the new one and removes those of processes that no longer run, so the next write of the
same file (a resumed run's checkpoint, its config.json, a sweep's point.json) cleans up after the
killed one. Assumes the processes writing one folder share a host and a pid namespace, as the
feature store does (tgdfer/storeprotocol.py).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

logger = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(path: Path) -> list[Path]:
    """Remove the temporary files of `path` (`.<name>.<pid>.tmp`) whose writer no longer runs; returns them."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.tmp$")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            logger.info("removing %s, left by a write that was killed", entry.path)
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def tmp_path(path: Path) -> Path:
    """This process's temporary file for an atomic write of `path`, after removing killed writers' ones."""
    path = Path(path)
    remove_stale(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")
