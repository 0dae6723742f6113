"""The refresh flow: chunk new and changed documents and embed what the champion's index lacks.

With RAGTUNE_REFRESH_WORKERS > 1 or RAGTUNE_DASK_ADDRESS set, the embedding is sharded across Dask
workers by the subflow ``embed-shards``; chunking, the refresh lock and the index switch stay here.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from prefect import flow, get_client, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner
from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from infra import database
from pipeline import promote, refresh, registry, report, runs, store, tracking
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
    settings: Settings, version: str, options: refresh.RefreshOptions, run_id: str, rebuild: bool
) -> refresh.RefreshReport:
    # Small, picklable arguments only (no pool, no encoder): Dask ships this task's run context,
    # parameters included, to the workers of a sharded refresh.
    def still_champion() -> bool:
        return registry.resolve(settings.tracking_uri, registry.CHAMPION) == version

    encoder = registry.load_encoder(settings.tracking_uri, version, settings.model_cache)
    embed = sharded_embedder(settings, version) if settings.refresh_workers > 1 or settings.dask_address else None
    pool = database.connect(settings)  # this process's pool: the one the flow records its run with
    return refresh.refresh(pool, encoder, version, options, run_id, rebuild, still_champion, embed)


@task(cache_policy=NO_CACHE)
def embed_shard(
    settings: Settings, version: str, index: store.IndexInfo, shard: int, shards: int, options: refresh.RefreshOptions
) -> refresh.EmbedStats:
    """One shard, in a Dask worker process: its own pool and encoder, its share of the machine's cores."""
    _share_cores()
    encoder = registry.cached_encoder(settings.tracking_uri, version, str(settings.model_cache))
    return refresh.embed_shard(database.connect(settings), encoder, index, shard, shards, options)


@flow(name="embed-shards")
def embed_shards(
    settings: Settings, version: str, index: store.IndexInfo, shards: int, options: refresh.RefreshOptions
) -> list[refresh.EmbedStats]:
    """Embed the chunk texts the index lacks in ``shards`` tasks side by side, on this flow's task runner."""
    futures = [embed_shard.submit(settings, version, index, shard, shards, options) for shard in range(shards)]
    wait(futures)  # every shard commits what it can before one's failure stops the refresh
    return [future.result() for future in futures]


def sharded_embedder(settings: Settings, version: str) -> refresh.Embedder:
    """Embedding for ``refresh``: the ``embed-shards`` subflow on a Dask task runner, one task per shard."""
    # Workers connect themselves, so they get the URL (the embedded server's too), never this process's pool.
    for_workers = settings.model_copy(update={"database_url": SecretStr(database.database_url(settings))})

    def embed(index: store.IndexInfo, missing: int, options: refresh.RefreshOptions) -> list[refresh.EmbedStats]:
        # Each shard reads its own share from the database, a page at a time.
        subflow = embed_shards.with_options(task_runner=dask_task_runner(settings))
        # Workers get the settings with the run context: with this process's API URL in them, an
        # ephemeral API's too, their task runs report here instead of to a temporary API of their own.
        with temporary_settings({PREFECT_API_URL: str(get_client(sync_client=True).api_url)}):
            return subflow(for_workers, version, index, settings.refresh_workers, replace(options, progress=False))

    return embed


def dask_task_runner(settings: Settings) -> TaskRunner[Any]:
    """The existing cluster at ``dask_address``, or a local cluster of ``refresh_workers`` processes."""
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    cluster = {
        "n_workers": settings.refresh_workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},  # its health endpoint on a free port, not 8787
    }
    return DaskTaskRunner(cluster_kwargs=cluster)


def _share_cores() -> None:
    """Give torch this machine's cores divided among the Dask workers on it (Dask's nanny leaves it one)."""
    import torch
    from distributed import get_worker
    from distributed.comm import get_address_host

    worker = get_worker()
    host = get_address_host(worker.address)
    here = sum(get_address_host(address) == host for address in worker.client.scheduler_info()["workers"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // max(1, here)))


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
    options = refresh.RefreshOptions.from_settings(settings, progress)
    with runs.recorded(pool, "refresh", {"model_version": model.version, "rebuild": rebuild}) as run:
        if model.registered_now:
            promote.record_first_champion(pool, model.version, run.run_id)
        result = refresh_index(settings, model.version, options, run.run_id, rebuild)
        run.stats = result.as_dict()
    run.stats["mlflow_run_id"] = log_to_mlflow(settings, run.stats)
    create_markdown_artifact(report.refresh_markdown(run.stats), key="refresh-report", description="refresh counts")
    return run.stats
