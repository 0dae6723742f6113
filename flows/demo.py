"""The demo flow: several simulated nights of a changing documentation source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

import pipeline
from flows.ingest import ingest_flow
from flows.refresh import refresh_flow
from infra import database
from pipeline import demo, store
from pipeline.settings import Settings

SOURCE = "python-docs"
QUERIES = ("how do I parse JSON text into Python objects", "run a command in a child process and read its output")


@task(cache_policy=NO_CACHE)
def stage_night(corpus: Path, night: int) -> str:
    return demo.stage_night(corpus, night)


@task(cache_policy=NO_CACHE)
def read_status(settings: Settings) -> dict[str, Any]:
    return store.status(database.connect(settings))


@task(cache_policy=NO_CACHE)
def search_examples(settings: Settings) -> list[dict[str, Any]]:
    return [{"query": q, "hits": [hit.as_dict() for hit in pipeline.search(q, 3, settings)]} for q in QUERIES]


@flow(name="demo")
def demo_flow(settings: Settings | None = None, progress: bool = False) -> dict[str, Any]:
    """Ingest the demo corpus night after night, as a scheduled deployment would."""
    settings = settings or Settings()
    corpus = settings.home / "demo" / SOURCE
    nights = []
    for night in range(1, len(demo.NIGHT_STORIES) + 1):
        story = stage_night(corpus, night)
        ingested = ingest_flow([str(corpus)], source=SOURCE, snapshot=True, settings=settings, progress=progress)
        refreshed = refresh_flow(settings=settings, progress=progress)
        nights.append({"night": night, "story": story, "ingest": ingested, "refresh": refreshed})
    return {
        "nights": nights,
        "searches": search_examples(settings),
        "status": read_status(settings),
        "next_steps": next_steps(settings),
    }


def next_steps(settings: Settings) -> list[str]:
    """Where to look next."""
    home = settings.home.resolve()
    return [
        "next:",
        "  ragtune quarantine list             # the malformed files, each with its reasons",
        "  ragtune search 'read a CSV file'    # search the index, with sources",
        "  ragtune status --json               # the same numbers for scripts",
        f"  PREFECT_HOME={home / 'prefect'} .venv/bin/prefect server start   # these runs in the Prefect UI",
        f"  .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}   # the registry and refresh runs",
    ]
