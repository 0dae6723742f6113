"""Retrieval quality on a query set: nDCG@10, recall@10 and MRR@10, computed by ir-measures (trec_eval).

A query file is JSONL of ``{"query": ..., "relevant": [doc_id, ...]}``. A document is ranked by
its best chunk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import retrieve, store
from pipeline.embed import Encoder
from pipeline.errors import UserError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

CHUNK_DEPTH = 100  # chunks fetched per query, enough to rank well over 10 documents


@dataclass(frozen=True)
class Query:
    text: str
    relevant: tuple[str, ...]


def load_queries(path: Path) -> list[Query]:
    """Read a query file; a malformed line is an error naming the file and line."""
    if not path.is_file():
        raise UserError(f"{path}: no such query file")
    queries = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query, relevant = row["query"], row["relevant"]
            if not isinstance(query, str) or not query.strip() or not isinstance(relevant, list) or not relevant:
                raise ValueError
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UserError(
                f'{path}:{lineno}: expected {{"query": "...", "relevant": ["doc_id", ...]}} with a non-empty query '
                "and at least one relevant document id"
            ) from None
        queries.append(Query(query, tuple(str(doc) for doc in relevant)))
    if not queries:
        raise UserError(f"{path}: no queries in the file")
    return queries


def rank_documents(
    pool: ConnectionPool, encoder: Encoder, index: store.IndexInfo, text: str
) -> list[tuple[str, float]]:
    """Documents for a query, each scored by its best chunk, best first."""
    ranked: dict[str, float] = {}
    for hit in retrieve.search(pool, encoder, index, text, k=CHUNK_DEPTH):
        ranked.setdefault(hit.doc_id, hit.score)
    return list(ranked.items())


def evaluate(
    pool: ConnectionPool, encoder: Encoder, index: store.IndexInfo, queries: list[Query], per_query: bool = False
) -> dict[str, Any]:
    """nDCG@10, recall@10 and MRR@10 over the queries (and each query's ranked doc ids if asked)."""
    rankings = [rank_documents(pool, encoder, index, q.text) for q in queries]
    result: dict[str, Any] = {
        **score_rankings(queries, rankings),
        "model_version": index.model_version,
        "index": index.table,
    }
    if per_query:
        result["per_query"] = [
            {"query": q.text, "ranked_doc_ids": [doc for doc, _ in ranked[:10]]}
            for q, ranked in zip(queries, rankings, strict=True)
        ]
    return result


def score_rankings(queries: list[Query], rankings: list[list[tuple[str, float]]]) -> dict[str, Any]:
    """The metrics of ranked (doc_id, score) lists against each query's relevant documents."""
    import ir_measures
    from ir_measures import RR, R, nDCG

    qrels = [ir_measures.Qrel(str(i), doc, 1) for i, q in enumerate(queries) for doc in q.relevant]
    run = [ir_measures.ScoredDoc(str(i), doc, score) for i, ranked in enumerate(rankings) for doc, score in ranked]
    scores = ir_measures.calc_aggregate([nDCG @ 10, R @ 10, RR @ 10], qrels, run)
    return {
        "ndcg@10": scores[nDCG @ 10],
        "recall@10": scores[R @ 10],
        "mrr@10": scores[RR @ 10],
        "n_queries": len(queries),
    }
