"""The ingest flow: read sources, validate every batch with GX, upsert documents, quarantine the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from psycopg_pool import ConnectionPool

from infra import database
from pipeline import ingest, report, runs, sources
from pipeline.settings import Settings
from pipeline.validate import Validator


@task(cache_policy=NO_CACHE)
def open_sources(paths: list[str], name: str | None) -> list[sources.Source]:
    return sources.open_sources([Path(p) for p in paths], name)


@task(cache_policy=NO_CACHE)
def connect(settings: Settings) -> ConnectionPool:
    return database.connect(settings)


@task(cache_policy=NO_CACHE)
def make_validator(settings: Settings) -> Validator:
    return Validator(settings.validation, settings.data_docs_dir)


@task(cache_policy=NO_CACHE)
def ingest_sources(
    pool: ConnectionPool, found: list[sources.Source], validator: Validator, options: ingest.IngestOptions, run_id: str
) -> ingest.IngestReport:
    return ingest.ingest(pool, found, validator, options, run_id)


@task(cache_policy=NO_CACHE)
def build_data_docs(validator: Validator) -> str | None:
    index = validator.build_data_docs()
    return str(index) if index else None


@flow(name="ingest")
def ingest_flow(
    paths: list[str],
    source: str | None = None,
    snapshot: bool = False,
    settings: Settings | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Ingest and validate the given sources; publish the counts as a markdown artifact."""
    settings = settings or Settings()
    found = open_sources(paths, source)
    pool = connect(settings)
    validator = make_validator(settings)
    options = ingest.IngestOptions.from_settings(settings, snapshot=snapshot, progress=progress)
    with runs.recorded(pool, "ingest", {"paths": paths, "source": source, "snapshot": snapshot}) as run:
        result = ingest_sources(pool, found, validator, options, run.run_id)
        result.data_docs = build_data_docs(validator)
        run.stats = result.as_dict()
    create_markdown_artifact(report.ingest_markdown(run.stats), key="ingest-report", description="ingest counts")
    return run.stats
