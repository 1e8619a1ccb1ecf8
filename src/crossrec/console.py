"""The command line's console and its error exit (shared by the ``crossrec`` commands)."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

# a fixed width when piped (logs, CI), so that wide metric tables are not cut
console = Console() if sys.stdout.isatty() else Console(width=200)


def fail(e: Exception) -> NoReturn:
    """Print ``error: <e>`` and exit with status 2 (bad input or config, not a crash)."""
    console.print(f"[bold red]error:[/] {e}")
    raise typer.Exit(code=2)
