"""Drift on real text and real models: the packaged MiniLM on Python's documentation, and the drift
flow against real PostgreSQL, MLflow and Prefect (with a tiny model, so it runs in seconds)."""

from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from flows.drift import drift_flow
from flows.finetune import finetune_flow
from flows.ingest import ingest_flow
from flows.refresh import refresh_flow
from infra import database
from pipeline import demo, drift, finetune, store
from pipeline.chunk import ChunkOptions, chunk_document, embedding_text
from pipeline.drift import DriftOptions, Sample
from pipeline.embed import Encoder
from pipeline.registry import default_base_model
from pipeline.settings import Settings
from tests.integration.test_finetune import latest_artifact
from tests.support import domain
from tests.support.tiny import TINY_FINETUNE, build_tiny_bert

pytestmark = pytest.mark.integration
CHUNKS_PER_PAGE = 4  # enough of each page to know its topic; keeps the embedding to seconds


def embed_pages(directory: Path, encoder: Encoder, limit: int) -> Sample:
    """Chunk markdown/text pages as refresh does and embed them with MiniLM."""
    texts, documents = [], []
    for page in sorted(directory.rglob("*.*"))[:limit]:
        body = page.read_text(encoding="utf-8")
        fmt = "markdown" if page.suffix == ".md" else "text"
        chunks = chunk_document("docs", page.name, 1, page.stem, body, fmt, encoder.tokenizer, ChunkOptions())
        for c in chunks[:CHUNKS_PER_PAGE]:
            texts.append(embedding_text(page.stem, c.heading, c.text))
            documents.append(page.name)
    encoder.choose_precision(texts[:32])
    return Sample(encoder.encode(texts), documents)


@pytest.fixture(scope="module")
def minilm_docs(tmp_path_factory) -> tuple[Sample, Sample]:
    """The standard library's documentation and the ML libraries' documentation, embedded by MiniLM."""
    root = tmp_path_factory.mktemp("docs")
    demo.write_stdlib_docs(root / "stdlib")
    demo.write_ml_docs(root / "ml")
    encoder = Encoder(default_base_model())
    return embed_pages(root / "stdlib", encoder, 150), embed_pages(root / "ml", encoder, 60)


