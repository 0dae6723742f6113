"""The nightly flow: ingest → validate → refresh → drift → (if drifted) finetune → (if promoted) reindex.

Each stage is a subflow, so the Prefect UI shows the night as one run with its stages nested. A
PostgreSQL advisory lock keeps two nightly runs from overlapping; a stage that meets a transient
database error (a dropped connection, a restarting server) is run again, which is safe because
every stage resumes from what is committed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import psycopg
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from psycopg_pool import PoolTimeout

from flows.drift import drift_flow
from flows.finetune import finetune_flow
from flows.ingest import ingest_flow
from flows.refresh import refresh_flow
from infra import database
from pipeline import report, store
from pipeline.errors import UserError
from pipeline.settings import NightlyOptions, Settings

LOCK = "ragtune.nightly"
TRANSIENT = (psycopg.OperationalError, PoolTimeout)  # not UserError: bad input fails the same way twice
T = TypeVar("T")


@flow(name="nightly")
def nightly_flow(
    paths: list[str] | None = None, settings: Settings | None = None, progress: bool = False
) -> dict[str, Any]:
    """One night of the loop: bring the index up to date, and fine-tune only if the data drifted."""
    settings = settings or Settings()
    sources = [str(p) for p in (paths or settings.nightly.sources)]
    if not sources:
        raise UserError(
            "nothing to ingest: pass paths (`ragtune nightly PATH...`) or set nightly.sources "
            "(RAGTUNE_NIGHTLY__SOURCES='[\"/data/docs\"]' or [nightly] sources in ragtune.toml)"
        )
    started = time.perf_counter()
    with _nightly_lock(database.database_url(settings), settings.nightly) as held:
        if not held:
            return {"skipped": True, "reason": "another nightly run holds the lock; this one did nothing"}
        options = settings.nightly
        result: dict[str, Any] = {"skipped": False, "sources": sources, "retries": []}

        def stage(name: str, run: Callable[..., T], *args: Any, **kwargs: Any) -> T:
            return _retrying(options, result["retries"], name, run, *args, **kwargs)

        result["ingest"] = [
            stage("ingest", ingest_flow, [path], snapshot=options.snapshot, settings=settings, progress=progress)
            for path in sources
        ]
        result["refresh"] = stage("refresh", refresh_flow, settings=settings, progress=progress)
        result["drift"] = stage("drift", drift_flow, settings=settings)
        if result["drift"]["drifted"]:  # not retried: a second training is a decision, not a reconnect
            result["finetune"] = finetune_flow(settings=settings, progress=progress)
        else:
            result["finetune"] = {"trained": False, "reason": f"no drift: {result['drift']['reason']}"}
    result["seconds"] = time.perf_counter() - started
    create_markdown_artifact(report.nightly_markdown(result), key="nightly-report", description="the night in brief")
    return result


@contextlib.contextmanager
def _nightly_lock(url: str, options: NightlyOptions) -> Iterator[bool]:
    """Hold the nightly lock on a connection of its own (outside the pool the stages share)."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + options.wait_seconds
        held = store.try_lock(conn, LOCK)
        while not held and time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            held = store.try_lock(conn, LOCK)
        yield held  # released when the connection closes, whatever happens in the block


def _retrying(
    options: NightlyOptions, retried: list[dict[str, str]], stage: str, run: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run a stage; after a transient database error, run it again (``options.retries`` times)."""
    for attempt in range(options.retries + 1):
        try:
            return run(*args, **kwargs)
        except TRANSIENT as exc:
            if attempt == options.retries:
                raise
            retried.append({"stage": stage, "error": f"{type(exc).__name__}: {exc}".strip()})
            get_run_logger().warning(
                "%s met a transient database error (%s); retrying in %.0f s", stage, exc, options.retry_delay_seconds
            )
            database.close_pools()  # connections to a restarted server are dead: start afresh
            time.sleep(options.retry_delay_seconds)
    raise AssertionError("unreachable")


def serve(settings: Settings, on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve ``nightly`` on its schedule and ``finetune`` on demand from this process, until interrupted.

    Needs a Prefect server (PREFECT_API_URL): a temporary one has no scheduler.
    """
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Cron

    schedule = Cron(settings.nightly.cron, timezone=settings.nightly.timezone)
    deployments = [  # called outside an event loop, to_deployment returns the deployment itself
        cast(RunnerDeployment, nightly_flow.to_deployment("nightly-local", schedules=[schedule])),
        cast(RunnerDeployment, finetune_flow.to_deployment("finetune-local")),
    ]
    if on_ready is not None:
        on_ready(
            {
                "deployments": ["nightly/nightly-local", "finetune/finetune-local"],
                "cron": settings.nightly.cron,
                "timezone": settings.nightly.timezone,
                "sources": [str(p) for p in settings.nightly.sources],
            }
        )
    prefect_serve(*deployments)
