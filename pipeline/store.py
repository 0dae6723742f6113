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
# Runs of these kinds that the caller, holding their lock, knows to be dead: no live process runs them.
MARK_INTERRUPTED = """
UPDATE runs SET status = 'interrupted', finished_at = now(),
    error = 'ended without recording how (killed, crashed, or cut off from the database); '
        || 'run ' || %(by)s || ' took over'
WHERE status = 'running' AND kind = ANY(%(kinds)s) AND run_id <> %(by)s::uuid
  AND started_at < (SELECT started_at FROM runs WHERE run_id = %(by)s::uuid)  -- none if by is unknown
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


def mark_interrupted(pool: ConnectionPool, kinds: Sequence[str], by_run: str) -> int:
    """Mark runs of ``kinds`` still 'running' from before ``by_run`` as interrupted; return how many.

    Call it only while holding the lock every run of these kinds holds: then none of them is alive.
    """
    with transaction(pool) as conn:
        return _mark_interrupted(conn, kinds, by_run)


def _mark_interrupted(conn: psycopg.Connection, kinds: Sequence[str], by_run: str) -> int:
    return conn.execute(MARK_INTERRUPTED, {"kinds": list(kinds), "by": by_run}).rowcount


INGESTING = "ragtune.ingest"  # every ingest transaction holds it shared; exclusive means no other is alive
HOLD_SHARED = "SELECT pg_advisory_xact_lock_shared(hashtext(%s))"


def claim_ingest(conn: psycopg.Connection, run_id: str) -> int:
    """Mark this ingest as alive for its transaction; sweep dead ingests' runs if none is alive. Return them.

    A live ingest holds a shared advisory lock for its whole transaction. Whoever gets it exclusively
    knows every other 'running' ingest run belongs to a process that died, and takes its shared lock
    before letting go, so there is no moment when this one looks dead.
    """
    alone = conn.execute(TRY_LOCK, (INGESTING,)).fetchone()
    swept = _mark_interrupted(conn, ["ingest"], run_id) if alone and alone[0] else 0
    conn.execute(HOLD_SHARED, (INGESTING,))
    if alone and alone[0]:
        conn.execute(UNLOCK, (INGESTING,))
    return swept


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
        active = active_index(conn)
        champion = cur.execute(CHAMPION).fetchone()
        vectors = 0
        if active is not None:
            query = sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(active.table))
            vectors = (cur.execute(query).fetchone() or {"n": 0})["n"]
        runs = cur.execute(LAST_RUNS, (last_runs,)).fetchall()
        kept = [{k: i[k] for k in ("model_version", "table_name", "status")} for i in list_indexes(conn)]
        return {
            "documents": counts.get("documents", 0),
            "tombstoned": counts.get("tombstoned", 0),
            "chunks": _scalar(cur, COUNT_CHUNKS),
            "vectors": vectors,
            "quarantined": _scalar(cur, COUNT_QUARANTINE),
            "champion_version": champion["version"] if champion else None,
            "active_index": active.table if active else None,
            "indexes": kept,  # the active one and the retired ones kept for rollback
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


# The vector index of each model version: one table of (content_hash, embedding). Chunks with
# the same text share a vector; search joins back to chunks for ids and sources.
CREATE_INDEX_TABLE = (
    "CREATE TABLE IF NOT EXISTS {table} (content_hash text PRIMARY KEY, embedding vector({dim}) NOT NULL)"
)
REGISTER_INDEX = """
INSERT INTO model_indexes (model_version, table_name, dimension) VALUES (%s, %s, %s)
ON CONFLICT (model_version) DO NOTHING
"""
ACTIVATE_INDEX = """
INSERT INTO active_index (singleton, model_version) VALUES (true, %s)
ON CONFLICT (singleton) DO UPDATE SET model_version = EXCLUDED.model_version, switched_at = now()
"""
INDEX_OF = "SELECT model_version, table_name, dimension FROM model_indexes WHERE model_version = %s"
ACTIVE = """
SELECT m.model_version, m.table_name, m.dimension
FROM active_index a JOIN model_indexes m USING (model_version)
"""
MARK_READY = "UPDATE model_indexes SET status = 'ready', ready_at = coalesce(ready_at, now()) WHERE model_version = %s"
# Live documents whose chunks are missing or belong to an older version.
STALE_DOCUMENTS = """
SELECT d.source, d.doc_id, d.version, d.title, d.text, d.metadata ->> 'format' AS format
FROM documents d
WHERE d.deleted_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM chunks c WHERE c.source = d.source AND c.doc_id = d.doc_id AND c.doc_version = d.version
  )
