"""Training and held-out data for fine-tuning, mined from the corpus itself (plus the user's own pairs).

A pair is a query and a passage it should find: a document's title or a section's heading, and the
body of a chunk under it. The passage is the chunk's body *without* its title and heading line, or
the pair would only teach the model to copy words it can already see. Generic headings
("Examples", "Notes", ...) and boilerplate headings shared by many documents say nothing about a
passage and are dropped.

The split is by document and stable: a document's side depends only on a seeded hash of its id,
so no document is on both sides, and a document held out once stays held out in later trainings.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import UserError
from pipeline.evaluate import Query

if TYPE_CHECKING:
    from datasets import Dataset

# Headings that name a kind of section, not what it is about.
GENERIC_HEADINGS = frozenset(
    {
        "abstract", "api", "attributes", "background", "changelog", "classes", "constants", "contents",
        "data", "description", "details", "example", "examples", "exceptions", "footnotes", "functions",
        "further reading", "getting started", "glossary", "index", "installation", "introduction",
        "license", "methods", "module contents", "navigation", "note", "notes", "other parameters",
        "overview", "parameters", "raises", "references", "returns", "see also", "summary",
        "table of contents", "todo", "usage", "warning", "warnings", "yields",
    }
)  # fmt: skip
MIN_QUERY_CHARS = 4
MAX_QUERY_CHARS = 200
MIN_PASSAGE_CHARS = 40
TITLE_PAIRS_PER_DOCUMENT = 3  # a title names the whole document: pair it with its first few chunks


class PairOptions(BaseModel):
    """How training pairs are mined and split."""

    model_config = ConfigDict(frozen=True)

    heldout_share: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 42
    max_pairs: int = Field(2000, ge=2)  # training pairs kept (a seeded sample): bounds the time of a retrain
    boilerplate_share: float = Field(0.05, gt=0.0, le=1.0)  # a heading in more documents is boilerplate
    user_pairs: Path | None = None  # JSONL of {"query", "doc_id"} or {"query", "text"}


@dataclass(frozen=True)
class CorpusChunk:
    """A live chunk with what mining needs to know about its document."""

    source: str
    doc_id: str
    title: str | None
    heading: str | None
    text: str
    updated_at: datetime


@dataclass(frozen=True)
class Pair:
    query: str
    passage: str
    doc_id: str
    kind: str  # "title", "heading" or "user"


@dataclass
class TrainingData:
    """Training pairs and the held-out queries to judge the result by."""

    train: list[Pair]
    heldout: list[Pair]
    heldout_queries: list[Query]
    # The held-out queries whose documents are older than a cut-off (the canary), if one was given.
    canary_queries: list[Query]
    stats: dict[str, int] = field(default_factory=dict)

    def train_dataset(self) -> Dataset:
        """The training pairs as a ``datasets.Dataset`` with columns ``anchor`` and ``positive``."""
        from datasets import Dataset

        return Dataset.from_dict({"anchor": [p.query for p in self.train], "positive": [p.passage for p in self.train]})


def build(chunks: Iterable[CorpusChunk], options: PairOptions, canary_before: datetime | None = None) -> TrainingData:
    """Mine pairs from the corpus, add the user's, dedupe, and split them by document."""
    chunks = list(chunks)
    boilerplate = _boilerplate_headings(chunks, options.boilerplate_share)
    mined = _dedupe(_mine(chunks, boilerplate))
    user = _dedupe(load_user_pairs(options.user_pairs, chunks)) if options.user_pairs else []
    heldout_docs = {c.doc_id for c in chunks if is_heldout(c.source, c.doc_id, options)}
    # Never train on a held-out document, not even with the user's pairs: it would leak into the gate.
    train = _dedupe(p for p in mined + user if p.doc_id not in heldout_docs)
    heldout = [p for p in mined if p.doc_id in heldout_docs]
    sampled = random.Random(options.seed).sample(train, k=min(len(train), options.max_pairs))
    old_docs = {c.doc_id for c in chunks if canary_before is not None and c.updated_at < canary_before}
    return TrainingData(
        train=sampled,
        heldout=heldout,
        heldout_queries=as_queries(heldout),
        canary_queries=as_queries([p for p in heldout if p.doc_id in old_docs]),
        stats={
            "chunks": len(chunks),
            "documents": len({c.doc_id for c in chunks}),
            "heldout_documents": len(heldout_docs),
            "mined_pairs": len(mined),
            "user_pairs": len(user),
            "user_pairs_on_heldout_documents": sum(p.doc_id in heldout_docs for p in user),
            "train_pairs": len(sampled),
            "heldout_pairs": len(heldout),
            "boilerplate_headings": len(boilerplate),
        },
    )


