"""The promotion gate: its decision on given metrics, the passages it ranks, and its scores with a fake encoder."""

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from pipeline.chunk import embedding_text
from pipeline.evaluate import Query, score_rankings
from pipeline.gate import EvalSet, GateOptions, decide, eval_set, score
from pipeline.pairs import CorpusChunk

OPTIONS = GateOptions(min_delta=0.01, max_regression=0.01)


def metrics(heldout: float | None = None, canary: float | None = None, user: float | None = None, n: int = 20):
    sets = {"heldout": heldout, "canary": canary, "user": user}
    return {name: {"ndcg@10": value, "n_queries": n} for name, value in sets.items() if value is not None}


def outcome(challenger: dict, champion: dict) -> tuple[bool, dict[str, bool]]:
    decision = decide(challenger, champion, OPTIONS)
    return decision.promote, {c.name: c.passed for c in decision.checks}


def test_a_heldout_gain_of_min_delta_with_no_failed_check_promotes():
    decision = decide(metrics(0.60, 0.70, 0.80), metrics(0.55, 0.70, 0.80), OPTIONS)
    assert decision.promote is True
    assert decision.reason == "held-out nDCG@10 +0.0500 and no check failed"
    assert [(c.name, c.passed) for c in decision.checks] == [("heldout", True), ("canary", True), ("user", True)]


@pytest.mark.parametrize(("champion", "challenger"), [(0.02, 0.03), (0.05, 0.06), (0.55, 0.56)])
def test_a_gain_of_exactly_min_delta_is_enough(champion: float, challenger: float):
    assert decide(metrics(challenger), metrics(champion), OPTIONS).promote is True


def test_a_heldout_gain_below_min_delta_is_rejected():
    decision = decide(metrics(0.555), metrics(0.55), OPTIONS)
    assert decision.promote is False
    assert decision.reason == "heldout: nDCG@10 0.5550 vs champion 0.5500 (held-out nDCG@10 gain >= 0.01)"


def test_a_canary_regression_beyond_max_regression_rejects_despite_a_big_heldout_gain():
    decision = decide(metrics(0.90, 0.70), metrics(0.50, 0.75), OPTIONS)
    assert decision.promote is False
    assert decision.reason.startswith("canary: nDCG@10 0.7000 vs champion 0.7500")
    assert outcome(metrics(0.90, 0.70), metrics(0.50, 0.75))[1] == {"heldout": True, "canary": False}


def test_a_canary_loss_within_max_regression_promotes():
    assert outcome(metrics(0.60, 0.745), metrics(0.50, 0.75)) == (True, {"heldout": True, "canary": True})


def test_a_canary_loss_of_exactly_max_regression_promotes():
    assert outcome(metrics(0.60, 0.09), metrics(0.50, 0.10)) == (True, {"heldout": True, "canary": True})


def test_any_loss_on_the_user_queries_rejects_even_when_the_rest_passes():
    decision = decide(metrics(0.90, 0.80, 0.799), metrics(0.50, 0.80, 0.800), OPTIONS)
    assert decision.promote is False
    assert decision.reason == "user: nDCG@10 0.7990 vs champion 0.8000 (never lose on the user's own queries)"


def test_every_failed_check_is_named_in_the_reason():
    reason = decide(metrics(0.50, 0.10, 0.10), metrics(0.50, 0.90, 0.90), OPTIONS).reason
    assert [part.split(":")[0] for part in reason.split("; ")] == ["heldout", "canary", "user"]


def test_canary_and_user_checks_are_absent_without_queries():
    challenger = {**metrics(0.60), **metrics(canary=0.0, user=0.0, n=0)}
    champion = {**metrics(0.50), **metrics(canary=0.9, user=0.9, n=0)}
    assert outcome(challenger, champion) == (True, {"heldout": True})
    assert outcome(metrics(0.60), metrics(0.50)) == (True, {"heldout": True})


def test_no_heldout_queries_rejects():
    decision = decide(metrics(0.6, n=0), metrics(0.5, n=0), OPTIONS)
    assert decision.promote is False
    assert decision.reason == "heldout: no queries to judge by (held-out nDCG@10 gain >= 0.01)"


def test_the_decision_as_a_dict_survives_json():
    data = decide(metrics(0.60, 0.70), metrics(0.55, 0.75), OPTIONS).as_dict()
    assert json.loads(json.dumps(data)) == {
        "promote": False,
        "reason": "canary: nDCG@10 0.7000 vs champion 0.7500 (canary nDCG@10 loss <= 0.01)",
        "checks": [
            {
                "name": "heldout",
                "passed": True,
                "challenger": 0.60,
                "champion": 0.55,
                "rule": "held-out nDCG@10 gain >= 0.01",
            },
            {
                "name": "canary",
                "passed": False,
                "challenger": 0.70,
                "champion": 0.75,
                "rule": "canary nDCG@10 loss <= 0.01",
            },
        ],
    }


