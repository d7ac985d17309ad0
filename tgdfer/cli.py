"""The `tgdfer` command line. Each command parses options and calls one library function.

The library raises `TgdferError` subclasses for user mistakes; `_run` turns them into a red
one-line message and exit code 2, so no user error ends in a bare traceback.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console

from .errors import TgdferError

app = typer.Typer(
    name="tgdfer",
    help="TG-DFER toolkit: synthetic data, CLIP feature extraction, fast head training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

EXIT_USER_ERROR = 2


def _run(fn: Callable) -> Callable:
    """Wrap a command: user errors become a message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        try:
            return fn(*args, **kwargs)
        except TgdferError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
            raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Pipeline TOML file (pipelines/*.toml).")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config field, e.g. --set extract.views=2 (repeatable)."),
]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
