"""Progress on a terminal for long work; silent when not asked for."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

Update = Callable[[int, str], None]


@contextlib.contextmanager
def counter(description: str, enabled: bool, total: int | None = None) -> Iterator[Update]:
    """Yield ``update(done, note)``, drawing a live bar (or counter, without a total) on stderr when enabled."""
    if not enabled:
        yield _ignore
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    columns += [BarColumn(), MofNCompleteColumn()] if total else [TextColumn("{task.completed:,}")]
    columns += [TextColumn("[yellow]{task.fields[note]}"), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total, note="")

        def update(done: int, note: str) -> None:
            progress.update(task, completed=done, note=note)

        yield update


def _ignore(done: int, note: str) -> None:
    """Progress nobody watches."""