def chunks(sizes: dict[str, int]) -> list[CorpusChunk]:
    """``sizes[doc]`` chunks for each document, each under the document's title and heading."""
    return [
        CorpusChunk("docs", doc, f"Title {doc}", f"Heading {doc}", f"body {doc}-{i}", datetime(2024, 1, 1, tzinfo=UTC))
        for doc, n in sizes.items()
        for i in range(n)
    ]


CORPUS = chunks({f"d{i}": 2 for i in range(20)} | {"single": 1})
QUERIES = [Query("q", ("d3",)), Query("r", ("d7", "d8"))]


def test_every_relevant_document_is_ranked_even_past_the_cap():
    evalset = eval_set("heldout", QUERIES, CORPUS, max_passages=2, seed=0, indexed=False)
    assert sorted(evalset.corpus) == ["d3", "d7", "d8"]
    assert evalset.n_passages == 6
    assert evalset.queries == QUERIES


def test_distractors_fill_the_corpus_up_to_the_cap():
    for seed in range(5):
        evalset = eval_set("heldout", QUERIES, CORPUS, max_passages=11, seed=seed, indexed=False)
        assert {"d3", "d7", "d8"} <= set(evalset.corpus)
        assert evalset.n_passages == 11


def test_distractors_are_a_seeded_sample():
    def distractors(seed: int) -> list[str]:
        return sorted(eval_set("heldout", QUERIES, CORPUS, max_passages=12, seed=seed, indexed=False).corpus)

    assert distractors(1) == distractors(1)
    assert distractors(1) != distractors(2)


def test_indexed_passages_sit_under_title_and_heading():
    evalset = eval_set("heldout", QUERIES, CORPUS, max_passages=6, seed=0, indexed=True)
    assert evalset.corpus["d3"] == ["Title d3 > Heading d3\n\nbody d3-0", "Title d3 > Heading d3\n\nbody d3-1"]
    assert evalset.corpus["d3"][0] == embedding_text("Title d3", "Heading d3", "body d3-0")


def test_unindexed_passages_are_the_bare_bodies():
    evalset = eval_set("heldout", QUERIES, CORPUS, max_passages=6, seed=0, indexed=False)
    assert evalset.corpus == {
        "d3": ["body d3-0", "body d3-1"],
        "d7": ["body d7-0", "body d7-1"],
        "d8": ["body d8-0", "body d8-1"],
    }


def test_queries_about_documents_missing_from_the_corpus_are_dropped():
    queries = [Query("gone", ("nope",)), Query("partly", ("nope", "d3"))]
    evalset = eval_set("canary", queries, CORPUS, max_passages=10, seed=0, indexed=False)
    assert evalset.queries == [Query("partly", ("nope", "d3"))]
    assert evalset.name == "canary"


class FakeEncoder:
    """Embeds each known text as its given vector, L2-normalised; an unknown text is a test error."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = np.array([self.vectors[t] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def one_hot(i: int, n: int = 12) -> list[float]:
    return [1.0 if j == i else 0.0 for j in range(n)]


def test_a_perfect_encoder_scores_one():
    evalset = EvalSet(
        "heldout", [Query(f"q{i}", (f"d{i}",)) for i in range(12)], {f"d{i}": [f"p{i}"] for i in range(12)}
    )
    encoder = FakeEncoder({f"{kind}{i}": one_hot(i) for i in range(12) for kind in "qp"})
    assert score(encoder, evalset) == {"ndcg@10": 1.0, "recall@10": 1.0, "mrr@10": 1.0, "n_queries": 12}


def test_scores_are_those_of_the_rankings_by_best_passage():
    evalset = EvalSet(
        "heldout",
        [Query("alpha", ("a",)), Query("gamma", ("c",))],
        {"a": ["a1", "a2"], "b": ["b1"], "c": ["c1"]},
    )
    encoder = FakeEncoder(
        {
            "alpha": [1, 0, 0],
            "gamma": [0, 0, 1],
            "a1": [0.6, 0.8, 0],  # a's better passage for alpha: 0.6
            "a2": [0.2, 0, 0.98],  # a's better passage for gamma: 0.98
            "b1": [0.8, 0.6, 0],
            "c1": [0, 0.01, 0.99995],
        }
    )
    # alpha: b (0.8) above a (0.6); gamma: c (~1.0) above a (0.98).
    expected = score_rankings(
        evalset.queries, [[("b", 0.8), ("a", 0.6), ("c", 0.0)], [("c", 1.0), ("a", 0.98), ("b", 0.0)]]
    )
    scores = score(encoder, evalset)
    assert scores == pytest.approx(expected)
    assert scores == pytest.approx(
        {"ndcg@10": (1 / math.log2(3) + 1) / 2, "recall@10": 1.0, "mrr@10": 0.75, "n_queries": 2}
    )


def test_a_set_without_queries_scores_nothing():
    encoder = FakeEncoder({"p": [1.0]})
    assert score(encoder, EvalSet("user", [], {"a": ["p"]})) == {
        "ndcg@10": 0.0,
        "recall@10": 0.0,
        "mrr@10": 0.0,
        "n_queries": 0,
    }