ORDER BY d.source, d.doc_id
"""
DELETE_DOCUMENT_CHUNKS = "DELETE FROM chunks WHERE source = %s AND doc_id = %s"
COPY_CHUNKS = """
COPY chunks (chunk_id, source, doc_id, doc_version, ordinal, heading, text, content_hash, n_tokens) FROM STDIN
"""
DELETE_TOMBSTONED_CHUNKS = """
DELETE FROM chunks c USING documents d
WHERE c.source = d.source AND c.doc_id = d.doc_id AND d.deleted_at IS NOT NULL
"""
COUNT_LIVE_HASHES = "SELECT count(DISTINCT content_hash) FROM chunks"
# A page of the chunk texts an index lacks, in content-hash order after the last one read.
TO_EMBED = """
SELECT DISTINCT ON (c.content_hash) c.content_hash, d.title, c.heading, c.text
FROM chunks c JOIN documents d USING (source, doc_id)
WHERE NOT EXISTS (SELECT 1 FROM {table} v WHERE v.content_hash = c.content_hash)
  AND c.content_hash > %(after)s
ORDER BY c.content_hash
LIMIT %(limit)s
"""
COUNT_TO_EMBED = """
SELECT count(DISTINCT c.content_hash) FROM chunks c
WHERE NOT EXISTS (SELECT 1 FROM {table} v WHERE v.content_hash = c.content_hash)
"""
COUNT_STALE_DOCUMENTS = "SELECT count(*) FROM (" + STALE_DOCUMENTS + ") stale"
DELETE_ORPHAN_VECTORS = """
DELETE FROM {table} v WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.content_hash = v.content_hash)
"""
CREATE_HNSW = "CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw (embedding vector_cosine_ops)"
HAS_INDEX = "SELECT 1 FROM pg_indexes WHERE tablename = %s AND indexname = %s"
# The nearest vectors first (the HNSW index serves the inner ORDER BY), then their chunks.
SEARCH = """
SELECT c.chunk_id, c.source, c.doc_id, d.title, c.heading, c.text, 1 - near.distance AS score
FROM (SELECT content_hash, embedding <=> %(query)s AS distance FROM {table}
      ORDER BY embedding <=> %(query)s LIMIT %(k)s) near
JOIN chunks c USING (content_hash)
JOIN documents d USING (source, doc_id)
ORDER BY near.distance, c.chunk_id
LIMIT %(k)s
"""


@dataclass(frozen=True)
class IndexInfo:
    """A model version's vector table."""

    model_version: str
    table: str
    dimension: int

    @property
    def hnsw(self) -> str:
        """The name of the table's HNSW index."""
        return f"{self.table}_hnsw"


@dataclass(frozen=True)
class StaleDocument:
    source: str
    doc_id: str
    version: int
    title: str | None
    text: str
    format: str | None


def ensure_index(conn: psycopg.Connection, model_version: str, dimension: int) -> IndexInfo:
    """The model version's vector table, created (empty) if it does not exist yet."""
    index = IndexInfo(model_version, f"vectors_v{model_version}", dimension)
    create_index_table(conn, index)
    conn.execute(REGISTER_INDEX, (model_version, index.table, dimension))
    return index


def activate_index(conn: psycopg.Connection, model_version: str) -> None:
    """Make searches read this model version's index (one statement: atomic for readers)."""
    conn.execute(ACTIVATE_INDEX, (model_version,))


def active_index(conn: psycopg.Connection) -> IndexInfo | None:
    """The index searches read now, if any."""
    row = conn.execute(ACTIVE).fetchone()
    return IndexInfo(str(row[0]), row[1], int(row[2])) if row else None


def stale_documents(conn: psycopg.Connection, page: int = 500) -> Iterator[StaleDocument]:
    """Live documents whose chunks are missing or out of date, ``page`` at a time from a server-side cursor.

    Call it inside a transaction; other statements may run on the connection between documents.
    """
    with conn.cursor(name="ragtune_stale_documents") as cursor:
        cursor.itersize = page
        cursor.execute(STALE_DOCUMENTS)
        for row in cursor:
            yield StaleDocument(*row)


