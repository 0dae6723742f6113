"""The registry path to the model: MLflow on a temporary store, the packaged base model."""

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline import registry
from pipeline.embed import Encoder

pytestmark = pytest.mark.integration


def test_first_use_registers_the_base_model_as_version_1_champion_once(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = registry.default_base_model()

    first = registry.champion(uri, tmp_path / "artifacts", base)
    again = registry.champion(uri, tmp_path / "artifacts", base)

    assert first.version == again.version == "1"
    client = MlflowClient(tracking_uri=uri)
    assert [str(v.version) for v in client.search_model_versions(f"name='{registry.MODEL_NAME}'")] == ["1"]
    version = client.get_model_version_by_alias(registry.MODEL_NAME, "champion")
    assert str(version.version) == "1" and version.description == "the base model, unchanged"
    assert version.tags["source_dir"] == str(base)
    assert str(tmp_path / "artifacts") in client.get_model_version_download_uri(registry.MODEL_NAME, "1")


def test_the_registered_encoder_embeds_like_the_base_model(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ref = registry.champion(uri, tmp_path / "artifacts", registry.default_base_model())
    through_registry = registry.load_encoder(uri, ref.version, tmp_path / "cache")
    direct = Encoder(registry.default_base_model())
    texts = ["How do I parse JSON?", "Temporary files and directories"]
    assert np.abs(through_registry.encode(texts, bf16=False) - direct.encode(texts, bf16=False)).max() < 1e-6
    assert through_registry.model_dir != direct.model_dir  # weights came from the registry's artifacts
