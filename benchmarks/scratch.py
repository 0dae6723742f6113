"""A throwaway database for a benchmark: on RAGTUNE_DATABASE_URL's server, or an embedded one."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from infra import database
from pipeline.settings import Settings


@contextlib.contextmanager
def scratch_settings(work: Path) -> Iterator[tuple[Settings, str]]:
    """(Settings, database URL) for a fresh database, dropped (and an embedded server stopped) afterwards."""
    base = Settings(home=work / "home")
    maintenance = base.database_url.get_secret_value() if base.database_url else database.database_url(base)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    database.create_database(maintenance, name)
    url = psycopg.conninfo.make_conninfo(maintenance, dbname=name)
    try:
        yield Settings(home=work / "home", database_url=url), url
    finally:
        database.close_pools()
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if base.database_url is None:
            database.stop_embedded(base.pgdata)