def count_stale_documents(conn: psycopg.Connection) -> int:
    """How many documents ``stale_documents`` will yield."""
    row = conn.execute(COUNT_STALE_DOCUMENTS).fetchone()
    return int(row[0]) if row else 0


def replace_chunks(conn: psycopg.Connection, source: str, doc_id: str, chunks: Sequence[Any]) -> None:
    """Swap a document's chunks for new ones."""
    conn.execute(DELETE_DOCUMENT_CHUNKS, (source, doc_id))
    with conn.cursor() as cur, cur.copy(COPY_CHUNKS) as copy:
        for c in chunks:
            copy.write_row(
                (
                    c.chunk_id,
                    c.source,
                    c.doc_id,
                    c.doc_version,
                    c.ordinal,
                    c.heading,
                    c.text,
                    c.content_hash,
                    c.n_tokens,
                )
            )


def drop_tombstoned_chunks(conn: psycopg.Connection) -> int:
    """Remove the chunks of deleted documents; return how many."""
    return conn.execute(DELETE_TOMBSTONED_CHUNKS).rowcount


def count_live_hashes(conn: psycopg.Connection) -> int:
    """How many distinct chunk texts the corpus has."""
    row = conn.execute(COUNT_LIVE_HASHES).fetchone()
    return int(row[0]) if row else 0


def chunks_to_embed(
    conn: psycopg.Connection, index: IndexInfo, after: str = "", limit: int | None = None
) -> list[tuple[str, str | None, str | None, str]]:
    """(content_hash, title, heading, text) of the chunk texts the index lacks: hash order, the first
    ``limit`` after the hash ``after`` (read page by page: each page's last hash is the next ``after``)."""
    query = sql.SQL(TO_EMBED).format(table=sql.Identifier(index.table))
    return conn.execute(query, {"after": after, "limit": limit}).fetchall()


def count_to_embed(conn: psycopg.Connection, index: IndexInfo) -> int:
    """How many chunk texts the index lacks."""
    row = conn.execute(sql.SQL(COUNT_TO_EMBED).format(table=sql.Identifier(index.table))).fetchone()
    return int(row[0]) if row else 0


def write_vectors(conn: psycopg.Connection, index: IndexInfo, rows: Sequence[tuple[str, Any]]) -> None:
    """Append (content_hash, float32 vector) rows with binary COPY."""
    copy_sql = sql.SQL("COPY {} (content_hash, embedding) FROM STDIN WITH (FORMAT BINARY)").format(
        sql.Identifier(index.table)
    )
    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.set_types(["text", "vector"])
        for row in rows:
            copy.write_row(row)


def delete_orphan_vectors(conn: psycopg.Connection, index: IndexInfo) -> int:
    """Remove vectors no chunk uses any more; return how many."""
    return conn.execute(sql.SQL(DELETE_ORPHAN_VECTORS).format(table=sql.Identifier(index.table))).rowcount


def ensure_hnsw(conn: psycopg.Connection, index: IndexInfo) -> bool:
    """Build the HNSW index if missing (after a bulk load: 10x faster than loading into it)."""
    if _has_hnsw(conn, index):
        return False
    conn.execute("SET LOCAL maintenance_work_mem = '1GB'")  # 13 s instead of 114 s for 100k x 384
    conn.execute(sql.SQL(CREATE_HNSW).format(name=sql.Identifier(index.hnsw), table=sql.Identifier(index.table)))
    conn.execute(MARK_READY, (index.model_version,))
    return True


def drop_hnsw(conn: psycopg.Connection, index: IndexInfo) -> bool:
    """Drop the HNSW index before a bulk load (``ensure_hnsw`` builds it again after); whether it was there."""
    if not _has_hnsw(conn, index):
        return False
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index.hnsw)))
    return True


def _has_hnsw(conn: psycopg.Connection, index: IndexInfo) -> bool:
    return conn.execute(HAS_INDEX, (index.table, index.hnsw)).fetchone() is not None


