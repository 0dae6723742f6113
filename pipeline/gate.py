"""The promotion gate: challenger and champion scored on the same queries over the same passages.

Three checks, all of which must pass:
- held-out: the challenger's nDCG@10 on the held-out queries beats the champion's by ``min_delta``;
- canary: on held-out queries about documents older than the champion it loses at most ``max_regression``
  (a model that learned the new domain by forgetting the old one is not promoted);
- user queries: when the user configured their own query file, the challenger must not lose on it at all.
  Mined pairs are a weak proxy for real questions; a real query set outranks them.

Both models rank the same sampled corpus (every relevant document, then distractors up to a cap), so
the comparison is fair and costs two encodings of a bounded corpus rather than two full indexes.
Metrics come from ir-measures, as in ``ragtune eval``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.chunk import embedding_text
from pipeline.embed import Encoder
from pipeline.evaluate import CHUNK_DEPTH, Query, score_rankings
from pipeline.pairs import CorpusChunk


class GateOptions(BaseModel):
    """When a challenger may become champion."""

    model_config = ConfigDict(frozen=True)

    min_delta: float = Field(0.01, ge=0.0)  # held-out nDCG@10 gain the challenger must show
    max_regression: float = Field(0.01, ge=0.0)  # canary nDCG@10 loss it may show
    corpus_chunks: int = Field(2000, ge=10)  # passages ranked per evaluation set (relevant ones always in)


@dataclass(frozen=True)
class EvalSet:
    """Queries and the passages to rank for them: doc_id -> that document's passages."""

    name: str  # "heldout", "canary" or "user"
    queries: list[Query]
    corpus: dict[str, list[str]]

    @property
    def n_passages(self) -> int:
        """How many passages each model embeds for this set."""
        return sum(len(texts) for texts in self.corpus.values())


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    challenger: float | None
    champion: float | None
    rule: str


@dataclass(frozen=True)
class Decision:
    """Whether the challenger is promoted, why, and the checks behind it."""

    promote: bool
    reason: str
    checks: list[Check]

    def as_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready data."""
        return {"promote": self.promote, "reason": self.reason, "checks": [asdict(c) for c in self.checks]}


def eval_set(
    name: str, queries: list[Query], chunks: Sequence[CorpusChunk], max_passages: int, seed: int, indexed: bool
) -> EvalSet:
    """The passages to rank for a query set: every relevant document's, then other documents' up to the cap.

    ``indexed`` passages are what search embeds (under their title and heading); otherwise the bare
    body, as in the mined training pairs, so a title or heading query cannot win by copying words.
    """
    by_doc: dict[str, list[str]] = defaultdict(list)
    for c in chunks:
        by_doc[c.doc_id].append(embedding_text(c.title, c.heading, c.text) if indexed else c.text)
    relevant = sorted({doc for q in queries for doc in q.relevant if doc in by_doc})
    corpus = {doc: by_doc[doc] for doc in relevant}
    others = sorted(set(by_doc) - set(relevant))
    random.Random(seed).shuffle(others)
    size = sum(len(texts) for texts in corpus.values())
    for doc in others:
        if size + len(by_doc[doc]) > max_passages:
            continue
        corpus[doc] = by_doc[doc]
        size += len(by_doc[doc])
    kept = [q for q in queries if any(doc in corpus for doc in q.relevant)]
    return EvalSet(name, kept, corpus)


def score(encoder: Encoder, evalset: EvalSet) -> dict[str, Any]:
    """nDCG@10, recall@10 and MRR@10 of an encoder on a set (documents ranked by their best passage)."""
    if not evalset.queries:
        return {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0, "n_queries": 0}
    docs = [doc for doc, texts in evalset.corpus.items() for _ in texts]
    passages = encoder.encode([text for texts in evalset.corpus.values() for text in texts])
    queries = encoder.encode([q.text for q in evalset.queries])
    similarity = queries @ passages.T  # both L2-normalised: cosine
    rankings = []
    for row in similarity:
        best: dict[str, float] = {}
        for i in np.argsort(-row)[:CHUNK_DEPTH]:
            best.setdefault(docs[i], float(row[i]))
        rankings.append(list(best.items()))
    return score_rankings(evalset.queries, rankings)


def decide(
    challenger: dict[str, dict[str, Any]], champion: dict[str, dict[str, Any]], options: GateOptions
) -> Decision:
    """Apply the three checks to each set's metrics (keyed by set name) and say why."""
    checks = [_heldout_check(challenger, champion, options)]
    if _has(challenger, "canary"):
        floor = champion["canary"]["ndcg@10"] - options.max_regression - 1e-12  # float noise is not a loss
        checks.append(
            _check("canary", challenger, champion, challenger["canary"]["ndcg@10"] >= floor, _canary_rule(options))
        )
    if _has(challenger, "user"):
        wins = challenger["user"]["ndcg@10"] >= champion["user"]["ndcg@10"]
        checks.append(_check("user", challenger, champion, wins, "never lose on the user's own queries"))
    failed = [c for c in checks if not c.passed]
    if not failed:
        gain = checks[0].challenger - checks[0].champion  # type: ignore[operator]
        return Decision(True, f"held-out nDCG@10 +{gain:.4f} and no check failed", checks)
    return Decision(False, "; ".join(_failure(c) for c in failed), checks)


def _heldout_check(
    challenger: dict[str, dict[str, Any]], champion: dict[str, dict[str, Any]], options: GateOptions
) -> Check:
    rule = f"held-out nDCG@10 gain >= {options.min_delta}"
    if not _has(challenger, "heldout"):
        return Check("heldout", False, None, None, rule)
    gain = challenger["heldout"]["ndcg@10"] - champion["heldout"]["ndcg@10"]
    return _check("heldout", challenger, champion, gain >= options.min_delta - 1e-12, rule)


def _canary_rule(options: GateOptions) -> str:
    return f"canary nDCG@10 loss <= {options.max_regression}"


def _has(metrics: dict[str, dict[str, Any]], name: str) -> bool:
    return name in metrics and metrics[name].get("n_queries", 0) > 0


def _check(name: str, challenger: dict[str, Any], champion: dict[str, Any], passed: bool, rule: str) -> Check:
    return Check(name, passed, challenger[name]["ndcg@10"], champion[name]["ndcg@10"], rule)


def _failure(check: Check) -> str:
    if check.challenger is None:
        return f"{check.name}: no queries to judge by ({check.rule})"
    return f"{check.name}: nDCG@10 {check.challenger:.4f} vs champion {check.champion:.4f} ({check.rule})"
