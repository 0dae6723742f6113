"""Search: the chunks nearest to a text in the active index, each with the source it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipeline import store
from pipeline.embed import Encoder
from pipeline.errors import UserError

if TYPE_CHECKING:
    from pathlib import Path

    from psycopg_pool import ConnectionPool


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk, its score, and where to find it."""

    doc_id: str
    chunk_id: str
    score: float
    title: str | None
    source: str
    heading: str | None
    text: str

    def as_dict(self) -> dict[str, Any]:
        """The hit as JSON-ready data."""
        return asdict(self)


def active(pool: ConnectionPool) -> store.IndexInfo:
    """The index searches read now; a clear error if there is none yet."""
    with pool.connection() as conn:
        index = store.active_index(conn)
    if index is None:
        raise UserError("there is no index yet: run `ragtune ingest PATH` and then `ragtune refresh`")
    return index


def index_of_version(pool: ConnectionPool, model_version: str) -> store.IndexInfo:
    """A model version's index; a clear error if that version has none yet."""
    with pool.connection() as conn:
        index = store.index_of(conn, model_version)
    if index is None:
        raise UserError(f"model version {model_version} has no index yet: run `ragtune refresh` while it is champion")
    return index


def search(pool: ConnectionPool, encoder: Encoder, index: store.IndexInfo, text: str, k: int = 10) -> list[Hit]:
    """The k chunks of the index nearest to the text, best first."""
    if not text.strip():
        raise UserError("the search text is empty: say what you are looking for")
    query = encoder.encode([text])[0]
    with pool.connection() as conn:
        rows = store.search(conn, index, query, k)
    return [
        Hit(
            doc_id=r["doc_id"],
            chunk_id=r["chunk_id"],
            score=float(r["score"]),
            title=r["title"],
            source=r["source"],
            heading=r["heading"],
            text=r["text"],
        )
        for r in rows
    ]


def search_version(
    pool: ConnectionPool, tracking_uri: str, cache: Path, version: str, text: str, k: int = 10
) -> list[Hit]:
    """The k chunks nearest to the text in one model version's own index (a kept one too), with that version."""
    from pipeline import registry

    encoder = registry.cached_encoder(tracking_uri, version, str(cache))
    return search(pool, encoder, index_of_version(pool, version), text, k)