def halves(sample: Sample, seed: int) -> tuple[Sample, Sample]:
    names = sorted(set(sample.documents))
    first = set(np.random.default_rng(seed).permutation(names)[: len(names) // 2])
    mask = np.array([d in first for d in sample.documents])
    docs = np.array(sample.documents)
    return Sample(sample.vectors[mask], list(docs[mask])), Sample(sample.vectors[~mask], list(docs[~mask]))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_two_random_halves_of_the_standard_library_docs_do_not_drift(minilm_docs, seed):
    stdlib, _ = minilm_docs
    reference, current = halves(stdlib, seed)
    options = DriftOptions()

    score = drift.compare(reference, current, options)
    drifted, reason = drift.decide(score, len(current), options, None)

    assert len(current) >= options.min_samples
    assert score.auc < options.threshold, reason
    assert not drifted, reason


def test_a_move_to_the_ml_libraries_docs_drifts(minilm_docs):
    stdlib, ml = minilm_docs
    reference, _ = halves(stdlib, 0)
    options = DriftOptions()

    score = drift.compare(reference, ml, options)
    drifted, reason = drift.decide(score, len(ml), options, None)

    assert score.auc >= 0.9
    assert score.p_value < options.alpha
    assert drifted, reason


# --- the drift flow, end to end on the store -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def env(settings: Settings, tiny_model: Path, tmp_path: Path, prefect_api) -> Settings:
    """The jargon manual ingested and refreshed with the tiny model as champion."""
    settings = settings.model_copy(update={"base_model": tiny_model, "precision": "fp32"})
    ingest_flow(paths=[str(domain.write_pages(tmp_path / "manual"))], settings=settings)
    refresh_flow(settings=settings)
    return settings


def drift_rows(settings: Settings) -> list[dict]:
    pool = database.connect(settings)
    with pool.connection() as conn:
        cur = conn.execute("SELECT model_version, drifted, n_current, details FROM drift_reports ORDER BY report_id")
        return [dict(zip(["model_version", "drifted", "n_current", "details"], row, strict=True)) for row in cur]


def test_the_first_check_takes_the_reference_and_finds_nothing_new(env):
    result = drift_flow(settings=env)

    assert result["drifted"] is False
    assert result["model_version"] == "1"
    assert result["n_current"] == 0 and result["score"] is None
    assert result["details"]["reference_taken_now"] is True
    assert result["n_reference"] == result["details"]["known_chunks"] > 0  # the manual is smaller than the sample
    assert "only 0 chunk texts" in result["reason"]
    assert set(result) >= {"score", "threshold", "drifted", "method", "p_value", "n_reference", "n_current"}
    assert drift_rows(env)[-1]["details"]["reason"] == result["reason"]
    assert "no drift" in latest_artifact("drift-report")
    run = MlflowClient(env.tracking_uri).get_run(result["mlflow_run_id"])
    assert run.data.metrics["n_current"] == 0 and run.data.tags["decision"] == "no drift"


def test_new_documents_are_compared_and_a_shift_calls_for_a_fine_tune(env, tmp_path):
    drift_flow(settings=env)  # the reference: the manual
    shifted = tmp_path / "stdlib"
    demo.write_stdlib_docs(shifted)
    ingest_flow(paths=[str(shifted)], settings=env)
    refresh_flow(settings=env)

    result = drift_flow(settings=env)

    pool = database.connect(env)
    with pool.connection() as conn:
        new_chunk_texts = len(store.new_chunks(conn, store.active_index(conn)))
    assert result["n_current"] == new_chunk_texts >= 100
    assert result["score"] >= env.drift.threshold and result["p_value"] < env.drift.alpha
    assert result["drifted"] is True, result["reason"]
    assert finetune.should_train(pool)[0]
    client = MlflowClient(env.tracking_uri)
    artifacts = [a.path for a in client.list_artifacts(result["mlflow_run_id"], "plots")]
    assert artifacts == ["plots/drift.png"]
    assert "**drift**" in latest_artifact("drift-report")
    sampled = drift_flow(settings=env.model_copy(update={"drift": DriftOptions(current_size=50)}))
    assert (sampled["n_current"], sampled["details"]["compared"]) == (new_chunk_texts, 50)
    assert sampled["drifted"] is True  # a seeded sample of the new chunks tells the same story


def test_a_recent_fine_tune_holds_drift_back_for_the_cool_down(env, tmp_path):
    drift_flow(settings=env)
    demo.write_stdlib_docs(tmp_path / "stdlib")
    ingest_flow(paths=[str(tmp_path / "stdlib")], settings=env)
    refresh_flow(settings=env)
    pool = database.connect(env)
    run_id = store.start_run(pool, "finetune", {})
    store.finish_run(pool, run_id, "succeeded", {})  # as a fine-tune that trained, an hour ago or less

    result = drift_flow(settings=env)

    assert result["drifted"] is False
    assert "cool-down 20 h" in result["reason"]
    assert not finetune.should_train(pool)[0]
    cooled = env.model_copy(update={"drift": DriftOptions(cooldown_hours=0)})
    assert drift_flow(settings=cooled)["drifted"] is True


def test_a_promoted_champion_gets_its_own_reference(env, tmp_path):
    drift_flow(settings=env)
    promoted = finetune_flow(force=True, settings=env.model_copy(update={"finetune": TINY_FINETUNE}))
    assert promoted["promoted"], promoted["reason"]

    result = drift_flow(settings=env)

    assert result["model_version"] == "2"
    assert result["details"]["reference_taken_now"] is False  # taken at promotion, from the new index
    assert result["n_current"] == 0


def test_cleared_chunks_join_the_reference_so_a_later_shift_is_not_diluted(env, tmp_path):
    """Same-kind pages are cleared and absorbed; the next check sees only what came after them."""
    options = DriftOptions(min_samples=20)
    settings = env.model_copy(update={"drift": options})
    more = domain.write_pages(tmp_path / "more", seed=1)  # the same manual, worded again
    drift_flow(settings=settings)  # the reference: the manual as ingested by env
    ingest_flow(paths=[str(more)], settings=settings)
    refresh_flow(settings=settings)

    cleared = drift_flow(settings=settings)
    after = drift_flow(settings=settings)

    assert cleared["n_current"] >= 20
    assert cleared["drifted"] is False and cleared["score"] < options.threshold, cleared["reason"]
    assert cleared["details"]["absorbed"] == cleared["n_current"]
    assert after["n_current"] == 0 and "only 0 chunk texts" in after["reason"]
