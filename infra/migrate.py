"""Ordered, idempotent schema migrations, recorded in a version table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")

CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
# Serialises concurrent ragtune processes that start against a fresh database.
LOCK = "SELECT pg_advisory_xact_lock(hashtext('ragtune.migrate'))"
APPLIED = "SELECT version FROM schema_migrations"
RECORD = "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migrations shipped in infra/migrations, in version order."""
    found = []
    for entry in resources.files("infra").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply every migration the database lacks, in one transaction; return the versions applied."""
    applied_now = []
    with conn.transaction():
        conn.execute(LOCK)
        conn.execute(CREATE_VERSION_TABLE)
        done = {row[0] for row in conn.execute(APPLIED)}
        for migration in load_migrations():
            if migration.version in done:
                continue
            conn.execute(migration.sql.encode())
            conn.execute(RECORD, (migration.version, migration.name))
            applied_now.append(migration.version)
    return applied_now