def search(conn: psycopg.Connection, index: IndexInfo, query: Any, k: int) -> list[dict[str, Any]]:
    """The k chunks nearest to a query vector, best first, with their sources."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL(SEARCH).format(table=sql.Identifier(index.table)), {"query": query, "k": k}
        ).fetchall()


RECORD_ALIAS = """
INSERT INTO alias_history (alias, version, previous_version, reason, run_id) VALUES (%s, %s, %s, %s, %s)
"""


def record_alias(
    conn: psycopg.Connection, alias: str, version: str, previous: str | None, reason: str, run_id: str | None
) -> None:
    """Remember a move of a registry alias: which version, from which, why, in which run."""
    conn.execute(RECORD_ALIAS, (alias, version, previous, reason, run_id))


def index_of(conn: psycopg.Connection, model_version: str) -> IndexInfo | None:
    """A model version's index, if it has one."""
    row = conn.execute(INDEX_OF, (model_version,)).fetchone()
    return IndexInfo(str(row[0]), row[1], int(row[2])) if row else None


# Switching the active index: one transaction, so a search sees the old index or the new one.
LOCK_ACTIVE = "SELECT model_version FROM active_index WHERE singleton FOR UPDATE"
RETIRE_INDEX = "UPDATE model_indexes SET status = 'retired', retired_at = now() WHERE model_version = %s"
UNRETIRE_INDEX = "UPDATE model_indexes SET status = 'ready', retired_at = NULL WHERE model_version = %s"
RETIRED_BEYOND = """
SELECT model_version, table_name, dimension FROM model_indexes
WHERE status = 'retired' ORDER BY retired_at DESC OFFSET %s
"""
FORGET_INDEX = "DELETE FROM model_indexes WHERE model_version = %s"
INDEX_STATUS = "SELECT status FROM model_indexes WHERE model_version = %s"
LIST_INDEXES = """
SELECT m.model_version, m.table_name, m.status, m.created_at, m.retired_at,
       (a.model_version IS NOT NULL) AS active
FROM model_indexes m LEFT JOIN active_index a USING (model_version)
ORDER BY m.created_at
"""
LAST_CHAMPION_MOVE = """
SELECT version, previous_version, reason, changed_at FROM alias_history
WHERE alias = 'champion' ORDER BY change_id DESC LIMIT 1
"""
ALIAS_HISTORY = """
SELECT change_id, alias, version, previous_version, reason, run_id, changed_at FROM alias_history
ORDER BY change_id DESC LIMIT %s
"""
LATEST_DRIFT = """
SELECT drifted, score, threshold, p_value, model_version, details ->> 'reason' AS reason, created_at
FROM drift_reports ORDER BY report_id DESC LIMIT 1
"""
CORPUS_CHUNKS = """
SELECT c.source, c.doc_id, d.title, c.heading, c.text, d.updated_at
FROM chunks c JOIN documents d USING (source, doc_id)
WHERE d.deleted_at IS NULL
ORDER BY c.source, c.doc_id, c.ordinal
"""
CORPUS_SNAPSHOT = """
SELECT count(*) AS documents, max(updated_at) AS last_change,
       md5(coalesce(string_agg(content_hash, ',' ORDER BY source, doc_id), '')) AS fingerprint
FROM documents WHERE deleted_at IS NULL
"""


def switch_index(conn: psycopg.Connection, model_version: str) -> str | None:
    """Point searches at a model version's index and retire the one it replaces; return that one's version."""
    row = conn.execute(LOCK_ACTIVE).fetchone()
    previous = str(row[0]) if row else None
    if previous == model_version:
        return None
    conn.execute(ACTIVATE_INDEX, (model_version,))
    conn.execute(UNRETIRE_INDEX, (model_version,))
    if previous is not None:
        conn.execute(RETIRE_INDEX, (previous,))
    return previous


def shadow_of(index: IndexInfo) -> IndexInfo:
    """A fresh table for rebuilding an index from nothing while the old one keeps serving."""
    return IndexInfo(index.model_version, f"{index.table}_rebuild", index.dimension)


def create_index_table(conn: psycopg.Connection, index: IndexInfo, fresh: bool = False) -> None:
    """Create an index's vector table (emptied first when ``fresh``)."""
    if fresh:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(index.table)))
    conn.execute(
        sql.SQL(CREATE_INDEX_TABLE).format(table=sql.Identifier(index.table), dim=sql.Literal(index.dimension))
    )


def replace_index_table(conn: psycopg.Connection, rebuilt: IndexInfo, live: IndexInfo) -> None:
    """Put a rebuilt table in place of the live one under the live one's name (readers wait, then see it)."""
    drop = sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(live.table))
    conn.execute(drop)
    rename = sql.SQL("ALTER TABLE {} RENAME TO {}")
    conn.execute(rename.format(sql.Identifier(rebuilt.table), sql.Identifier(live.table)))
    rename_index = sql.SQL("ALTER INDEX IF EXISTS {} RENAME TO {}")
    conn.execute(rename_index.format(sql.Identifier(rebuilt.hnsw), sql.Identifier(live.hnsw)))


