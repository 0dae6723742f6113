"""The store itself: migrations, the embedded server's lifecycle, status on an empty store."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from infra import database
from infra.migrate import load_migrations, migrate
from pipeline import store
from pipeline.errors import DatabaseUnavailable
from pipeline.settings import Settings

pytestmark = pytest.mark.integration


def test_migrations_are_ordered_recorded_and_idempotent(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert migrate(conn) == []  # the template already has them all
        applied = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert applied == [m.version for m in load_migrations()] == sorted(applied)
    assert {
        "documents",
        "chunks",
        "quarantine",
        "runs",
        "model_indexes",
        "active_index",
        "alias_history",
        "drift_reports",
    } <= tables


def test_status_of_an_empty_store_has_every_key_with_zeros_and_nulls(settings):
    assert store.status(database.connect(settings)) == {
        "documents": 0,
        "tombstoned": 0,
        "chunks": 0,
        "vectors": 0,
        "quarantined": 0,
        "champion_version": None,
        "active_index": None,
        "indexes": [],
        "last_runs": [],
    }


def test_pool_connections_know_the_vector_type(settings):
    import numpy as np
    from pgvector import Vector

    with database.connect(settings).connection() as conn:
        value = conn.execute("SELECT %s::vector", (np.array([1.0, 2.0], dtype=np.float32),)).fetchone()[0]
    assert isinstance(value, Vector) and value.to_list() == [1.0, 2.0]


def test_an_unreachable_database_url_gives_a_clear_error_without_the_password(tmp_path):
    settings = Settings(home=tmp_path, database_url=f"postgresql://app:hunter2@/rag?host={tmp_path}&connect_timeout=2")
    with pytest.raises(DatabaseUnavailable) as error:
        database.connect(settings)
    message = str(error.value)
    assert message.startswith("cannot connect to the database at postgresql://app:***@/rag")
    assert "hunter2" not in message and "RAGTUNE_DATABASE_URL" in message


def ragtune(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGTUNE_", "XDG_RUNTIME_DIR"))}
    env["RAGTUNE_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "ragtune", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_embedded_server_starts_once_for_concurrent_processes_and_stops_on_request(tmp_path):
    home = tmp_path / "home"
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: ragtune(home, "status", "--json"), range(3)))
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert all(json.loads(r.stdout)["documents"] == 0 for r in results)

    stopped = ragtune(home, "db", "stop", "--json")
    assert json.loads(stopped.stdout) == {"stopped": True, "pgdata": str((home / "pgdata").resolve())}
    assert json.loads(ragtune(home, "db", "stop", "--json").stdout)["stopped"] is False
    assert ragtune(home, "status").returncode == 0  # started again on demand
    ragtune(home, "db", "stop")
