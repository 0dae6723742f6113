"""Refresh: keep chunks in step with documents, and embed only the chunk texts the index lacks.

Vectors are keyed by the content hash of what is embedded, so an unchanged chunk is never embedded
twice, and each batch of vectors is committed on its own: a crash loses at most one batch of work,
and the next refresh carries on from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline import store
from pipeline.chunk import ChunkOptions, Tokenizer, chunk_document, embedding_text
from pipeline.embed import Encoder, Precision
from pipeline.errors import UserError
from pipeline.progress import counter

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from pipeline.settings import Settings

PROBE_SIZE = 32
LOCK = "ragtune.refresh"  # held by refresh and reindex: one writer of vector tables at a time
LOCKED_KINDS = ("refresh", "reindex", "rollback")  # runs that hold LOCK: the holder knows the others are dead

ChunkText = tuple[str, str | None, str | None, str]  # (content_hash, title, heading, text) as store reads it


@dataclass(frozen=True)
class RefreshOptions:
    """How to chunk and embed."""

    chunk: ChunkOptions = field(default_factory=ChunkOptions)
    write_batch: int = 1024  # vectors per COPY and commit
    precision: str = "auto"  # auto: bf16 where the CPU has it and a probe agrees with fp32
    progress: bool = False
    index_retention: int = 1  # retired indexes kept for rollback
    # A delta larger than this share of the index loads with no HNSW index, which is built again after:
    # inserting into HNSW costs ~2.4 ms a row, building it ~0.3 ms (40k x 384 here). Meanwhile searches
    # on this index scan exactly: correct, slower. None: always insert into the live HNSW index.
    bulk_load_fraction: float | None = 0.2
    bulk_load_minimum: int = 2000  # below this many vectors, inserting is cheap whatever the share

    @classmethod
    def from_settings(cls, settings: Settings, progress: bool = False) -> RefreshOptions:
        """The options the settings call for."""
        return cls(
            chunk=settings.chunk,
            precision=settings.precision,
            progress=progress,
            index_retention=settings.index_retention,
        )


@dataclass
class RefreshReport:
    """What one refresh did."""

    run_id: str
    model_version: str
    index: str
    embedded: int = 0  # chunk texts embedded now
    deleted: int = 0  # vectors removed: their chunks are gone
    skipped: int = 0  # chunk texts the index already held
    chunked_documents: int = 0
    dropped_chunks: int = 0  # chunks of tombstoned documents
    precision: str = "fp32"
    probe_cosine: float | None = None
    hnsw_built: bool = False
    bulk_load: bool = False  # the delta was large: HNSW was dropped for the load and built again after
    switched_from: str | None = None  # the version whose index searches read before, if this switched them
    dropped_indexes: list[str] = field(default_factory=list)  # retired indexes beyond retention
    seconds: float = 0.0
    model_seconds: float = 0.0  # of which in the encoder (the slowest shard's, when shards run side by side)
    shards: list[int] = field(default_factory=list)  # chunk texts each embedding shard did; [n] in-process

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class EmbedStats:
    """What embedding one share of the missing chunk texts did."""

    embedded: int
    model_seconds: float


# Embeds the chunk texts the index lacks (index, how many, options at a settled precision), committing
# batch by batch, and returns one EmbedStats per shard. The default embeds in this process, in one shard;
# a sharded one has each shard read its share from the database (embed_shard).
Embedder = Callable[[store.IndexInfo, int, RefreshOptions], list[EmbedStats]]


def refresh(
    pool: ConnectionPool,
    encoder: Encoder,
    model_version: str,
    options: RefreshOptions,
    run_id: str,
    rebuild: bool = False,
    still_champion: Callable[[], bool] | None = None,
    embed: Embedder | None = None,
) -> RefreshReport:
    """Bring the model version's index up to date with the live documents, and make searches read it.

    With ``rebuild`` the index is built again from nothing beside the live one, which serves until the
    new table takes its place in one transaction. One refresh (or reindex) runs at a time, and
    ``still_champion`` is asked once the lock is held, in case a promotion moved the champion meanwhile.
    ``embed`` replaces in-process embedding (see ``fill_index``); the lock stays with this caller.
    """
    with store.exclusive(pool, LOCK) as alone:
        if not alone:
            raise UserError("another refresh is running against this database; wait for it to finish, then run again")
        if still_champion is not None and not still_champion():
            raise UserError("champion moved while this refresh started; run `ragtune refresh` again")
        store.mark_interrupted(pool, LOCKED_KINDS, run_id)
        report = fill_index(pool, encoder, model_version, options, run_id, rebuild, embed)
        with store.transaction(pool) as conn:
            # Searches follow the champion: this switches on first use, and finishes a move that a
            # crash cut short between the registry alias and the index switch.
            report.switched_from = store.switch_index(conn, model_version)
            if report.switched_from is not None:
                last = store.last_champion_move(conn)
                if last is not None and str(last["version"]) != model_version:
                    reason = "refresh finished a champion move that was cut short"
                    store.record_alias(conn, "champion", model_version, report.switched_from, reason, run_id)
                report.dropped_indexes = store.drop_retired_indexes(conn, options.index_retention)
        return report


def fill_index(
    pool: ConnectionPool,
    encoder: Encoder,
    model_version: str,
    options: RefreshOptions,
    run_id: str,
    rebuild: bool = False,
    embed: Embedder | None = None,
) -> RefreshReport:
    """Chunk what changed and embed every chunk text the version's index lacks; searches are not switched.

    Callers hold the refresh lock. Vectors are committed batch by batch, so a crash loses one batch
    and the next call carries on from there. The precision is settled here, once, and ``embed`` (by
    default: in this process) does the embedding, in as many shards as it likes.
    """
    started = time.perf_counter()
    with store.transaction(pool) as conn:
        live = store.ensure_index(conn, model_version, encoder.dimension)
        index = store.shadow_of(live) if rebuild else live
        if rebuild:
            store.create_index_table(conn, index, fresh=True)
    report = RefreshReport(run_id=run_id, model_version=model_version, index=live.table)
    report.chunked_documents, report.dropped_chunks = sync_chunks(pool, encoder.tokenizer, options)
    with pool.connection() as conn:
        missing = store.count_to_embed(conn, index)
        report.skipped = store.count_live_hashes(conn) - missing
    if not rebuild and _is_bulk_load(missing, report.skipped, options):
        with store.transaction(pool) as conn:
            report.bulk_load = store.drop_hnsw(conn, index)
    _embed_missing(pool, encoder, index, missing, options, report, embed)
    with store.transaction(pool) as conn:
        report.hnsw_built = store.ensure_hnsw(conn, index)
        report.deleted = store.delete_orphan_vectors(conn, index)
        if rebuild:
            store.replace_index_table(conn, index, live)
    report.seconds = time.perf_counter() - started
    return report


def _is_bulk_load(missing: int, present: int, options: RefreshOptions) -> bool:
    """Whether loading ``missing`` vectors beside ``present`` ones is cheaper with HNSW built after."""
    if options.bulk_load_fraction is None:
        return False
    return missing >= options.bulk_load_minimum and missing > options.bulk_load_fraction * present


def _embed_missing(
    pool: ConnectionPool,
    encoder: Encoder,
    index: store.IndexInfo,
    missing: int,
    options: RefreshOptions,
    report: RefreshReport,
    embed: Embedder | None,
) -> None:
    """Settle the precision once for every shard, have ``embed`` (or this process) embed what is missing."""
    tick = time.perf_counter()
    with pool.connection() as conn:
        first = store.chunks_to_embed(conn, index, limit=PROBE_SIZE)
    probe = [embedding_text(title, heading, text) for _, title, heading, text in first]
    precision = _choose_precision(encoder, probe, options.precision)  # the probe is model work too
    report.model_seconds += time.perf_counter() - tick
    report.precision, report.probe_cosine = precision.name, precision.probe_cosine
    settled = replace(options, precision=precision.name)
    if not missing:
        shards: list[EmbedStats] = []
    elif embed is None:
        shards = [embed_chunks(pool, encoder, index, settled, total=missing)]
    else:
        shards = embed(index, missing, settled)
    report.embedded = sum(shard.embedded for shard in shards)
    report.model_seconds += max((shard.model_seconds for shard in shards), default=0.0)  # side by side
    report.shards = [shard.embedded for shard in shards]


def embed_chunks(
    pool: ConnectionPool,
    encoder: Encoder,
    index: store.IndexInfo,
    options: RefreshOptions,
    shard: int = 0,
    shards: int = 1,
    total: int | None = None,
) -> EmbedStats:
    """Embed the chunk texts the index lacks (one shard's share of them) and append them to the index.

    They are read a page at a time in content-hash order, and each page is encoded and written with
    one committed COPY: memory stays flat however large the corpus, and a crash loses one page.
    """
    embedded, encoded, model_seconds, after = 0, 0, 0.0, ""
    with counter("embedding chunks", options.progress, total=total) as show:

        def advance(n: int) -> None:  # after each encoder batch, not each write: the bar keeps moving
            nonlocal encoded
            encoded += n
            show(encoded, encoder.precision.name)

        while True:
            with pool.connection() as conn:  # every shard pages through all; each keeps its own
                page = store.chunks_to_embed(conn, index, after=after, limit=options.write_batch * shards)
            if not page:
                break
            after = page[-1][0]
            mine = [row for row in page if shard_of(row[0], shards) == shard]
            texts = [embedding_text(title, heading, text) for _, title, heading, text in mine]
            if not texts:
                continue
            tick = time.perf_counter()
            if encoder.precision.name != options.precision:  # a shard's own encoder, or a caller that left "auto"
                _choose_precision(encoder, texts[:PROBE_SIZE], options.precision)
            vectors = encoder.encode(texts, on_batch=advance)
            model_seconds += time.perf_counter() - tick
            with store.transaction(pool) as conn:
                store.write_vectors(conn, index, list(zip([row[0] for row in mine], vectors, strict=True)))
            embedded += len(mine)
    return EmbedStats(embedded=embedded, model_seconds=model_seconds)


def embed_shard(
    pool: ConnectionPool, encoder: Encoder, index: store.IndexInfo, shard: int, shards: int, options: RefreshOptions
) -> EmbedStats:
    """Embed the missing chunk texts of one shard (of ``shards``), read from the index's database.

    Shards are cut by content hash, so they stay disjoint however far the others have got, and each
    commits its own batches: after a crash, the next refresh carries on from what every shard committed.
    """
    return embed_chunks(pool, encoder, index, options, shard, shards)


def shard_of(content_hash: str, shards: int) -> int:
    """The shard (0 .. shards-1) that embeds a chunk text: the same on every run and in every worker."""
    return int(content_hash[:8], 16) % shards


def sync_chunks(pool: ConnectionPool, tokenizer: Tokenizer, options: RefreshOptions) -> tuple[int, int]:
    """Re-chunk new and changed documents, drop the chunks of deleted ones; return both counts."""
    with store.transaction(pool) as conn:
        dropped = store.drop_tombstoned_chunks(conn)
        done = 0
        with counter("chunking documents", options.progress, total=store.count_stale_documents(conn)) as show:
            for doc in store.stale_documents(conn):  # streamed from a server-side cursor
                chunks = chunk_document(
                    doc.source, doc.doc_id, doc.version, doc.title, doc.text, doc.format, tokenizer, options.chunk
                )
                store.replace_chunks(conn, doc.source, doc.doc_id, chunks)
                done += 1
                show(done, "")
    return done, dropped


def _choose_precision(encoder: Encoder, texts: list[str], wanted: str) -> Precision:
    if wanted == "fp32":
        encoder.precision = Precision("fp32", None, "configured")
    elif wanted == "bf16":
        encoder.precision = Precision("bf16", None, "configured")
    else:
        encoder.choose_precision(texts[:PROBE_SIZE])
    return encoder.precision
