"""The registry path to the model: MLflow on a temporary store, the packaged base model."""

import os
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


def test_registering_leaves_no_tracking_uri_behind_for_later_settings(tmp_path: Path, monkeypatch):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; a second Settings in the same process
    # (a served deployment, a test session) must still read its own store, not ./mlflow.db.
    from pipeline.settings import Settings

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    registry.champion(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "artifacts", registry.default_base_model())

    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert Settings(home=tmp_path / "home").tracking_uri == f"sqlite:///{(tmp_path / 'home' / 'mlflow.db').resolve()}"
    assert not (tmp_path / "mlflow.db").exists()
