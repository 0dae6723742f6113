"""The drift flow: compare what arrived since the champion's reference with that reference."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from psycopg_pool import ConnectionPool

from flows.refresh import connect
from pipeline import drift, report, runs
from pipeline.settings import Settings


@task(cache_policy=NO_CACHE)
def measure(pool: ConnectionPool, options: drift.DriftOptions, run_id: str) -> drift.DriftReport:
    return drift.measure(pool, options, run_id)


@task(cache_policy=NO_CACHE)
def log_to_mlflow(settings: Settings, result: drift.DriftReport) -> str:
    return drift.record_in_mlflow(settings.tracking_uri, settings.mlflow_artifacts, result)


@flow(name="drift")
def drift_flow(settings: Settings | None = None) -> dict[str, Any]:
    """Score how far the new chunks are from the champion's reference; record the decision everywhere."""
    settings = settings or Settings()
    pool = connect(settings)
    with runs.recorded(pool, "drift", {"threshold": settings.drift.threshold}) as run:
        result = measure(pool, settings.drift, run.run_id)
        run.stats = {"run_id": run.run_id, **result.as_dict()}
    run.stats["mlflow_run_id"] = log_to_mlflow(settings, result)
    create_markdown_artifact(report.drift_markdown(run.stats), key="drift-report", description="the drift decision")
    return run.stats
