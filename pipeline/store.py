"""Every SQL statement ragtune runs against its store; values always travel as parameters."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

START_RUN = "INSERT INTO runs (run_id, kind, status, params) VALUES (%s, %s, 'running', %s)"
FINISH_RUN = """
UPDATE runs SET status = %(status)s, finished_at = now(), stats = %(stats)s, error = %(error)s
WHERE run_id = %(run_id)s
"""

# Staging tables live only for the ingest transaction.
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ingest_batch (
    source text, doc_id text, title text, text text, metadata jsonb, content_hash text
) ON COMMIT DROP;
CREATE TEMP TABLE IF NOT EXISTS ingest_seen (
    source text, doc_id text, PRIMARY KEY (source, doc_id)
) ON COMMIT DROP
"""
CLEAR_BATCH = "TRUNCATE ingest_batch"
COPY_BATCH = "COPY ingest_batch (source, doc_id, title, text, metadata, content_hash) FROM STDIN"
SEEN_BEFORE = "SELECT doc_id FROM ingest_seen WHERE source = %s AND doc_id = ANY(%s)"
MARK_SEEN = "INSERT INTO ingest_seen (source, doc_id) SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING"
# A changed document, or one coming back after a tombstone, gets a new version.
UPDATE_CHANGED = """
UPDATE documents d
SET title = b.title, text = b.text, metadata = b.metadata, content_hash = b.content_hash,
    version = d.version + 1, updated_at = now(), deleted_at = NULL, run_id = %(run_id)s
FROM ingest_batch b
WHERE d.source = b.source AND d.doc_id = b.doc_id
  AND (d.content_hash <> b.content_hash OR d.deleted_at IS NOT NULL)
"""
INSERT_NEW = """
INSERT INTO documents (source, doc_id, title, text, metadata, content_hash, run_id)
SELECT source, doc_id, title, text, metadata, content_hash, %(run_id)s FROM ingest_batch
ON CONFLICT (source, doc_id) DO NOTHING
"""
TOMBSTONE_MISSING = """
UPDATE documents d SET deleted_at = now(), updated_at = now(), run_id = %(run_id)s
WHERE d.source = %(source)s AND d.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM ingest_seen s WHERE s.source = d.source AND s.doc_id = d.doc_id)
"""
INSERT_QUARANTINE = """
INSERT INTO quarantine (run_id, source, doc_id, origin, reasons, raw) VALUES (%s, %s, %s, %s, %s, %s)
"""
LIST_QUARANTINE = """
SELECT q.source, q.doc_id AS id, q.origin, q.reasons, q.run_id, q.created_at
FROM quarantine q
WHERE (%(run_id)s::uuid IS NULL OR q.run_id = %(run_id)s::uuid)
  AND (%(all)s OR q.quarantine_id IN (SELECT quarantine_id FROM current_quarantine))  -- see 0002
ORDER BY q.quarantine_id DESC
LIMIT %(limit)s
"""
COUNT_DOCUMENTS = """
SELECT count(*) FILTER (WHERE deleted_at IS NULL) AS documents,
       count(*) FILTER (WHERE deleted_at IS NOT NULL) AS tombstoned
FROM documents
"""
COUNT_CHUNKS = "SELECT count(*) FROM chunks"
COUNT_QUARANTINE = "SELECT count(*) FROM current_quarantine"
ACTIVE_INDEX = """
SELECT a.model_version, m.table_name
FROM active_index a JOIN model_indexes m USING (model_version)
"""
CHAMPION = "SELECT version FROM alias_history WHERE alias = 'champion' ORDER BY change_id DESC LIMIT 1"
LAST_RUNS = """
SELECT run_id, kind, status, started_at, finished_at, stats, error
FROM runs ORDER BY started_at DESC LIMIT %s
"""
GET_DOCUMENT = """
SELECT source, doc_id, title, text, metadata, content_hash, version, created_at, updated_at, deleted_at
FROM documents WHERE source = %s AND doc_id = %s
"""


@dataclass(frozen=True)
class DocumentRow:
    """A validated document, ready to be written."""

    source: str
    doc_id: str
    title: str | None
    text: str
    metadata: dict[str, Any]
    content_hash: str


@dataclass(frozen=True)
class QuarantineRow:
    """A row validation held back, with every reason."""

    source: str
    doc_id: str | None
    origin: str
    reasons: list[dict[str, str]]
    raw: str


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int
    unchanged: int