def is_heldout(source: str, doc_id: str, options: PairOptions) -> bool:
    """Whether a document is on the held-out side: a seeded hash of its id, the same in every training."""
    digest = hashlib.sha256(f"{options.seed}\0{source}\0{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < options.heldout_share


def as_queries(pairs: Sequence[Pair]) -> list[Query]:
    """Held-out pairs as evaluation queries: each distinct query with every document it names."""
    relevant: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        relevant[p.query].add(p.doc_id)
    return [Query(text, tuple(sorted(docs))) for text, docs in sorted(relevant.items())]


def is_generic(heading: str) -> bool:
    """Whether a heading names a kind of section ("Examples") rather than its subject."""
    words = re.sub(r"[^\w\s]", " ", heading.lower()).split()
    return not words or " ".join(words) in GENERIC_HEADINGS or all(w.isdigit() for w in words)


def load_user_pairs(path: Path, chunks: Sequence[CorpusChunk]) -> list[Pair]:
    """The user's pairs: ``{"query", "doc_id"}`` (paired with that document's chunks) or ``{"query", "text"}``."""
    if not path.is_file():
        raise UserError(f"{path}: no such pairs file (pairs.user_pairs)")
    bodies: dict[str, list[str]] = defaultdict(list)
    for c in chunks:
        bodies[c.doc_id].append(c.text)
    pairs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        row = _parse_pair(path, lineno, line)
        if isinstance(row.get("text"), str):
            pairs.append(Pair(row["query"], row["text"], str(row.get("doc_id", f"{path.name}:{lineno}")), "user"))
        elif row["doc_id"] in bodies:
            pairs += [Pair(row["query"], body, row["doc_id"], "user") for body in bodies[row["doc_id"]][:3]]
        else:
            raise UserError(f"{path}:{lineno}: doc_id {row['doc_id']!r} is not a live document; ingest it first")
    return pairs


def _parse_pair(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) or not row["query"].strip():
            raise ValueError
        if not isinstance(row.get("text"), str) and not isinstance(row.get("doc_id"), str):
            raise ValueError
    except (json.JSONDecodeError, ValueError):
        raise UserError(
            f'{path}:{lineno}: expected {{"query": "...", "doc_id": "..."}} or {{"query": "...", "text": "..."}}'
        ) from None
    return row


def _boilerplate_headings(chunks: Sequence[CorpusChunk], share: float) -> set[str]:
    """Headings found in more than ``share`` of the documents (and in at least 3): navigation, footers."""
    docs_with: dict[str, set[str]] = defaultdict(set)
    for c in chunks:
        if c.heading:
            docs_with[c.heading.strip().lower()].add(c.doc_id)
    n_docs = len({c.doc_id for c in chunks})
    return {h for h, docs in docs_with.items() if len(docs) >= 3 and len(docs) > share * n_docs}


def _mine(chunks: Sequence[CorpusChunk], boilerplate: set[str]) -> list[Pair]:
    pairs = []
    per_title: dict[str, int] = defaultdict(int)
    for c in chunks:
        if len(c.text) < MIN_PASSAGE_CHARS:
            continue
        heading = (c.heading or "").strip()
        if _usable(heading) and heading.lower() not in boilerplate and heading != (c.title or "").strip():
            pairs.append(Pair(heading, c.text, c.doc_id, "heading"))
        title = (c.title or "").strip()
        if _usable(title) and per_title[c.doc_id] < TITLE_PAIRS_PER_DOCUMENT:
            per_title[c.doc_id] += 1
            pairs.append(Pair(title, c.text, c.doc_id, "title"))
    return pairs


def _usable(query: str) -> bool:
    return MIN_QUERY_CHARS <= len(query) <= MAX_QUERY_CHARS and not is_generic(query)


def _dedupe(pairs: Iterable[Pair]) -> list[Pair]:
    seen: set[tuple[str, str]] = set()
    kept = []
    for p in pairs:
        key = (p.query.lower(), p.passage)
        if key not in seen:
            seen.add(key)
            kept.append(p)
    return kept
