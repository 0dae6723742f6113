"""Run bookkeeping: every stage records when it ran, how it ended, and what it did."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline import store
from pipeline.errors import UserError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool


@dataclass
class Run:
    """A run in progress; set ``stats`` before the block ends to record what it did."""

    run_id: str
    stats: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def recorded(pool: ConnectionPool, kind: str, params: dict[str, Any]) -> Iterator[Run]:
    """Record a run as running, then as succeeded, refused (bad input) or failed."""
    run = Run(store.start_run(pool, kind, params))
    try:
        yield run
    except BaseException as exc:
        status = "refused" if isinstance(exc, UserError) else "failed"
        # The original error matters more than bookkeeping that may fail for the same reason.
        with contextlib.suppress(Exception):
            store.finish_run(pool, run.run_id, status, run.stats, f"{type(exc).__name__}: {exc}")
        raise
    store.finish_run(pool, run.run_id, "succeeded", run.stats)
