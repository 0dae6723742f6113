"""Refresh and search against real PostgreSQL + pgvector and MLflow, with the packaged MiniLM."""

from pathlib import Path

import pytest

import pipeline
from infra import database
from pipeline import registry, runs, store
from pipeline.ingest import IngestOptions, ingest
from pipeline.refresh import RefreshOptions, RefreshReport, refresh
from pipeline.settings import Settings
from pipeline.sources import open_sources
from pipeline.validate import Validator

pytestmark = pytest.mark.integration

PAGES = {
    "json.md": "# json\n\nEncode Python objects as JSON text and decode JSON text into objects.\n\n"
    "## Decoding\n\nUse json.loads to parse a JSON string into dictionaries and lists.\n",
    "subprocess.md": "# subprocess\n\nRun child processes, connect to their pipes, and read their return codes.\n\n"
    "## Capturing output\n\nPass capture_output=True to subprocess.run to collect stdout and stderr.\n",
    "sqlite3.md": "# sqlite3\n\nA DB-API interface to SQLite databases stored in a single file.\n",
    "heapq.md": "# heapq\n\nHeap queue algorithms, also known as the priority queue algorithm.\n",
}


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory) -> str:
    """One MLflow store per module: registering the base model copies 90 MB, once is enough."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def env(settings: Settings, mlflow_uri: str, tmp_path: Path):
    settings = settings.model_copy(update={"mlflow_tracking_uri": mlflow_uri})
    docs = tmp_path / "stdlib"
    docs.mkdir()
    for name, text in PAGES.items():
        (docs / name).write_text(text)
    model = registry.champion(mlflow_uri, tmp_path / "artifacts", registry.default_base_model())
    encoder = registry.cached_encoder(mlflow_uri, model.version, str(tmp_path / "models"))
    return settings, docs, encoder, model.version


def ingest_dir(settings: Settings, docs: Path, snapshot: bool = False) -> None:
    pool = database.connect(settings)
    with runs.recorded(pool, "ingest", {}) as run:
        ingest(
            pool,
            open_sources([docs]),
            Validator(settings.validation),
            IngestOptions.from_settings(settings, snapshot=snapshot),
            run.run_id,
        )


def run_refresh(settings: Settings, encoder, version: str) -> RefreshReport:
    pool = database.connect(settings)
    with runs.recorded(pool, "refresh", {}) as run:
        return refresh(pool, encoder, version, RefreshOptions(chunk=settings.chunk, precision="fp32"), run.run_id)


def test_refresh_embeds_every_chunk_once_and_a_second_refresh_nothing(env):
    settings, docs, encoder, version = env
    ingest_dir(settings, docs)

    first = run_refresh(settings, encoder, version)
    second = run_refresh(settings, encoder, version)

    status = store.status(database.connect(settings))
    assert first.embedded == status["chunks"] == status["vectors"] == 6  # two sections in two pages, one in two
    assert (first.chunked_documents, first.hnsw_built, first.index) == (4, True, f"vectors_v{version}")
    assert (second.embedded, second.skipped, second.chunked_documents, second.hnsw_built) == (0, 6, 0, False)
    assert status["active_index"] == f"vectors_v{version}"


def test_editing_one_paragraph_re_embeds_only_that_chunk(env):
    settings, docs, encoder, version = env
    ingest_dir(settings, docs)
    run_refresh(settings, encoder, version)
    (docs / "subprocess.md").write_text(PAGES["subprocess.md"].replace("return codes", "exit statuses"))
    ingest_dir(settings, docs)

    report = run_refresh(settings, encoder, version)

    assert (report.chunked_documents, report.embedded, report.skipped, report.deleted) == (1, 1, 5, 1)


def test_search_results_carry_their_sources_and_a_tombstoned_document_disappears(env):
    settings, docs, encoder, version = env
    ingest_dir(settings, docs)
    run_refresh(settings, encoder, version)

    hits = pipeline.search("how do I collect the stdout of a child process", k=3, settings=settings)

    assert hits[0].doc_id == "subprocess.md" and hits[0].source == "stdlib"
    assert (hits[0].title, hits[0].heading) == ("subprocess", "Capturing output")
    assert "capture_output=True" in hits[0].text
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    (docs / "subprocess.md").unlink()
    ingest_dir(settings, docs, snapshot=True)
    report = run_refresh(settings, encoder, version)

    assert (report.dropped_chunks, report.deleted) == (2, 2)
    hits = pipeline.search("how do I collect the stdout of a child process", k=10, settings=settings)
    assert "subprocess.md" not in {h.doc_id for h in hits}
    assert len(hits) == 4


def test_search_before_any_refresh_says_what_to_do(settings):
    with pytest.raises(pipeline.errors.UserError, match="run `ragtune ingest PATH` and then `ragtune refresh`"):
        pipeline.search("anything", settings=settings)


def test_a_second_refresh_while_one_runs_is_refused_clearly(env):
    settings, docs, encoder, version = env
    ingest_dir(settings, docs)
    pool = database.connect(settings)
    with store.exclusive(pool, "ragtune.refresh") as held:  # as a refresh in another process would
        assert held
        with pytest.raises(pipeline.errors.UserError, match="another refresh is running"):
            run_refresh(settings, encoder, version)
    assert run_refresh(settings, encoder, version).embedded == 6  # free again afterwards


def hnsw_indexes(settings: Settings) -> list[str]:
    with database.connect(settings).connection() as conn:
        rows = conn.execute("SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%'").fetchall()
    return [name for (name,) in rows]


def test_a_large_delta_loads_without_hnsw_and_builds_it_again_a_small_one_inserts(env):
    settings, docs, encoder, version = env
    options = RefreshOptions(chunk=settings.chunk, precision="fp32", bulk_load_minimum=1, bulk_load_fraction=0.2)
    pool = database.connect(settings)

    def refreshed() -> RefreshReport:
        ingest_dir(settings, docs)
        with runs.recorded(pool, "refresh", {}) as run:
            return refresh(pool, encoder, version, options, run.run_id)

    first = refreshed()  # 6 chunks: a first load builds HNSW after it in any case, with nothing to drop
    (docs / "csv.md").write_text("# csv\n\nRead and write tabular data in comma-separated files.\n")
    (docs / "shutil.md").write_text("# shutil\n\nCopy, move and remove whole directory trees.\n")
    bulk = refreshed()  # 2 new chunks beside 6: over a fifth
    hits = pipeline.search("delete a folder and everything in it", k=3, settings=settings)
    (docs / "heapq.md").write_text(PAGES["heapq.md"].replace("priority queue", "priority-queue"))
    small = refreshed()  # 1 changed chunk beside 8: under a fifth

    assert (first.embedded, first.bulk_load, first.hnsw_built) == (6, False, True)
    assert (bulk.embedded, bulk.bulk_load, bulk.hnsw_built) == (2, True, True)
    assert hits[0].doc_id == "shutil.md"
    assert (small.embedded, small.bulk_load, small.hnsw_built) == (1, False, False)
    assert hnsw_indexes(settings) == [f"vectors_v{version}_hnsw"]
    assert store.status(pool)["vectors"] == 8
