"""Fine-tune, gate, promotion with its index switch, rollback and rebuild: real PostgreSQL, MLflow and Prefect.

The model is a tiny random BERT built here; the corpus is a manual in an invented jargon
(tests/support/domain.py), so what the model learns is exactly the domain's terminology.
"""

import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from psycopg import sql

from flows.finetune import finetune_flow
from flows.ingest import ingest_flow
from flows.refresh import refresh_flow
from flows.reindex import reindex_flow, rollback_flow
from infra import database
from pipeline import registry, retrieve, store
from pipeline.gate import GateOptions
from pipeline.settings import Settings
from tests.support import domain
from tests.support.tiny import TINY_FINETUNE, build_tiny_bert

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def env(settings: Settings, tiny_model: Path, tmp_path: Path, prefect_api) -> Settings:
    """A manual ingested and refreshed with the tiny model as champion (version 1)."""
    settings = settings.model_copy(update={"base_model": tiny_model, "finetune": TINY_FINETUNE, "precision": "fp32"})
    ingest_flow(paths=[str(domain.write_pages(tmp_path / "manual"))], settings=settings)
    refresh_flow(settings=settings)
    return settings


def latest_artifact(key: str) -> str:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1, sort="CREATED_DESC"
        )
        return str(artifact.data)


def vector_counts(settings: Settings) -> dict[str, int]:
    pool = database.connect(settings)
    with pool.connection() as conn:
        tables = [row["table_name"] for row in store.list_indexes(conn)]
        count = sql.SQL("SELECT count(*) FROM {}")
        return {t: conn.execute(count.format(sql.Identifier(t))).fetchone()[0] for t in tables}


def search_once(settings: Settings, text: str) -> tuple[str, list[tuple[str, float]]]:
    """One search as `ragtune search` does it: the active index, then that version's encoder."""
    pool = database.connect(settings)
    index = retrieve.active(pool)
    encoder = registry.cached_encoder(settings.tracking_uri, index.model_version, str(settings.model_cache))
    hits = retrieve.search(pool, encoder, index, text, k=5)
    return index.model_version, [(h.chunk_id, round(h.score, 5)) for h in hits]


def test_fine_tuning_raises_held_out_ndcg_and_promotes_with_an_index_switch(env):
    result = finetune_flow(force=True, settings=env)

    assert result["trained"] and result["promoted"], result["reason"]
    ours, theirs = result["metrics"]["heldout"], result["champion_metrics"]["heldout"]
    assert ours["n_queries"] == theirs["n_queries"] > 5
    assert ours["ndcg@10"] >= theirs["ndcg@10"] + 0.2  # the jargon is learned, not guessed
    assert (result["model_version"], result["parent_version"]) == ("2", "1")

    client = MlflowClient(env.tracking_uri)
    assert str(client.get_model_version_by_alias(registry.MODEL_NAME, "champion").version) == "2"
    version = client.get_model_version(registry.MODEL_NAME, "2")
    assert version.tags["parent_version"] == "1" and version.tags["gate.decision"] == "promoted"
    assert int(version.tags["train_pairs"]) == result["data"]["train_pairs"]
    assert "Held-out nDCG@10" in version.description
    run = client.get_run(result["mlflow_run_id"])
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert len(losses) == result["training"]["steps"] and losses[-1].value < losses[0].value
    assert run.data.metrics["challenger_heldout_ndcg_at_10"] == pytest.approx(ours["ndcg@10"])
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"adapter", "report", "plots", "data"} <= logged
    assert version.run_id == run.info.run_id  # the registered version links to its training run

    pool = database.connect(env)
    with pool.connection() as conn:
        assert store.active_index(conn).table == "vectors_v2"
        kept = {i["model_version"]: i["status"] for i in store.list_indexes(conn)}
        history = store.alias_history(conn)
    assert kept == {"1": "retired", "2": "ready"}  # the old index stays for rollback
    assert [(h["version"], h["previous_version"]) for h in history] == [("2", "1"), ("1", None)]
    assert result["reindex"]["embedded"] == vector_counts(env)["vectors_v2"] > 0
    report = latest_artifact("finetune-report")
    assert report.startswith("# Fine-tune: version 2 promoted to champion")
    assert f"| heldout | {ours['n_queries']} | ndcg@10 | {ours['ndcg@10']:.4f} |" in report
    assert "searches switched from version 1 to 2" in latest_artifact("reindex-report")


