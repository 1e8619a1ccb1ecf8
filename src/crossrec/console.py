"""The console crossrec prints to, its error exit, and progress for long steps.

Progress goes to stdout so that a redirected run (``crossrec ... > log``, CI) keeps it: a live
bar when stdout is a terminal, otherwise plain lines at most a tenth of the work apart (and one
at the end), e.g. ``encoding item texts: 3,822/38,212 (10%), 12 s, ~1 m 48 s left``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

# a fixed width when piped (logs, CI), so that wide metric tables are not cut
console = Console() if sys.stdout.isatty() else Console(width=200)


def fail(e: Exception) -> NoReturn:
    """Print ``error: <e>`` as one line on stderr and exit with status 2 (bad input or
    config, not a crash)."""
    import typer

    Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    raise typer.Exit(code=2)


def note(message: str) -> None:
    """One plain line on stdout (no markup, no wrapping): what a step does, where it caches."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60} m {s % 60:02d} s" if s >= 60 else f"{s} s"


@contextmanager
def progress(total: int, label: str, *, every: float = 0.1,
             live: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)`` for a step of ``total`` units.

    Args:
        total: units of work (items, texts, users).
        label: what is done, e.g. ``"encoding item texts"``.
        every: most share of ``total`` between two plain lines (given advances of even size).
        live: a live bar (default: when stdout is a terminal) instead of plain lines.
    """
    live = console.is_terminal if live is None else live
    if live:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n: bar.advance(task, n)
        return
    start, done, shown, finished = time.perf_counter(), 0, 0, False

    def advance(n: int) -> None:
        # a line now if another advance of this size would leave more than `every` unsaid
        nonlocal done, shown, finished
        if finished:  # the end is said once
            return
        done += n
        if done < total and done + n - shown <= every * total:
            return
        shown, finished = done, done >= total
        elapsed = time.perf_counter() - start
        left = f", ~{_duration(elapsed * (total - done) / done)} left" if 0 < done < total else ""
        note(f"{label}: {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%), "
             f"{_duration(elapsed)}{left}")

    yield advance
