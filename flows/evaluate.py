"""The eval flow: retrieval metrics of a model version's index on a query set, logged to MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from psycopg_pool import ConnectionPool

from infra import database
from pipeline import evaluate, registry, report, retrieve, store, tracking
from pipeline.embed import Encoder
from pipeline.settings import Settings


@task(cache_policy=NO_CACHE)
def connect(settings: Settings) -> ConnectionPool:
    return database.connect(settings)


@task(cache_policy=NO_CACHE)
def resolve_version(settings: Settings, alias_or_version: str) -> str:
    return registry.resolve(settings.tracking_uri, alias_or_version)


@task(cache_policy=NO_CACHE)
def index_of_version(pool: ConnectionPool, version: str) -> store.IndexInfo:
    return retrieve.index_of_version(pool, version)


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
    pool = connect(settings)
    index = index_of_version(pool, resolve_version(settings, model))
    encoder = load_encoder(settings, index.model_version)
    result = score(pool, encoder, index, Path(queries), per_query)
    result["mlflow_run_id"] = log_to_mlflow(settings, result, Path(queries))
    create_markdown_artifact(report.eval_markdown(result), key="eval-report", description="retrieval metrics")
    return result
