"""Exceptions for user mistakes. The library raises them; only the CLI turns them into exit codes.

Every message names the file, line, field or option at fault and, where there is one, the fix.
"""

from __future__ import annotations

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


class FrameReadError(TgdferError, OSError):
    """A clip's frames cannot be read (missing, empty, corrupt or truncated)."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")
