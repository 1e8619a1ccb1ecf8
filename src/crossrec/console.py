"""The command line's console and its error exit (shared by the ``crossrec`` commands)."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# a fixed width when piped (logs, CI), so that wide metric tables are not cut
console = Console() if sys.stdout.isatty() else Console(width=200)


def fail(e: Exception) -> NoReturn:
    """Print ``error: <e>`` as one line on stderr and exit with status 2 (bad input or
    config, not a crash)."""
    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    raise typer.Exit(code=2)
