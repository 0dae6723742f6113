"""`ragtune finetune` and `ragtune rollback` as a user runs them, and a fine-tune killed mid-training."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import domain
from tests.support.tiny import TINY_FINETUNE, build_tiny_bert

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def env(prefect_api, database_url, tmp_path, tiny_model) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGTUNE_", "MLFLOW_TRACKING"))}
    env.update(
        RAGTUNE_HOME=str(tmp_path / "home"),
        RAGTUNE_DATABASE_URL=database_url,
        PREFECT_API_URL=prefect_api,
        RAGTUNE_BASE_MODEL=str(tiny_model),
        RAGTUNE_PRECISION="fp32",
        RAGTUNE_FINETUNE__EPOCHS=str(TINY_FINETUNE.epochs),
        RAGTUNE_FINETUNE__LEARNING_RATE=str(TINY_FINETUNE.learning_rate),
        RAGTUNE_FINETUNE__LORA_R=str(TINY_FINETUNE.lora_r),
        RAGTUNE_FINETUNE__TARGET_MODULES=json.dumps(list(TINY_FINETUNE.target_modules)),
    )
    return env


def ragtune(env: dict[str, str], *args: str, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragtune", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def ok_json(env: dict[str, str], *args: str) -> dict:
    result = ragtune(env, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def indexed(env, tmp_path) -> dict[str, str]:
    ok_json(env, "ingest", str(domain.write_pages(tmp_path / "manual")))
    ok_json(env, "refresh")
    return env


def test_finetune_promotes_then_rollback_goes_back_with_the_contract_keys(indexed):
    skipped = ok_json(indexed, "finetune")
    assert (skipped["trained"], skipped["promoted"]) == (False, False)

    tuned = ok_json(indexed, "finetune", "--force")
    assert {"trained", "model_version", "metrics", "champion_metrics", "promoted", "reason"} <= tuned.keys()
    assert (tuned["trained"], tuned["promoted"], tuned["model_version"]) == (True, True, "2")
    assert tuned["metrics"]["heldout"]["ndcg@10"] > tuned["champion_metrics"]["heldout"]["ndcg@10"]
    status = ok_json(indexed, "status")
    assert (status["champion_version"], status["active_index"]) == ("2", "vectors_v2")
    assert [(i["model_version"], i["status"]) for i in status["indexes"]] == [("1", "retired"), ("2", "ready")]
    assert "kept for rollback: vectors_v1 (retired)" in ragtune(indexed, "status").stdout

    human = ragtune(indexed, "rollback")
    assert human.returncode == 0, human.stderr
    assert "champion: version 2 -> 1 (rollback from version 2)" in human.stdout
    assert "nothing was embedded" in human.stdout
    status = ok_json(indexed, "status")
    assert (status["champion_version"], status["active_index"]) == ("1", "vectors_v1")
    assert ok_json(indexed, "search", "zorvane gallop")["results"]


def test_rollback_to_an_unknown_version_is_a_one_line_error(indexed):
    result = ragtune(indexed, "rollback", "7")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ragtune: error: ragtune-encoder has no version or alias '7'; see the MLflow registry, or use 'champion'"
    )
    first = ragtune(indexed, "rollback")
    assert first.returncode == 2 and "no earlier champion to roll back to" in first.stderr


def test_a_fine_tune_killed_during_training_leaves_champion_and_index_untouched(indexed, tmp_path):
    endless = {**indexed, "RAGTUNE_FINETUNE__MAX_STEPS": "100000"}
    victim = subprocess.Popen(
        [sys.executable, "-m", "ragtune", "finetune", "--force", "--json"],
        env=endless,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mlflow_db = tmp_path / "home" / "mlflow.db"
    deadline = time.monotonic() + 180
    while _logged_losses(mlflow_db) < 3:  # well into the training loop
        assert victim.poll() is None and time.monotonic() < deadline, "training never started"
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    status = ok_json(indexed, "status")
    assert (status["champion_version"], status["active_index"]) == ("1", "vectors_v1")
    with sqlite3.connect(mlflow_db) as db:
        assert db.execute("SELECT count(*) FROM model_versions").fetchone()[0] == 1  # no challenger registered
    assert ok_json(indexed, "search", "skarn stall")["results"]

    rerun = ok_json(indexed, "finetune", "--force")
    assert (rerun["trained"], rerun["model_version"]) == (True, "2")


def _logged_losses(mlflow_db: Path) -> int:
    if not mlflow_db.exists():
        return 0
    try:
        with sqlite3.connect(mlflow_db, timeout=1) as db:
            return db.execute("SELECT count(*) FROM metrics WHERE key = 'loss'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet, or a writer holds the lock
        return 0
