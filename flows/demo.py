"""The demo flow: several simulated nights of a changing documentation source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.ingest import ingest_flow
from infra import database
from pipeline import demo, store
from pipeline.settings import Settings

SOURCE = "python-docs"


@task(cache_policy=NO_CACHE)
def stage_night(corpus: Path, night: int) -> str:
    return demo.stage_night(corpus, night)


@task(cache_policy=NO_CACHE)
def read_status(settings: Settings) -> dict[str, Any]:
    return store.status(database.connect(settings))


@flow(name="demo")
def demo_flow(settings: Settings | None = None, progress: bool = False) -> dict[str, Any]:
    """Ingest the demo corpus night after night, as a scheduled deployment would."""
    settings = settings or Settings()
    corpus = settings.home / "demo" / SOURCE
    nights = []
    for night in range(1, len(demo.NIGHT_STORIES) + 1):
        story = stage_night(corpus, night)
        result = ingest_flow([str(corpus)], source=SOURCE, snapshot=True, settings=settings, progress=progress)
        nights.append({"night": night, "story": story, "ingest": result})
    return {"nights": nights, "status": read_status(settings), "next_steps": next_steps(settings)}


def next_steps(settings: Settings) -> list[str]:
    """Where to look next."""
    home = settings.home.resolve()
    return [
        "next:",
        "  ragtune quarantine list             # the malformed files, each with its reasons",
        "  ragtune status --json               # the same numbers for scripts",
        f"  PREFECT_HOME={home / 'prefect'} .venv/bin/prefect server start   # these runs in the Prefect UI",
    ]
