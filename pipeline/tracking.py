"""MLflow runs for ragtune's stages, through the client API (no global tracking state)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag


def experiment_id(client: MlflowClient, name: str, artifact_root: Path) -> str:
    """The experiment's id, created with its artifacts under ragtune's root if new."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    # Explicit artifact location: MLflow's default is ./mlruns under whatever the cwd is.
    return str(client.create_experiment(name, artifact_location=(artifact_root / name).resolve().as_uri()))


def log_run(
    tracking_uri: str,
    artifact_root: Path,
    experiment: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> str:
    """Record one finished stage as an MLflow run; return its id."""
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.create_run(experiment_id(client, experiment, artifact_root), run_name=run_name, tags=tags)
    client.log_batch(
        run.info.run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def start_run(
    tracking_uri: str, artifact_root: Path, experiment: str, run_name: str, params: dict[str, Any], tags: dict[str, str]
) -> str:
    """Open a run that later steps log into (per-step metrics, artifacts); return its id."""
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.create_run(experiment_id(client, experiment, artifact_root), run_name=run_name, tags=tags)
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return str(run.info.run_id)


def log_metric(tracking_uri: str, run_id: str, key: str, value: float, step: int) -> None:
    """One metric value at a step (a training loss, say)."""
    MlflowClient(tracking_uri=tracking_uri).log_metric(run_id, key, value, step=step)


def finish_run(
    tracking_uri: str,
    run_id: str,
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts: dict[str, Path],
    status: str = "FINISHED",
) -> None:
    """Log a run's closing metrics, tags and artifacts (name -> file or directory), then end it."""
    client = MlflowClient(tracking_uri=tracking_uri)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    for name, path in artifacts.items():
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=name)
        else:
            client.log_artifact(run_id, str(path), artifact_path=name)
    client.set_terminated(run_id, status=status)


@contextlib.contextmanager
def failed_on_error(tracking_uri: str, run_id: str) -> Iterator[None]:
    """Mark an open run FAILED if the block raises, so the MLflow UI does not show it running forever."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            MlflowClient(tracking_uri=tracking_uri).set_terminated(run_id, status="FAILED")
        raise
