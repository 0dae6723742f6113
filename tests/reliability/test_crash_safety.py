"""kill -9 a refresh or a rebuild anywhere, run it again: the index equals a clean build, and the live
index is untouched until the switch.

Every victim is the real `ragtune` command in its own process. The fixed points are reached with
database locks (see tests/support/crash.py) and checked in pg_stat_activity before the kill; the
slow variant kills at seeded random moments instead.
"""

import random
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from flows.ingest import ingest_flow
from flows.refresh import refresh_flow
from pipeline import search
from pipeline.settings import Settings
from tests.support.cli import cli_env
from tests.support.crash import (
    Corpus,
    assert_same_index,
    blocked_statement,
    checksum,
    chunk_rows,
    count,
    holding,
    kill_9,
    live_hashes,
    ragtune,
    start,
    table_exists,
    table_oid,
    vectors,
    wait_for,
)

pytestmark = pytest.mark.e2e

QUERY = "inspect the pump bearing"


@pytest.fixture
def env(prefect_api, database_url, tmp_path, tiny_model) -> dict[str, str]:
    return cli_env(tmp_path / "home", database_url, prefect_api, tiny_model)


@pytest.fixture
def clean_url(pg_server):
    """A second fresh database, for the clean build the crashed one is compared with."""
    name = f"clean_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE ragtune_template").format(sql.Identifier(name)))
    yield psycopg.conninfo.make_conninfo(pg_server, dbname=name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def clean_build(url: str, home: Path, model: Path, snapshots: list[Path]) -> None:
    """The same ingests, then one refresh nobody interrupts, in a database of its own."""
    settings = Settings(home=home, database_url=url, base_model=model, precision="fp32")
    for path in snapshots:
        ingest_flow(paths=[str(path)], snapshot=True, settings=settings)
    refresh_flow(settings=settings)


def run_statuses(url: str, kind: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status FROM runs WHERE kind = %s ORDER BY started_at", (kind,)).fetchall()
    return [r[0] for r in rows]


def test_refresh_killed_while_chunking_embedding_and_switching_then_rerun_equals_a_clean_build(
    env, database_url, clean_url, tmp_path, tiny_model
):
    corpus = Corpus(tmp_path / "corpus", size=4000)
    snapshots = [corpus.write()]
    ragtune(env, "ingest", str(snapshots[0]), "--snapshot")
    ragtune(env, "refresh")
    corpus.change(edit=0.35, add=2500, delete=0.1)
    snapshots.append(corpus.write())
    ragtune(env, "ingest", str(snapshots[1]), "--snapshot")

    with psycopg.connect(database_url, autocommit=True) as watch:
        old_chunks, old_vectors = chunk_rows(watch), count(watch, "vectors_v1")
        edited = [
            row[0]
            for row in watch.execute(
                "SELECT DISTINCT d.doc_id FROM documents d JOIN chunks c USING (source, doc_id) "
                "WHERE d.deleted_at IS NULL AND c.doc_version < d.version ORDER BY d.doc_id"
            )
        ]

        # 1. While chunking: the test holds the chunks of an edited document halfway down the list,
        #    so the refresh has replaced the chunks of the documents before it when it blocks there.
        middle = edited[len(edited) // 2]
        with holding(database_url, "SELECT 1 FROM chunks WHERE doc_id = %s FOR UPDATE", (middle,)):
            victim = start(env, "refresh")
            statement = wait_for(lambda: blocked_statement(watch), victim, "the refresh reached the held document")
            assert statement.startswith("DELETE FROM chunks WHERE source")
            kill_9(victim)
        assert chunk_rows(watch) == old_chunks  # the chunking transaction left nothing behind
        assert count(watch, "vectors_v1") == old_vectors

        # 2. While embedding: once a batch of vectors is committed, the next batch's COPY waits on the table.
        embedded_before = {h for h in vectors(watch, "vectors_v1")}
        victim = start(env, "refresh")
        wait_for(lambda: count(watch, "vectors_v1") >= old_vectors + 1024, victim, "a batch of vectors was committed")
        with holding(database_url, "LOCK TABLE vectors_v1 IN SHARE MODE"):
            statement = wait_for(lambda: blocked_statement(watch), victim, "the refresh blocked on its next batch")
            assert statement.startswith("COPY")
            kill_9(victim)
        to_embed = live_hashes(watch) - embedded_before
        committed = set(vectors(watch, "vectors_v1")) - embedded_before
        assert 1024 <= len(committed) < len(to_embed)  # killed halfway: some batches in, some still to do
        assert committed <= to_embed  # every committed vector is one the index needs
        # The delta is over a fifth of the index, so HNSW was dropped for the load: searches scan exactly
        # until a refresh finishes and builds it again.
        assert not watch.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'vectors_v1_hnsw'").fetchone()
        assert search(QUERY, 5, Settings(home=Path(env["RAGTUNE_HOME"]), database_url=database_url))

        # 3. After embedding, at the switch: the test holds the active-index row the switch locks.
        with holding(database_url, "SELECT * FROM active_index FOR UPDATE"):
            victim = start(env, "refresh")
            statement = wait_for(lambda: blocked_statement(watch), victim, "the refresh reached the switch")
            assert "FROM active_index" in statement
            kill_9(victim)
        assert set(vectors(watch, "vectors_v1")) == live_hashes(watch)  # its committed work is complete
        assert search(QUERY, 5, Settings(home=Path(env["RAGTUNE_HOME"]), database_url=database_url))

    rerun = ragtune(env, "refresh")
    assert rerun["embedded"] == 0  # nothing the killed runs committed was lost or redone
    clean_build(clean_url, tmp_path / "clean", tiny_model, snapshots)
    assert_same_index(database_url, clean_url)
    killed = ["interrupted"] * 3  # marked so by the next run to take the refresh lock
    assert run_statuses(database_url, "refresh") == ["succeeded", *killed, "succeeded"]


def test_a_rebuild_killed_anywhere_leaves_the_live_index_serving_untouched(env, database_url, tmp_path):
    corpus = Corpus(tmp_path / "corpus", size=5000)
    ragtune(env, "ingest", str(corpus.write()))
    ragtune(env, "refresh")
    settings = Settings(home=Path(env["RAGTUNE_HOME"]), database_url=database_url)
    answer = [(h.chunk_id, round(h.score, 4)) for h in search(QUERY, 5, settings)]
    shadow = "vectors_v1_rebuild"

    with psycopg.connect(database_url, autocommit=True) as watch:
        from pgvector.psycopg import register_vector

        register_vector(watch)
        live = checksum(watch, "vectors_v1")
        live_vectors = vectors(watch, "vectors_v1")

        def untouched() -> None:
            assert checksum(watch, "vectors_v1") == live
            assert watch.execute("SELECT model_version FROM active_index").fetchone() == ("1",)
            assert [(h.chunk_id, round(h.score, 4)) for h in search(QUERY, 5, settings)] == answer

        # 1. While embedding into the new table beside the live one.
        victim = start(env, "refresh", "--rebuild")
        wait_for(lambda: count(watch, shadow) >= 1024, victim, "a batch of the rebuild was committed")
        with holding(database_url, sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(shadow))):
            assert wait_for(lambda: blocked_statement(watch), victim, "the rebuild's next batch").startswith("COPY")
            kill_9(victim)
        untouched()

        # 2. At the HNSW build: the test holds a lock the build waits for, but loading does not.
        first_try = table_oid(watch, shadow)
        victim = start(env, "refresh", "--rebuild")
        wait_for(lambda: table_oid(watch, shadow) not in (None, first_try), victim, "the rebuild made a new table")
        with holding(database_url, sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(sql.Identifier(shadow))):
            statement = wait_for(lambda: blocked_statement(watch), victim, "the rebuild reached its HNSW build")
            assert statement.startswith("CREATE INDEX")
            kill_9(victim)
        untouched()

        # 3. At the swap, HNSW built in the same transaction: a search's lock on the live table holds it.
        with holding(database_url, "SELECT count(*) FROM vectors_v1"):
            victim = start(env, "refresh", "--rebuild")
            statement = wait_for(lambda: blocked_statement(watch), victim, "the rebuild reached the swap")
            assert statement.startswith("DROP TABLE")
            kill_9(victim)
        untouched()
        assert not watch.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (f"{shadow}_hnsw",)).fetchone()

        rebuilt = ragtune(env, "refresh", "--rebuild")
        assert rebuilt["embedded"] == len(live_vectors)  # a rebuild embeds everything again, once
        assert not table_exists(watch, shadow)
        now = vectors(watch, "vectors_v1")
        assert sorted(now) == sorted(live_vectors)
        assert all(abs(now[h] - live_vectors[h]).max() < 1e-5 for h in now)
        assert watch.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'vectors_v1_hnsw'").fetchone()
    assert [c for c, _ in ((h.chunk_id, h.score) for h in search(QUERY, 5, settings))] == [c for c, _ in answer]
    assert run_statuses(database_url, "refresh")[1:] == ["interrupted", "interrupted", "interrupted", "succeeded"]


@pytest.mark.slow
def test_refresh_killed_at_a_dozen_random_moments_still_ends_equal_to_a_clean_build(
    env, database_url, clean_url, tmp_path, tiny_model
):
    rng = random.Random(6)
    corpus = Corpus(tmp_path / "corpus", size=3000, seed=6)
    snapshots = [corpus.write()]
    settings = Settings(home=Path(env["RAGTUNE_HOME"]), database_url=database_url)
    ingest_flow(paths=[str(snapshots[0])], snapshot=True, settings=settings)
    kills = 0
    with psycopg.connect(database_url, autocommit=True) as watch:
        started = "SELECT 1 FROM runs WHERE kind = 'refresh' AND status = 'running' AND started_at > %s"
        for _ in range(30):
            if kills >= 12:
                break
            since = watch.execute("SELECT now()").fetchone()[0]
            victim = start(env, "refresh")
            wait_for(lambda s=since: watch.execute(started, (s,)).fetchone(), victim, "the refresh started")
            time.sleep(rng.uniform(0.0, 3.0))
            if victim.poll() is None:
                kill_9(victim)
                kills += 1
            else:
                assert victim.returncode == 0
            corpus.change(edit=0.15, add=rng.randint(0, 800), delete=0.03)
            snapshots.append(corpus.write())
            ingest_flow(paths=[str(snapshots[-1])], snapshot=True, settings=settings)
    assert kills >= 12
    ragtune(env, "refresh")
    clean_build(clean_url, tmp_path / "clean", tiny_model, snapshots)
    assert_same_index(database_url, clean_url)
