"""Scale-out: refresh shards embedding across Dask worker processes and builds the index one process would.

The model is a tiny random BERT, the corpus the maintenance manual of tests/support/domain.py. The
Dask cluster is one the refresh flow starts itself (RAGTUNE_REFRESH_WORKERS), or an existing one
(RAGTUNE_DASK_ADDRESS), both of worker processes on this machine.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from psycopg import sql

from flows.ingest import ingest_flow
from flows.refresh import refresh_flow
from infra import database
from pipeline import registry, retrieve, store
from pipeline.settings import Settings
from tests.support import domain
from tests.support.tiny import build_tiny_bert

pytestmark = pytest.mark.integration

QUERIES = ["the coolant pump overheats after idling", "a valve that leaks fluid", "no signal from the sensor"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """An existing cluster of two worker processes, as `dask scheduler` and two `dask worker` would be."""
    from distributed import LocalCluster

    scheduler = {"dashboard_address": "127.0.0.1:0"}  # not 8787: another cluster may hold it
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, scheduler_kwargs=scheduler) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def env(settings: Settings, tiny_model: Path, tmp_path: Path, prefect_api) -> Settings:
    """The manual ingested, the tiny model as base model, fp32 so that both builds compute alike."""
    settings = settings.model_copy(update={"base_model": tiny_model, "precision": "fp32"})
    ingest_flow(paths=[str(domain.write_pages(tmp_path / "manual"))], settings=settings)
    return settings


def index_vectors(settings: Settings) -> dict[str, np.ndarray]:
    """content_hash -> vector of the index searches read."""
    with database.connect(settings).connection() as conn:
        table = store.active_index(conn).table
        rows = conn.execute(sql.SQL("SELECT content_hash, embedding FROM {}").format(sql.Identifier(table)))
        return {content_hash: np.asarray(embedding.to_numpy()) for content_hash, embedding in rows}


def search_all(settings: Settings) -> list[list[str]]:
    """The chunk ids each query finds, best first, as `ragtune search` finds them."""
    pool = database.connect(settings)
    index = retrieve.active(pool)
    encoder = registry.cached_encoder(settings.tracking_uri, index.model_version, str(settings.model_cache))
    return [[hit.chunk_id for hit in retrieve.search(pool, encoder, index, query, k=5)] for query in QUERIES]


def test_two_workers_build_the_index_one_process_builds(env):
    sharded = refresh_flow(settings=env.model_copy(update={"refresh_workers": 2}))
    by_two, found_by_two = index_vectors(env), search_all(env)

    alone = refresh_flow(settings=env, rebuild=True)  # the same index again from nothing, in-process
    by_one, found_by_one = index_vectors(env), search_all(env)

    assert len(sharded["shards"]) == 2 and min(sharded["shards"]) > 0  # both workers embedded a share
    assert sum(sharded["shards"]) == sharded["embedded"] == alone["embedded"] == len(by_one) > 20
    assert alone["shards"] == [alone["embedded"]]
    assert sharded["precision"] == alone["precision"] == "fp32"
    assert by_two.keys() == by_one.keys()
    for content_hash, vector in by_one.items():
        np.testing.assert_allclose(by_two[content_hash], vector, atol=1e-5)
    assert found_by_two == found_by_one and all(found_by_one)


def test_on_an_existing_cluster_a_refresh_embeds_only_what_changed(env, dask_address, tmp_path):
    many = env.model_copy(update={"refresh_workers": 2, "dask_address": dask_address})
    first = refresh_flow(settings=many)
    page = tmp_path / "manual" / "zorvane-gallop.md"
    page.write_text(page.read_text().replace("Record the repair", "Log the repair"))
    ingest_flow(paths=[str(tmp_path / "manual")], settings=env)

    changed = refresh_flow(settings=many)
    again = refresh_flow(settings=many)

    assert sum(first["shards"]) == first["embedded"] > 20
    assert (changed["chunked_documents"], changed["embedded"], changed["deleted"]) == (1, 1, 1)
    assert sorted(changed["shards"]) == [0, 1]  # the one new text falls in one shard, the other has none
    assert (again["embedded"], again["shards"]) == (0, [])  # nothing to embed: no shard tasks at all
    with database.connect(env).connection() as conn:
        assert len(index_vectors(env)) == store.count_live_hashes(conn) == first["embedded"]
