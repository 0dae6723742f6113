"""The real thing, slow: the packaged MiniLM learns a domain's jargon and is promoted for it."""

import pytest

from flows.finetune import finetune_flow
from flows.ingest import ingest_flow
from flows.refresh import refresh_flow
from pipeline.settings import Settings
from tests.support import domain

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_minilm_fine_tuned_on_a_jargon_manual_beats_the_base_model_on_held_out_pages(
    settings: Settings, tmp_path, prefect_api
):
    ingest_flow(paths=[str(domain.write_pages(tmp_path / "manual"))], settings=settings)
    refresh_flow(settings=settings)

    result = finetune_flow(force=True, settings=settings)  # default hyperparameters

    ours, theirs = result["metrics"]["heldout"], result["champion_metrics"]["heldout"]
    print(f"held-out nDCG@10: base {theirs['ndcg@10']:.4f}, fine-tuned {ours['ndcg@10']:.4f}")
    assert ours["n_queries"] == theirs["n_queries"] >= 10
    assert ours["ndcg@10"] >= theirs["ndcg@10"] + 0.1, (ours, theirs)
    assert result["promoted"] and result["reindex"]["model_version"] == result["model_version"]
