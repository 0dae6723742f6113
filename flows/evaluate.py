"""The eval flow: retrieval metrics of a model version's index on a query set, logged to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from psycopg_pool import ConnectionPool

from infra import database
from pipeline import evaluate, registry, report, store, tracking
from pipeline.embed import Encoder
from pipeline.errors import UserError
from pipeline.settings import Settings


@task(cache_policy=NO_CACHE)
def index_for(settings: Settings, alias_or_version: str) -> tuple[ConnectionPool, store.IndexInfo]:
    pool = database.connect(settings)
    version = registry.resolve(settings.tracking_uri, alias_or_version)
    with pool.connection() as conn:
        index = store.index_of(conn, version)
    if index is None:
        raise UserError(f"model version {version} has no index yet: run `ragtune refresh` while it is champion")
    return pool, index


@task(cache_policy=NO_CACHE)
def load_encoder(settings: Settings, version: str) -> Encoder:
    return registry.load_encoder(settings.tracking_uri, version, settings.model_cache)


@task(cache_policy=NO_CACHE)
def score(
    pool: ConnectionPool, encoder: Encoder, index: store.IndexInfo, queries: Path, per_query: bool
) -> dict[str, Any]:
    return evaluate.evaluate(pool, encoder, index, evaluate.load_queries(queries), per_query)


@task(cache_policy=NO_CACHE)
def log_to_mlflow(settings: Settings, result: dict[str, Any], queries: Path) -> str:
    return tracking.log_run(
        settings.tracking_uri,
        settings.mlflow_artifacts,
        "ragtune-eval",
        "eval",
        **report.eval_mlflow_fields(result, queries),
    )


@flow(name="eval")
def eval_flow(
    queries: str, model: str = "champion", per_query: bool = False, settings: Settings | None = None
) -> dict[str, Any]:
    """Score a model version's index on a query file."""
    settings = settings or Settings()
    evaluate.load_queries(Path(queries))  # a bad query file stops the flow before any model loads
    pool, index = index_for(settings, model)
    encoder = load_encoder(settings, index.model_version)
    result = score(pool, encoder, index, Path(queries), per_query)
    result["mlflow_run_id"] = log_to_mlflow(settings, result, Path(queries))
    create_markdown_artifact(report.eval_markdown(result), key="eval-report", description="retrieval metrics")
    return result