def drop_retired_indexes(conn: psycopg.Connection, keep: int) -> list[str]:
    """Drop the vector tables of retired indexes beyond the newest ``keep``; return their versions."""
    dropped = []
    for version, table, _ in conn.execute(RETIRED_BEYOND, (keep,)).fetchall():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        conn.execute(FORGET_INDEX, (version,))
        dropped.append(str(version))
    return dropped


def index_status(conn: psycopg.Connection, model_version: str) -> str | None:
    """'building', 'ready' or 'retired'; None if the version has no index."""
    row = conn.execute(INDEX_STATUS, (model_version,)).fetchone()
    return str(row[0]) if row else None


def list_indexes(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every kept index: version, table, status, and whether searches read it."""
    with conn.cursor(row_factory=dict_row) as cur:
        return [_jsonable(row) for row in cur.execute(LIST_INDEXES).fetchall()]


def last_champion_move(conn: psycopg.Connection) -> dict[str, Any] | None:
    """The latest recorded move of ``champion``: version, previous_version, reason, changed_at."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(LAST_CHAMPION_MOVE).fetchone()


def alias_history(conn: psycopg.Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The latest alias moves, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return [_jsonable(row) for row in cur.execute(ALIAS_HISTORY, (limit,)).fetchall()]


def latest_drift(conn: psycopg.Connection) -> dict[str, Any] | None:
    """The latest drift report: drifted, score, threshold, p_value, model_version, reason, created_at."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(LATEST_DRIFT).fetchone()


def corpus_chunks(conn: psycopg.Connection) -> list[tuple[str, str, str | None, str | None, str, datetime]]:
    """(source, doc_id, title, heading, text, document updated_at) of every live chunk, in reading order."""
    return conn.execute(CORPUS_CHUNKS).fetchall()


def corpus_snapshot(conn: psycopg.Connection) -> dict[str, Any]:
    """What the live corpus is right now: document count, last change and a fingerprint of the contents."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(CORPUS_SNAPSHOT).fetchone() or {}
    return _jsonable(row)


TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext(%s))"
UNLOCK = "SELECT pg_advisory_unlock(hashtext(%s))"


def try_lock(conn: psycopg.Connection, name: str) -> bool:
    """Take a session-level advisory lock if no other session holds it (autocommit connections)."""
    row = conn.execute(TRY_LOCK, (name,)).fetchone()
    return bool(row and row[0])


@contextmanager
def exclusive(pool: ConnectionPool, name: str) -> Iterator[bool]:
    """Hold a database-wide lock for the block; yield False at once if another process holds it."""
    with pool.connection() as conn:
        conn.autocommit = True  # a session lock, held by this connection outside any transaction
        row = conn.execute(TRY_LOCK, (name,)).fetchone()
        held = bool(row and row[0])
        try:
            yield held
        finally:
            if held:
                conn.execute(UNLOCK, (name,))
            conn.autocommit = False


# Drift: a model version's reference (what it knew when it became champion) and what came since.
HAS_REFERENCE = "SELECT taken_at, n_known, n_sampled FROM drift_references WHERE model_version = %s"
CREATE_REFERENCE = "INSERT INTO drift_references (model_version, n_known, n_sampled, run_id) VALUES (%s, 0, 0, %s)"
KNOW_CHUNKS = """
INSERT INTO drift_reference_chunks (model_version, content_hash, source, doc_id)
SELECT DISTINCT ON (content_hash) %s, content_hash, source, doc_id FROM chunks ORDER BY content_hash, source, doc_id
"""
# The sample: a seeded hash order, so the same corpus always gives the same reference.
SAMPLE_REFERENCE = """
UPDATE drift_reference_chunks r SET embedding = v.embedding
FROM {table} v
WHERE r.model_version = %(version)s AND v.content_hash = r.content_hash
  AND r.content_hash IN (
      SELECT content_hash FROM drift_reference_chunks WHERE model_version = %(version)s
      ORDER BY md5(content_hash || %(seed)s) LIMIT %(size)s)
"""
COUNT_REFERENCE = """
UPDATE drift_references SET
    n_known = (SELECT count(*) FROM drift_reference_chunks WHERE model_version = %(version)s),
    n_sampled = (SELECT count(embedding) FROM drift_reference_chunks WHERE model_version = %(version)s)
WHERE model_version = %(version)s
"""
REFERENCE_SAMPLE = """
SELECT source, doc_id, embedding FROM drift_reference_chunks
WHERE model_version = %s AND embedding IS NOT NULL ORDER BY content_hash
"""
# Chunk texts the reference did not know: added or changed since, embedded by the same model.
NEW_CHUNKS = """
SELECT DISTINCT ON (c.content_hash) c.content_hash, c.source, c.doc_id
FROM chunks c JOIN {table} v USING (content_hash)
WHERE NOT EXISTS (
    SELECT 1 FROM drift_reference_chunks r WHERE r.model_version = %(version)s AND r.content_hash = c.content_hash)
ORDER BY c.content_hash, c.source, c.doc_id
"""
VECTORS_OF = "SELECT content_hash, embedding FROM {table} WHERE content_hash = ANY(%s)"
ABSORB = """
INSERT INTO drift_reference_chunks (model_version, content_hash, source, doc_id) VALUES (%s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
INSERT_DRIFT_REPORT = """
INSERT INTO drift_reports
    (run_id, model_version, method, score, threshold, p_value, n_reference, n_current, drifted, details)
VALUES (%(run_id)s, %(model_version)s, %(method)s, %(score)s, %(threshold)s, %(p_value)s,
        %(n_reference)s, %(n_current)s, %(drifted)s, %(details)s)
"""
LAST_FINETUNE = """
SELECT finished_at FROM runs WHERE kind = 'finetune' AND status = 'succeeded' ORDER BY finished_at DESC LIMIT 1
"""


def reference_of(conn: psycopg.Connection, model_version: str) -> dict[str, Any] | None:
    """When the version's drift reference was taken and how big it is; None if it has none."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(HAS_REFERENCE, (model_version,)).fetchone()


def take_reference(conn: psycopg.Connection, index: IndexInfo, size: int, seed: int, run_id: str | None) -> None:
    """Remember every chunk text the corpus has now, and keep a sample of their vectors from ``index``."""
    conn.execute(CREATE_REFERENCE, (index.model_version, run_id))
    conn.execute(KNOW_CHUNKS, (index.model_version,))
    sample = sql.SQL(SAMPLE_REFERENCE).format(table=sql.Identifier(index.table))
    conn.execute(sample, {"version": index.model_version, "seed": str(seed), "size": size})
    conn.execute(COUNT_REFERENCE, {"version": index.model_version})


def reference_sample(conn: psycopg.Connection, model_version: str) -> list[tuple[str, str, Any]]:
    """(source, doc_id, vector) of each chunk in the version's reference sample."""
    return conn.execute(REFERENCE_SAMPLE, (model_version,)).fetchall()


def new_chunks(conn: psycopg.Connection, index: IndexInfo) -> list[tuple[str, str, str]]:
    """(content_hash, source, doc_id) of every indexed chunk text the index's reference did not know."""
    query = sql.SQL(NEW_CHUNKS).format(table=sql.Identifier(index.table))
    return conn.execute(query, {"version": index.model_version}).fetchall()


def vectors_of(conn: psycopg.Connection, index: IndexInfo, hashes: Sequence[str]) -> dict[str, Any]:
    """The index's vectors of the given chunk texts, by content hash."""
    query = sql.SQL(VECTORS_OF).format(table=sql.Identifier(index.table))
    return dict(conn.execute(query, (list(hashes),)).fetchall())


def absorb_chunks(conn: psycopg.Connection, model_version: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """Count (content_hash, source, doc_id) chunk texts as known to the version's reference from now on."""
    with conn.cursor() as cur:
        cur.executemany(ABSORB, [(model_version, *row) for row in rows])


def record_drift(conn: psycopg.Connection, report: dict[str, Any]) -> None:
    """Write one drift report row (details as JSON)."""
    conn.execute(INSERT_DRIFT_REPORT, {**report, "details": Jsonb(report["details"])})


def last_finetune(conn: psycopg.Connection) -> datetime | None:
    """When the latest fine-tune that trained a challenger finished."""
    row = conn.execute(LAST_FINETUNE).fetchone()
    return row[0] if row else None