def test_a_challenger_that_fails_the_gate_stays_challenger_and_the_index_does_not_change(env):
    strict = env.model_copy(update={"gate": GateOptions(min_delta=2.0)})  # no model can gain 2.0 nDCG
    before = vector_counts(env)

    result = finetune_flow(force=True, settings=strict)

    assert result["trained"] and not result["promoted"]
    assert result["reason"].startswith("heldout: nDCG@10")
    client = MlflowClient(env.tracking_uri)
    assert str(client.get_model_version_by_alias(registry.MODEL_NAME, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(registry.MODEL_NAME, "challenger").version) == "2"
    assert client.get_model_version(registry.MODEL_NAME, "2").tags["gate.decision"] == "rejected"
    with database.connect(env).connection() as conn:
        assert store.active_index(conn).table == "vectors_v1"
    assert vector_counts(env) == before  # no index built for a model that lost
    assert latest_artifact("finetune-report").startswith("# Fine-tune: version 2 stays challenger")


def test_without_force_nothing_trains_until_a_drift_report_says_so(env):
    result = finetune_flow(settings=env)
    assert (result["trained"], result["promoted"], result["model_version"]) == (False, False, None)
    assert "--force" in result["reason"]


def test_searches_during_a_promotion_see_one_whole_index_then_the_other(env):
    query = "zorvane gallop"
    before = search_once(env, query)
    strict = env.model_copy(update={"gate": GateOptions(min_delta=2.0)})
    version = finetune_flow(force=True, settings=strict)["model_version"]  # a challenger, no index yet
    seen: list[tuple[str, list[tuple[str, float]]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        while not stop.is_set():
            try:
                seen.append(search_once(env, query))
            except BaseException as exc:
                errors.append(exc)
                return

    loop = threading.Thread(target=search_loop)
    loop.start()
    try:
        reindex_flow(version=version, reason="test promotion", settings=env)
    finally:
        stop.set()
        loop.join()
    after = search_once(env, query)

    assert not errors
    assert after[0] == version != before[0]
    assert {v for v, _ in seen} <= {before[0], version}
    assert before in seen  # searches ran while the new index was being built, and read the old one
    # Every result is exactly the old index's answer or exactly the finished new index's: never a partial one.
    assert all(result in (before, after) for result in seen)


def test_rollback_restores_the_previous_index_without_embedding(env):
    query = "quellite drift-lock"
    before = search_once(env, query)
    finetune_flow(force=True, settings=env)
    counts = vector_counts(env)
    assert search_once(env, query)[0] == "2"

    move = rollback_flow(settings=env)

    assert (move["version"], move["previous"], move["switched"], move["behind"]) == ("1", "2", True, 0)
    assert search_once(env, query) == before  # the same index, the same answers
    assert vector_counts(env) == counts  # nothing embedded, nothing dropped
    client = MlflowClient(env.tracking_uri)
    assert str(client.get_model_version_by_alias(registry.MODEL_NAME, "champion").version) == "1"
    assert (
        '"reason": "rollback from version 2"'
        in client.get_registered_model(registry.MODEL_NAME).tags["last_champion_move"]
    )
    with database.connect(env).connection() as conn:
        assert store.alias_history(conn)[0]["reason"] == "rollback from version 2"


def test_rollback_to_a_dropped_index_says_so_and_refresh_rebuild_brings_it_back(env):
    no_retention = env.model_copy(update={"index_retention": 0})
    finetune_flow(force=True, settings=no_retention)  # promotes v2 and drops v1's index at once
    assert "vectors_v1" not in vector_counts(env)

    move = rollback_flow(settings=no_retention)
    assert (move["version"], move["switched"]) == ("1", False)
    assert "ragtune refresh --rebuild" in move["note"]
    assert search_once(env, "pelk bloom")[0] == "2"  # still consistent: v2's index with v2's encoder

    rebuilt = refresh_flow(settings=no_retention, rebuild=True)
    assert (rebuilt["model_version"], rebuilt["switched_from"]) == ("1", "2")
    assert search_once(env, "pelk bloom")[0] == "1"
    assert rebuilt["embedded"] == vector_counts(env)["vectors_v1"]


def test_refresh_rebuild_of_the_live_index_keeps_serving_and_gives_the_same_answers(env):
    before = search_once(env, "brastor grist")
    rebuilt = refresh_flow(settings=env, rebuild=True)
    assert rebuilt["embedded"] == vector_counts(env)["vectors_v1"] > 0
    assert rebuilt["switched_from"] is None
    assert search_once(env, "brastor grist") == before


def test_rollback_to_a_challenger_without_a_finished_index_keeps_searches_on_the_live_one(env):
    strict = env.model_copy(update={"gate": GateOptions(min_delta=2.0)})
    finetune_flow(force=True, settings=strict)  # version 2: a challenger, never indexed

    move = rollback_flow(version="2", settings=env)

    assert (move["version"], move["previous"], move["switched"]) == ("2", "1", False)
    assert "has no finished index" in move["note"]
    assert search_once(env, "tindel fade")[0] == "1"  # v1's index with v1's encoder: still consistent


def test_a_training_that_fails_marks_its_runs_failed_and_changes_nothing(env):
    broken = env.model_copy(update={"finetune": TINY_FINETUNE.model_copy(update={"target_modules": ("nope",)})})

    with pytest.raises(ValueError, match="nope"):  # peft: no such layer to adapt
        finetune_flow(force=True, settings=broken)

    client = MlflowClient(env.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("ragtune-finetune").experiment_id])
    assert run.info.status == "FAILED"  # not left RUNNING in the MLflow UI
    assert str(client.get_model_version_by_alias(registry.MODEL_NAME, "champion").version) == "1"
    pool = database.connect(env)
    with pool.connection() as conn:
        assert store.active_index(conn).table == "vectors_v1"
    assert [r["status"] for r in store.status(pool)["last_runs"] if r["kind"] == "finetune"] == ["failed"]
