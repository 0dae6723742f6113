"""The reindex and rollback flows: move ``champion`` and switch searches to its index."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from psycopg_pool import ConnectionPool

from flows.refresh import connect, load_encoder
from pipeline import promote, refresh, report, runs
from pipeline.embed import Encoder
from pipeline.settings import Settings


@task(cache_policy=NO_CACHE)
def build_and_switch(
    pool: ConnectionPool, settings: Settings, encoder: Encoder, version: str, reason: str, run_id: str, progress: bool
) -> tuple[refresh.RefreshReport, promote.Move]:
    options = refresh.RefreshOptions.from_settings(settings, progress)
    return promote.promote(pool, settings.tracking_uri, encoder, version, reason, run_id, options, settings.drift)


@task(cache_policy=NO_CACHE)
def move_back(pool: ConnectionPool, settings: Settings, target: str | None, run_id: str) -> promote.Move:
    return promote.rollback(pool, settings.tracking_uri, target, run_id, settings.index_retention)


@flow(name="reindex")
def reindex_flow(version: str, reason: str, settings: Settings | None = None, progress: bool = False) -> dict[str, Any]:
    """Build a version's index beside the live one, make it champion, and switch searches in one transaction."""
    settings = settings or Settings()
    pool = connect(settings)
    encoder = load_encoder(settings, version)
    with runs.recorded(pool, "reindex", {"model_version": version}) as run:
        built, move = build_and_switch(pool, settings, encoder, version, reason, run.run_id, progress)
        run.stats = {**built.as_dict(), "switched_from": move.previous, "move": move.as_dict()}
    create_markdown_artifact(
        report.reindex_line(run.stats) + "\n\n" + report.move_markdown(move.as_dict()),
        key="reindex-report",
        description="index build and switch",
    )
    return run.stats


@flow(name="rollback")
def rollback_flow(version: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Move ``champion`` back to a kept version and switch to its index, embedding nothing."""
    settings = settings or Settings()
    pool = connect(settings)
    with runs.recorded(pool, "rollback", {"target": version}) as run:
        move = move_back(pool, settings, version, run.run_id)
        run.stats = move.as_dict()
    create_markdown_artifact(report.move_markdown(run.stats), key="rollback-report", description="champion moved back")
    return run.stats
