"""MLflow runs for ragtune's stages, through the client API (no global tracking state)."""

from __future__ import annotations

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
