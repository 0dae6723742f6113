"""Searches keep working while a refresh, a rebuild and a promotion's reindex run in other processes,
and every answer comes whole from one model: its query embedded by the model whose index it read.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from infra import database
from pipeline import registry, retrieve
from pipeline.settings import Settings
from tests.support import domain
from tests.support.cli import cli_env
from tests.support.crash import Corpus, ragtune, vectors
from tests.support.tiny import TINY_FINETUNE

pytestmark = pytest.mark.e2e

QUERIES = ("zorvane gallop", "inspect the pump bearing", "replace the seat gasket")


@pytest.fixture
def env(prefect_api, database_url, tmp_path, tiny_model) -> dict[str, str]:
    env = cli_env(tmp_path / "home", database_url, prefect_api, tiny_model)
    env.update(
        RAGTUNE_FINETUNE__EPOCHS=str(TINY_FINETUNE.epochs),
        RAGTUNE_FINETUNE__LEARNING_RATE=str(TINY_FINETUNE.learning_rate),
        RAGTUNE_FINETUNE__LORA_R=str(TINY_FINETUNE.lora_r),
        RAGTUNE_FINETUNE__TARGET_MODULES=json.dumps(list(TINY_FINETUNE.target_modules)),
    )
    return env


@dataclass
class Answer:
    version: str
    query: str
    hits: list[tuple[str, float]]  # (chunk_id, score)


@dataclass
class Searches:
    answers: list[Answer] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


@contextmanager
def searching(settings: Settings, threads: int = 2) -> Iterator[Searches]:
    """Search in a loop on several threads, as `ragtune search` does, until the block ends."""
    found = Searches()
    stop = threading.Event()

    def loop(offset: int) -> None:
        pool = database.connect(settings)
        n = offset
        while not stop.is_set():
            query = QUERIES[n % len(QUERIES)]
            n += 1
            try:
                index = retrieve.active(pool)
                encoder = registry.cached_encoder(settings.tracking_uri, index.model_version, str(settings.model_cache))
                hits = retrieve.search(pool, encoder, index, query, k=5)
                found.answers.append(Answer(index.model_version, query, [(h.chunk_id, h.score) for h in hits]))
            except BaseException as exc:
                found.errors.append(exc)
                return

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield found
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def chunk_hashes(settings: Settings) -> dict[str, str]:
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:
        return dict(conn.execute("SELECT chunk_id, content_hash FROM chunks").fetchall())


def assert_each_answer_is_one_models(settings: Settings, answers: list[Answer], before: dict[str, str]) -> None:
    """Each score must be the cosine of the query embedded by the answer's model and that model's vector.

    A chunk keeps its id when its document is edited, so only chunks whose text is the same as
    ``before`` the searches began can be checked against the vectors there are now.
    """
    now = chunk_hashes(settings)
    chunk_hash = {chunk: h for chunk, h in now.items() if before.get(chunk) == h}
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:
        register_vector(conn)
        for version in {a.version for a in answers}:
            encoder = registry.cached_encoder(settings.tracking_uri, version, str(settings.model_cache))
            table = vectors(conn, f"vectors_v{version}")
            query_vectors = {q: np.asarray(encoder.encode([q])[0]) for q in QUERIES}
            checked = 0
            for answer in (a for a in answers if a.version == version):
                q = query_vectors[answer.query]
                for chunk_id, score in answer.hits:
                    stored = table.get(chunk_hash.get(chunk_id, ""))
                    if stored is None:  # the chunk's text changed meanwhile: nothing left to compare with
                        continue
                    cosine = float(q @ stored / (np.linalg.norm(q) * np.linalg.norm(stored)))
                    assert abs(cosine - score) < 1e-4, (version, answer.query, chunk_id)
                    checked += 1
            assert checked > 0


def test_searches_while_refresh_and_rebuild_run_never_fail(env, database_url, tmp_path):
    corpus = Corpus(tmp_path / "corpus", size=3000)
    ragtune(env, "ingest", str(corpus.write()), "--snapshot")
    ragtune(env, "refresh")
    corpus.change(edit=0.4, add=3000, delete=0.1)
    ragtune(env, "ingest", str(corpus.write()), "--snapshot")
    settings = Settings(home=Path(env["RAGTUNE_HOME"]), database_url=database_url)
    before = chunk_hashes(settings)

    with searching(settings) as during_refresh:
        refreshed = ragtune(env, "refresh")
    with searching(settings) as during_rebuild:
        rebuilt = ragtune(env, "refresh", "--rebuild")

    assert refreshed["embedded"] > 3000 and rebuilt["embedded"] > 5000
    for found in (during_refresh, during_rebuild):
        assert not found.errors
        assert len(found.answers) > 20  # searches really ran alongside
        assert all(answer.hits for answer in found.answers)
        assert {a.version for a in found.answers} == {"1"}
    assert_each_answer_is_one_models(settings, during_refresh.answers + during_rebuild.answers, before)


def test_searches_while_a_promotion_reindexes_answer_from_one_model_at_a_time(env, database_url, tmp_path):
    ragtune(env, "ingest", str(domain.write_pages(tmp_path / "manual")))
    ragtune(env, "refresh")
    settings = Settings(home=Path(env["RAGTUNE_HOME"]), database_url=database_url)
    before = chunk_hashes(settings)

    with searching(settings) as found:
        tuned = ragtune(env, "finetune", "--force")

    assert (tuned["promoted"], tuned["model_version"]) == (True, "2")
    assert not found.errors
    versions = [a.version for a in found.answers]
    assert versions[0] == "1" and set(versions) <= {"1", "2"}
    assert_each_answer_is_one_models(settings, found.answers, before)
