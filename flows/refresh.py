"""The refresh flow: chunk new and changed documents and embed what the champion's index lacks."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from psycopg_pool import ConnectionPool

from infra import database
from pipeline import promote, refresh, registry, report, runs, tracking
from pipeline.embed import Encoder
from pipeline.settings import Settings


@task(cache_policy=NO_CACHE)
def connect(settings: Settings) -> ConnectionPool:
    return database.connect(settings)


@task(cache_policy=NO_CACHE)
def champion_model(settings: Settings) -> registry.ModelRef:
    return registry.champion(
        settings.tracking_uri, settings.mlflow_artifacts, settings.base_model or registry.default_base_model()
    )


@task(cache_policy=NO_CACHE)
def load_encoder(settings: Settings, version: str) -> Encoder:
    return registry.load_encoder(settings.tracking_uri, version, settings.model_cache)


@task(cache_policy=NO_CACHE)
def refresh_index(
    pool: ConnectionPool,
    settings: Settings,
    encoder: Encoder,
    version: str,
    options: refresh.RefreshOptions,
    run_id: str,
    rebuild: bool,
) -> refresh.RefreshReport:
    def still_champion() -> bool:
        return registry.resolve(settings.tracking_uri, registry.CHAMPION) == version

    return refresh.refresh(pool, encoder, version, options, run_id, rebuild, still_champion)


@task(cache_policy=NO_CACHE)
def log_to_mlflow(settings: Settings, result: dict[str, Any]) -> str:
    return tracking.log_run(
        settings.tracking_uri,
        settings.mlflow_artifacts,
        "ragtune-refresh",
        "refresh",
        **report.refresh_mlflow_fields(result),
    )


@flow(name="refresh")
def refresh_flow(settings: Settings | None = None, progress: bool = False, rebuild: bool = False) -> dict[str, Any]:
    """Bring the champion's index up to date (or rebuild it); log counts and timings to MLflow and Prefect."""
    settings = settings or Settings()
    pool = connect(settings)
    model = champion_model(settings)
    encoder = load_encoder(settings, model.version)
    options = refresh.RefreshOptions.from_settings(settings, progress)
    with runs.recorded(pool, "refresh", {"model_version": model.version, "rebuild": rebuild}) as run:
        if model.registered_now:
            promote.record_first_champion(pool, model.version, run.run_id)
        result = refresh_index(pool, settings, encoder, model.version, options, run.run_id, rebuild)
        run.stats = result.as_dict()
    run.stats["mlflow_run_id"] = log_to_mlflow(settings, run.stats)
    create_markdown_artifact(report.refresh_markdown(run.stats), key="refresh-report", description="refresh counts")
    return run.stats
