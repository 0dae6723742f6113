"""Retrieval metrics against values computed by hand."""

import math
from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.evaluate import Query, load_queries, score_rankings


def test_metrics_equal_the_hand_computed_values():
    queries = [Query("q1", ("a",)), Query("q2", ("x", "y")), Query("q3", ("m",)), Query("q4", ("p",))]
    rankings = [
        [("b", 0.9), ("a", 0.8), ("c", 0.7)],  # relevant at rank 2
        [("x", 0.9), ("z", 0.8), ("w", 0.7), ("y", 0.6)],  # relevant at ranks 1 and 4
        [("n", 0.9), ("o", 0.8)],  # nothing relevant
        [],  # nothing found at all: still a query, scoring zero
    ]
    ndcg = [1 / math.log2(3), (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3)), 0.0, 0.0]
    scores = score_rankings(queries, rankings)
    assert scores["n_queries"] == 4
    assert scores["ndcg@10"] == pytest.approx(sum(ndcg) / 4)
    assert scores["recall@10"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert scores["mrr@10"] == pytest.approx((1 / 2 + 1 + 0 + 0) / 4)


def test_documents_past_rank_10_do_not_count():
    ranking = [(f"d{i}", 1.0 - i / 100) for i in range(20)]
    scores = score_rankings([Query("q", ("d12",))], [ranking])
    assert (scores["recall@10"], scores["mrr@10"], scores["ndcg@10"]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "line", ['{"query": "x"}', '{"query": "", "relevant": ["a"]}', '{"query": "x", "relevant": []}', "not json"]
)
def test_a_malformed_query_file_names_the_line(tmp_path: Path, line: str):
    path = tmp_path / "queries.jsonl"
    path.write_text('{"query": "fine", "relevant": ["a"]}\n' + line + "\n")
    with pytest.raises(UserError, match=r"queries.jsonl:2: expected"):
        load_queries(path)
