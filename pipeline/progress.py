"""Progress on a terminal for long work; silent when not asked for."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def row_counter(description: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """Yield ``update(rows_done, rows_held_back)``, drawing a live counter on stderr when enabled."""
    if not enabled:
        yield lambda done, held_back: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} rows"),
        TextColumn("[yellow]{task.fields[held_back]:,} quarantined"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=None, held_back=0)
        yield lambda done, held_back: progress.update(task, completed=done, held_back=held_back)
