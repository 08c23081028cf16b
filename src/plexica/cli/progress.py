"""Progress bars for long work (fleet migrate, plugin upgrade-all, backup, restore).

Drawn on stderr only while a terminal watches: with ``--json``, a pipe or a log file nothing
extra is printed. ``rich`` (already installed with ``typer``) loads only when a bar is drawn.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int, int | None], None]  # (done, total or None while unknown)


def _nothing(done: int, total: int | None) -> None:
    del done, total


@contextmanager
def bar(label: str, *, quiet: bool = False) -> Iterator[Advance]:
    if quiet or not sys.stderr.isatty():
        yield _nothing
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    console = Console(stderr=True)
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def advance(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield advance
