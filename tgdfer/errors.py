"""Exceptions for user mistakes. The library raises them; only the CLI turns them into exit codes.

Every message names the file, line, field or option at fault and, where there is one, the fix.
"""

from __future__ import annotations

import errno
from pathlib import Path


class TgdferError(Exception):
    """Base class: an error the user can fix (bad input, bad config), shown without a traceback."""


class ConfigError(TgdferError, ValueError):
    """A config field or CLI option has an impossible value."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class AnnotationError(TgdferError, ValueError):
    """An annotation file is missing, malformed, or points to nothing."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class RunFolderError(TgdferError):
    """A run folder cannot take this run (it holds one already, it is a file, it cannot be resumed).

    `fix` names the arguments as `{resume}` and `{out}`: str(error) words them for Python callers
    (resume=True, out=), `error.cli` for the command line (--resume, --out), which the CLI prints.
    """

    def __init__(self, path: str | Path, problem: str, fix: str):
        self.path = str(path)
        self.cli = f"{path}{problem}; " + fix.format(resume="--resume", out="--out")
        super().__init__(f"{path}{problem}; " + fix.format(resume="resume=True", out="out="))


class StoreMismatchError(TgdferError):
    """A feature store exists at the path with other settings, encoder weights or clips than asked for."""


class FrameReadError(TgdferError, OSError):
    """A clip's frames cannot be read (missing, empty, corrupt or truncated)."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


def os_error(path: str | Path, e: OSError, doing: str) -> TgdferError:
    """One line for an operating system refusal: the path, what failed, and what to do."""
    hint = {
        errno.ENOSPC: "the disk is full: free space or choose another folder",
        errno.EDQUOT: "the disk quota is exceeded: free space or choose another folder",
        errno.EACCES: "permission denied: choose a folder you can write to (or fix its permissions)",
        errno.EPERM: "operation not permitted: choose a folder you can write to",
        errno.EROFS: "the file system is read-only: choose a writable folder",
        errno.ENOTDIR: "a path component is a file, not a folder: choose another path",
        errno.EISDIR: "the path is a folder, not a file",
        errno.ENOENT: "no such file or folder",
    }.get(e.errno, e.strerror or str(e))
    if e.errno in (errno.ENOTDIR, errno.EEXIST):  # mkdir through a file: "File exists" names neither
        blocker = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            hint = f"{blocker} is a file, not a folder: choose another path"
    return TgdferError(f"{path}: cannot {doing}: {hint}")