@contextmanager
def transaction(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """A connection whose work commits together at the end of the block, or not at all."""
    with pool.connection() as conn, conn.transaction():
        yield conn


def start_run(pool: ConnectionPool, kind: str, params: dict[str, Any]) -> str:
    """Record a run as started (committed at once, so a crash leaves a trace) and return its id."""
    run_id = str(uuid.uuid4())
    with transaction(pool) as conn:
        conn.execute(START_RUN, (run_id, kind, Jsonb(params)))
    return run_id


def finish_run(pool: ConnectionPool, run_id: str, status: str, stats: dict[str, Any], error: str | None = None) -> None:
    """Record how a run ended: succeeded, failed or refused."""
    with transaction(pool) as conn:
        conn.execute(FINISH_RUN, {"run_id": run_id, "status": status, "stats": Jsonb(stats), "error": error})


def prepare_ingest(conn: psycopg.Connection) -> None:
    """Create the staging tables of one ingest transaction."""
    conn.execute(CREATE_STAGING)


def seen_before(conn: psycopg.Connection, source: str, doc_ids: Sequence[str]) -> set[str]:
    """Which of these ids this ingest transaction has already read for the source."""
    return {row[0] for row in conn.execute(SEEN_BEFORE, (source, list(doc_ids)))}


def mark_seen(conn: psycopg.Connection, source: str, doc_ids: Sequence[str]) -> None:
    """Remember ids present in the source, so a snapshot does not tombstone them."""
    conn.execute(MARK_SEEN, (source, list(doc_ids)))


def upsert_documents(conn: psycopg.Connection, docs: Sequence[DocumentRow], run_id: str) -> UpsertCounts:
    """Insert new documents and new versions of changed ones; leave unchanged ones untouched."""
    if not docs:
        return UpsertCounts(0, 0, 0)
    conn.execute(CLEAR_BATCH)
    with conn.cursor() as cur, cur.copy(COPY_BATCH) as copy:
        for d in docs:
            copy.write_row((d.source, d.doc_id, d.title, d.text, json.dumps(d.metadata), d.content_hash))
    updated = conn.execute(UPDATE_CHANGED, {"run_id": run_id}).rowcount
    inserted = conn.execute(INSERT_NEW, {"run_id": run_id}).rowcount
    mark_seen(conn, docs[0].source, [d.doc_id for d in docs])
    return UpsertCounts(inserted=inserted, updated=updated, unchanged=len(docs) - inserted - updated)


def tombstone_missing(conn: psycopg.Connection, source: str, run_id: str) -> int:
    """Soft-delete the source's live documents this ingest did not see; return how many."""
    return conn.execute(TOMBSTONE_MISSING, {"source": source, "run_id": run_id}).rowcount


def quarantine(conn: psycopg.Connection, run_id: str, rows: Sequence[QuarantineRow]) -> None:
    """Keep rejected rows with their reasons."""
    with conn.cursor() as cur:
        cur.executemany(
            INSERT_QUARANTINE,
            [(run_id, r.source, r.doc_id, r.origin, Jsonb(r.reasons), r.raw) for r in rows],
        )


def list_quarantine(
    pool: ConnectionPool, run_id: str | None = None, limit: int = 100, everything: bool = False
) -> list[dict[str, Any]]:
    """Rows held back now (or, with ``everything``, ever), newest first, ready for JSON."""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(LIST_QUARANTINE, {"run_id": run_id, "limit": limit, "all": everything}).fetchall()
    return [_jsonable(row) for row in rows]


def get_document(pool: ConnectionPool, source: str, doc_id: str) -> dict[str, Any] | None:
    """One document row, tombstoned or not."""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(GET_DOCUMENT, (source, doc_id)).fetchone()


def status(pool: ConnectionPool, last_runs: int = 5) -> dict[str, Any]:
    """Counts, the champion and active index, and the latest runs."""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        counts = cur.execute(COUNT_DOCUMENTS).fetchone() or {}
        active = cur.execute(ACTIVE_INDEX).fetchone()
        champion = cur.execute(CHAMPION).fetchone()
        vectors = 0
        if active is not None:
            query = sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(active["table_name"]))
            vectors = (cur.execute(query).fetchone() or {"n": 0})["n"]
        runs = cur.execute(LAST_RUNS, (last_runs,)).fetchall()
        return {
            "documents": counts.get("documents", 0),
            "tombstoned": counts.get("tombstoned", 0),
            "chunks": _scalar(cur, COUNT_CHUNKS),
            "vectors": vectors,
            "quarantined": _scalar(cur, COUNT_QUARANTINE),
            "champion_version": champion["version"] if champion else None,
            "active_index": active["table_name"] if active else None,
            "last_runs": [_jsonable(run) for run in runs],
        }


def _scalar(cur: psycopg.Cursor[Any], query: str) -> int:
    row = cur.execute(query).fetchone()
    return int(next(iter(row.values()))) if row else 0


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v)
        for k, v in row.items()
    }
