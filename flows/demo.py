"""The demo flow: several nights of a changing documentation source, each one the real nightly flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.nightly import nightly_flow
from infra import database
from pipeline import demo, retrieve, store
from pipeline.settings import Settings

SOURCE = "docs"
QUERIES = ("how do I parse JSON text into Python objects", "run a command in a child process and read its output")
# Asked of the previous champion and the new one once the domain has shifted.
SHIFT_QUERIES = ("cluster samples into k groups by distance to centroids", "lower the learning rate every few epochs")


@task(cache_policy=NO_CACHE)
def stage_night(corpus: Path, night: int) -> str:
    return demo.stage_night(corpus, night)


@task(cache_policy=NO_CACHE)
def read_status(settings: Settings) -> dict[str, Any]:
    return store.status(database.connect(settings))


@task(cache_policy=NO_CACHE)
def search_with(settings: Settings, version: str, queries: tuple[str, ...]) -> list[dict[str, Any]]:
    """Search with one model version and its own index (a kept one, after a switch)."""
    pool = database.connect(settings)
    found = {
        q: retrieve.search_version(pool, settings.tracking_uri, settings.model_cache, version, q, 3) for q in queries
    }
    return [{"query": q, "model_version": version, "hits": [h.as_dict() for h in hits]} for q, hits in found.items()]


@flow(name="demo")
def demo_flow(settings: Settings | None = None, progress: bool = False, nights: int = 4) -> dict[str, Any]:
    """Play the nights through the nightly flow, as the scheduled deployment would run them."""
    settings = settings or Settings()
    corpus = settings.home / "demo" / SOURCE
    played = []
    for night in range(1, min(nights, len(demo.NIGHT_STORIES)) + 1):
        story = stage_night(corpus, night)
        played.append({"night": night, "story": story, **nightly_flow([str(corpus)], settings, progress)})
    champion = played[-1]["refresh"]["model_version"]
    result: dict[str, Any] = {"nights": played, "searches": search_with(settings, champion, QUERIES)}
    tuned = played[-1]["finetune"]
    if tuned["trained"] and tuned["promoted"]:
        result["shift_searches"] = {
            "before": search_with(settings, tuned["parent_version"], SHIFT_QUERIES),
            "after": search_with(settings, tuned["model_version"], SHIFT_QUERIES),
        }
    result["status"] = read_status(settings)
    result["next_steps"] = next_steps(settings)
    return result


def next_steps(settings: Settings) -> list[str]:
    """Where to look next."""
    home = settings.home.resolve()
    return [
        "next:",
        "  ragtune quarantine list             # the malformed files, each with its reasons",
        "  ragtune search 'read a CSV file'    # search the index, with sources",
        "  ragtune drift --json                # the latest drift check, for scripts",
        "  ragtune rollback                    # back to the previous champion and its kept index",
        f"  PREFECT_HOME={home / 'prefect'} .venv/bin/prefect server start",
        "      # then http://127.0.0.1:4200: each night is a `nightly` run with its stages as subflows,",
        "      # and the reports (ingest, refresh, drift, finetune, nightly) under Artifacts",
        f"  .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}",
        "      # then http://127.0.0.1:5000: experiments ragtune-drift and ragtune-finetune (plots under",
        "      # Artifacts), and the registry's ragtune-encoder with its champion alias",
    ]
