"""The finetune flow: train a LoRA challenger, judge it against the champion, promote it only if it wins."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from psycopg_pool import ConnectionPool

from flows.refresh import champion_model, connect, load_encoder
from flows.reindex import reindex_flow
from pipeline import finetune, registry, report, runs, tracking
from pipeline.embed import Encoder
from pipeline.gate import Decision
from pipeline.settings import Settings
from pipeline.train import TrainResult


@task(cache_policy=NO_CACHE)
def should_train(pool: ConnectionPool) -> tuple[bool, str]:
    return finetune.should_train(pool)


@task(cache_policy=NO_CACHE)
def gather(pool: ConnectionPool, settings: Settings) -> finetune.Corpus:
    return finetune.gather(pool, settings.pairs)


@task(cache_policy=NO_CACHE)
def champion_weights(settings: Settings, version: str) -> Path:
    return registry.model_dir(settings.tracking_uri, version, settings.model_cache)


@task(cache_policy=NO_CACHE)
def start_mlflow_run(settings: Settings, parent: str, corpus: finetune.Corpus) -> str:
    params = {**settings.finetune.model_dump(), **settings.pairs.model_dump(), **settings.gate.model_dump()}
    params |= {"parent_version": parent, **corpus.data.stats}
    return tracking.start_run(
        settings.tracking_uri, settings.mlflow_artifacts, "ragtune-finetune", "finetune", params, {}
    )


@task(cache_policy=NO_CACHE)
def train(
    settings: Settings, base_dir: Path, corpus: finetune.Corpus, workdir: Path, mlflow_run: str, progress: bool
) -> TrainResult:
    def log_loss(step: int, total: int, loss: float) -> None:
        tracking.log_metric(settings.tracking_uri, mlflow_run, "loss", loss, step)

    return finetune.train(base_dir, corpus, settings.finetune, workdir, settings.precision, progress, log_loss)


@task(cache_policy=NO_CACHE)
def register_challenger(
    settings: Settings, trained: TrainResult, corpus: finetune.Corpus, parent: str, mlflow_run: str
) -> str:
    return finetune.register_challenger(
        settings.tracking_uri, settings.mlflow_artifacts, trained, corpus, parent, mlflow_run
    )


@task(cache_policy=NO_CACHE)
def judge(
    settings: Settings, champion: Encoder, trained: TrainResult, corpus: finetune.Corpus, progress: bool
) -> tuple[dict[str, Any], dict[str, Any], Decision]:
    return finetune.judge(
        champion, trained, corpus, settings.gate, settings.eval_queries, settings.pairs.seed, progress
    )


@task(cache_policy=NO_CACHE)
def record_decision(
    settings: Settings, result: dict[str, Any], trained: TrainResult, corpus: finetune.Corpus, mlflow_run: str
) -> None:
    finetune.record_decision(settings.tracking_uri, result, trained, corpus, mlflow_run, trained.adapter_dir.parent)


@flow(name="finetune")
def finetune_flow(force: bool = False, settings: Settings | None = None, progress: bool = False) -> dict[str, Any]:
    """Train a challenger on pairs mined from the corpus; promote it and switch the index only if it wins."""
    settings = settings or Settings()
    started = time.perf_counter()
    pool = connect(settings)
    go, why = (True, "forced with --force") if force else should_train(pool)
    if not go:
        return _skipped(why)
    parent = champion_model(settings).version
    with runs.recorded(pool, "finetune", {"parent_version": parent, "force": force}) as run:
        corpus = gather(pool, settings)
        mlflow_run = start_mlflow_run(settings, parent, corpus)
        with tracking.failed_on_error(settings.tracking_uri, mlflow_run):  # not left RUNNING in the UI
            workdir = finetune.workdir(settings.home / "finetune")
            trained = train(settings, champion_weights(settings, parent), corpus, workdir, mlflow_run, progress)
            version = register_challenger(settings, trained, corpus, parent, mlflow_run)
            ours, theirs, decision = judge(settings, load_encoder(settings, parent), trained, corpus, progress)
            result = finetune.outcome(version, parent, ours, theirs, decision, trained, corpus, mlflow_run, why)
            record_decision(settings, result, trained, corpus, mlflow_run)
        if decision.promote:
            result["reindex"] = reindex_flow(version, decision.reason, settings, progress)
        result["seconds"] = time.perf_counter() - started
        run.stats = result
    create_markdown_artifact(report.finetune_markdown(result), key="finetune-report", description="the gate's decision")
    return result


def _skipped(why: str) -> dict[str, Any]:
    result = finetune.skipped(why)
    create_markdown_artifact(report.finetune_markdown(result), key="finetune-report", description="no fine-tune")
    return result
