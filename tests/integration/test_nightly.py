"""The nightly flow end to end on real PostgreSQL, MLflow and Prefect, with a tiny model."""

from pathlib import Path

import psycopg
import pytest

from flows.nightly import LOCK, nightly_flow
from infra import database
from pipeline import store
from pipeline.drift import DriftOptions
from pipeline.errors import UserError
from pipeline.settings import NightlyOptions, Settings
from tests.integration.test_finetune import latest_artifact
from tests.support import domain
from tests.support.tiny import TINY_FINETUNE, build_tiny_bert

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def env(settings: Settings, tiny_model: Path, prefect_api) -> Settings:
    return settings.model_copy(
        update={
            "base_model": tiny_model,
            "precision": "fp32",
            "finetune": TINY_FINETUNE,
            "nightly": NightlyOptions(retry_delay_seconds=0),
        }
    )


def test_two_nights_on_an_unchanged_source_embed_once_and_find_no_drift(env, tmp_path):
    manual = str(domain.write_pages(tmp_path / "manual"))

    first = nightly_flow([manual], settings=env)
    second = nightly_flow([manual], settings=env)

    assert first["ingest"][0]["inserted"] == len(domain.pages()) and first["refresh"]["embedded"] > 0
    assert first["drift"]["details"]["reference_taken_now"] and not first["drift"]["drifted"]
    assert first["finetune"]["trained"] is False
    assert second["ingest"][0]["unchanged"] == len(domain.pages())
    assert second["refresh"]["embedded"] == 0
    assert second["drift"]["drifted"] is False and second["drift"]["n_current"] == 0
    assert second["finetune"] == {"trained": False, "reason": f"no drift: {second['drift']['reason']}"}
    assert "| refresh | 0 embedded" in latest_artifact("nightly-report")


def test_a_shift_in_the_data_runs_the_whole_loop_to_a_new_champion(env, tmp_path):
    """Night 1: one product line's manual. Night 2: the other lines' pages arrive: drift, fine-tune, switch."""
    manual = domain.write_pages(tmp_path / "manual")
    for page in sorted(manual.iterdir())[24:]:
        page.unlink()  # night 1 knows three parts of the machine
    # The manual is small and the model tiny and random: fewer new chunks, a lower bar for the score.
    settings = env.model_copy(update={"drift": DriftOptions(min_samples=20, threshold=0.6)})

    nightly_flow([str(manual)], settings=settings)
    domain.write_pages(manual)  # night 2: the other seven parts arrive
    shifted = nightly_flow([str(manual)], settings=settings)

    assert shifted["drift"]["drifted"], shifted["drift"]["reason"]
    assert shifted["finetune"]["trained"] and shifted["finetune"]["promoted"], shifted["finetune"]["reason"]
    assert shifted["finetune"]["reindex"]["switched_from"] == "1"
    pool = database.connect(settings)
    with pool.connection() as conn:
        assert store.active_index(conn).model_version == "2"


def test_a_second_nightly_run_finds_the_lock_and_does_nothing(env, tmp_path):
    manual = str(domain.write_pages(tmp_path / "manual"))
    with psycopg.connect(database.database_url(env), autocommit=True) as other:
        assert store.try_lock(other, LOCK)  # a nightly run in progress elsewhere

        result = nightly_flow([manual], settings=env)

    assert result == {"skipped": True, "reason": "another nightly run holds the lock; this one did nothing"}
    pool = database.connect(env)
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0
    assert nightly_flow([manual], settings=env)["skipped"] is False  # the lock went with its session


def test_a_dropped_database_connection_is_retried(env, tmp_path):
    manual = str(domain.write_pages(tmp_path / "manual"))
    pool = database.connect(env)  # the pool the stages share
    with pool.connection() as conn:
        conn.execute("SELECT 1")  # now it holds an idle connection, which the server is about to drop
    with psycopg.connect(database.database_url(env), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    assert killed >= 1

    result = nightly_flow([manual], settings=env)

    assert result["ingest"][0]["inserted"] == len(domain.pages())
    assert result["refresh"]["embedded"] > 0
    (retry,) = result["retries"]
    assert retry["stage"] == "ingest" and "terminating connection" in retry["error"]


def test_no_sources_is_a_clear_error(env):
    with pytest.raises(UserError, match=r"nightly\.sources"):
        nightly_flow(None, settings=env)
