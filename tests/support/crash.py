"""What the crash tests share: a corpus that keeps changing, the `ragtune` command, and barriers.

A barrier is a database lock the test holds so that the process under test blocks at one exact
statement (the next vector COPY, the HNSW build, the table swap, the index switch). Once
PostgreSQL shows it waiting there, the test sends it SIGKILL: kill -9 at a point the test chose,
not wherever a timer happened to land.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

WORDS = (
    "pump valve bearing nozzle coil filter accumulator sensor cooler solenoid rotor gasket housing "
    "shaft relay harness controller contact lubricant coolant pressure signal corrosion load speed "
    "inspect replace drain flush refill tighten rebalance recalibrate clean check reduce apply"
).split()


class Corpus:
    """Documents that change in seeded rounds: edits, additions and deletions, written as JSONL snapshots."""

    def __init__(self, folder: Path, size: int, seed: int = 0) -> None:
        self.folder = folder
        self.random = random.Random(seed)
        self.docs: dict[str, str] = {}
        self.next_id = 0
        self.rounds = 0
        folder.mkdir(parents=True, exist_ok=True)
        self._add(size)

    def change(self, edit: float, add: int, delete: float) -> None:
        """Edit and delete shares of the documents, add new ones."""
        ids = sorted(self.docs)
        for doc_id in ids:
            roll = self.random.random()
            if roll < delete:
                del self.docs[doc_id]
            elif roll < delete + edit:
                self.docs[doc_id] = self._text()
        self._add(add)

    def write(self) -> Path:
        """The corpus as it is now, as one JSONL file (the whole source: ingest it with --snapshot)."""
        self.rounds += 1
        path = self.folder / f"round{self.rounds:02}" / "manual.jsonl"
        path.parent.mkdir()
        with path.open("w") as f:
            for doc_id, text in sorted(self.docs.items()):
                f.write(json.dumps({"id": doc_id, "title": f"Note {doc_id}", "text": text}) + "\n")
        return path

    def _add(self, n: int) -> None:
        for _ in range(n):
            self.docs[f"doc{self.next_id:06}"] = self._text()
            self.next_id += 1

    def _text(self) -> str:
        return " ".join(self.random.choice(WORDS) for _ in range(self.random.randint(12, 40))) + "."


def ragtune(env: dict[str, str], *args: str, timeout: int = 300) -> dict[str, Any]:
    """Run a command to completion; it must succeed. Its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "ragtune", *args, "--json"], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def start(env: dict[str, str], *args: str, capture: bool = False) -> subprocess.Popen[bytes]:
    """Start a command that the test means to kill (or to break, and then read what it said: ``capture``)."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "ragtune", *args, "--json"], env=env, stdout=out, stderr=out)


def kill_9(victim: subprocess.Popen[bytes]) -> None:
    assert victim.poll() is None, "the command finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL


def wait_for(condition: Callable[[], Any], victim: subprocess.Popen[bytes], what: str, timeout: float = 180) -> Any:
    """Poll until ``condition`` holds (and return its value) while the victim is still running."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert victim.poll() is None, f"the command ended (exit {victim.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def blocked_statement(conn: psycopg.Connection) -> str | None:
    """The statement another session of this database is blocked on by a lock, if any."""
    row = conn.execute(
        "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock'"
    ).fetchone()
    return str(row[0]).strip() if row else None


@contextmanager
def holding(url: str, statement: str | sql.Composable, params: tuple[Any, ...] = ()) -> Iterator[psycopg.Connection]:
    """Hold the locks a statement takes, in an open transaction, until the block ends (then roll back)."""
    with psycopg.connect(url) as conn:
        conn.execute(statement if isinstance(statement, sql.Composable) else statement.encode(), params or None)
        yield conn
        conn.rollback()


def count(conn: psycopg.Connection, table: str) -> int:
    if not table_exists(conn, table):
        return 0
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def table_exists(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    return bool(row and row[0])


def table_oid(conn: psycopg.Connection, table: str) -> int | None:
    row = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()
    return int(row[0]) if row and row[0] else None


def checksum(conn: psycopg.Connection, table: str) -> str:
    """One md5 over every (content_hash, vector) of a vector table: equal means untouched."""
    query = sql.SQL("SELECT md5(string_agg(content_hash || embedding::text, ',' ORDER BY content_hash)) FROM {}")
    row = conn.execute(query.format(sql.Identifier(table))).fetchone()
    return str(row[0]) if row else ""


def chunk_rows(conn: psycopg.Connection) -> list[tuple[str, str, int]]:
    return conn.execute("SELECT chunk_id, content_hash, doc_version FROM chunks ORDER BY chunk_id").fetchall()


def vectors(conn: psycopg.Connection, table: str) -> dict[str, np.ndarray]:
    query = sql.SQL("SELECT content_hash, embedding FROM {}").format(sql.Identifier(table))
    return {h: np.asarray(e.to_numpy() if hasattr(e, "to_numpy") else e) for h, e in conn.execute(query)}


def live_hashes(conn: psycopg.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT DISTINCT content_hash FROM chunks")}


def assert_same_index(crashed: str, clean: str, table: str = "vectors_v1") -> None:
    """The index a crashed-and-rerun refresh left equals a clean build: chunks, vectors, state."""
    from pgvector.psycopg import register_vector

    with psycopg.connect(crashed) as a, psycopg.connect(clean) as b:
        register_vector(a)
        register_vector(b)
        assert chunk_rows(a) == chunk_rows(b)  # the same chunk ids, hashes and versions; none extra, none missing
        got, want = vectors(a, table), vectors(b, table)
        assert sorted(got) == sorted(want) == sorted(live_hashes(a))  # one vector per live chunk text
        assert all(np.allclose(got[h], want[h], atol=1e-5) for h in want)
        for conn in (a, b):
            assert conn.execute("SELECT model_version FROM active_index").fetchone() == ("1",)
            assert conn.execute("SELECT status FROM model_indexes WHERE model_version = '1'").fetchone() == ("ready",)
            hnsw = conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (f"{table}_hnsw",)).fetchone()
            assert hnsw is not None
        duplicates = a.execute("SELECT count(*) - count(DISTINCT chunk_id) FROM chunks").fetchone()
        assert duplicates == (0,)
