"""Ingest: stream sources in batches, validate each batch, upsert the good rows, quarantine the rest.

One ingest is one transaction: a refused source or a crash leaves the store as it was, and
running the same ingest again finishes the job (unchanged documents cost nothing).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline import store
from pipeline.errors import BatchRefused, SourceError
from pipeline.progress import counter
from pipeline.settings import Settings, ValidationOptions
from pipeline.sources import Record, Source, read_batches
from pipeline.validate import Failure, Validator, raw_row

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

DUPLICATE_IN_RUN = Failure(
    "unique_in_run", "id", "id already appeared earlier in this ingest", "duplicate id in source"
)


@dataclass(frozen=True)
class IngestOptions:
    """How to read and judge the sources of one ingest."""

    snapshot: bool = False  # ids absent from a source are tombstoned
    batch_size: int = 5000
    batch_bytes: int = 16_000_000
    max_file_bytes: int = 8_000_000
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    progress: bool = False  # draw a live row counter on stderr

    @classmethod
    def from_settings(cls, settings: Settings, snapshot: bool = False, progress: bool = False) -> IngestOptions:
        """The options the settings call for."""
        return cls(
            snapshot=snapshot,
            batch_size=settings.batch_size,
            batch_bytes=settings.batch_bytes,
            max_file_bytes=settings.max_file_bytes,
            validation=settings.validation,
            progress=progress,
        )


@dataclass
class IngestReport:
    """What one ingest did; inserted + updated + unchanged + quarantined == rows read."""

    run_id: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    quarantined: int = 0
    rows_read: int = 0
    sources: list[str] = field(default_factory=list)
    problems: dict[str, int] = field(default_factory=dict)  # failed rule -> rows
    data_docs: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


def ingest(
    pool: ConnectionPool,
    sources: Sequence[Source],
    validator: Validator,
    options: IngestOptions,
    run_id: str,
) -> IngestReport:
    """Ingest every source in one transaction; raise BatchRefused if a source is mostly bad."""
    report = IngestReport(run_id=run_id, sources=sorted({s.name for s in sources}))
    problems: Counter[str] = Counter()
    with store.transaction(pool) as conn, counter("ingesting rows", options.progress) as show:
        store.prepare_ingest(conn)
        store.claim_ingest(conn, run_id)  # a killed ingest's run is marked interrupted here
        for source in sources:
            problems += _ingest_source(conn, source, validator, options, report, show)
        if options.snapshot:
            for name in report.sources:
                report.deleted += store.tombstone_missing(conn, name, run_id)
    report.problems = dict(problems.most_common())
    return report


def _ingest_source(
    conn: psycopg.Connection,
    source: Source,
    validator: Validator,
    options: IngestOptions,
    report: IngestReport,
    show: Callable[[int, str], None],
) -> Counter[str]:
    """Ingest one source's batches; refuse it if too large a share fails. Return its problems."""
    read_before, failed_before = report.rows_read, report.quarantined
    problems: Counter[str] = Counter()
    for batch in read_batches(source, options.batch_size, options.max_file_bytes, options.batch_bytes):
        _ingest_batch(conn, source, batch, validator, report, problems)
        show(report.rows_read, f"{report.quarantined:,} quarantined")
    _check_source(source, report.rows_read - read_before, report.quarantined - failed_before, options, problems)
    return problems


def _ingest_batch(
    conn: psycopg.Connection,
    source: Source,
    batch: list[Record],
    validator: Validator,
    report: IngestReport,
    problems: Counter[str],
) -> None:
    verdict = validator.validate(batch, source.name)
    rejected = list(verdict.rejected)
    duplicates = store.seen_before(conn, source.name, [r.id for r in verdict.accepted])
    accepted = [r for r in verdict.accepted if r.id not in duplicates]
    rejected += [(r, [DUPLICATE_IN_RUN]) for r in verdict.accepted if r.id in duplicates]

    counts = store.upsert_documents(conn, [to_document(source.name, r) for r in accepted], report.run_id)
    quarantined = [
        store.QuarantineRow(
            source=source.name,
            doc_id=storable(r.id) if isinstance(r.id, str) else None,
            origin=storable(r.origin),
            reasons=[
                {"expectation": f.expectation, "column": f.column, "message": storable(f.message)} for f in failures
            ],
            raw=raw_row(r),
        )
        for r, failures in rejected
    ]
    store.quarantine(conn, report.run_id, quarantined)
    # A document whose new version is bad keeps its old version: it is still in the source.
    store.mark_seen(conn, source.name, [q.doc_id for q in quarantined if q.doc_id is not None])
    problems.update(f.summary for _, failures in rejected for f in failures)
    report.rows_read += len(batch)
    report.inserted += counts.inserted
    report.updated += counts.updated
    report.unchanged += counts.unchanged
    report.quarantined += len(quarantined)


def _check_source(source: Source, rows: int, failed: int, options: IngestOptions, problems: Counter[str]) -> None:
    if rows == 0:
        raise SourceError(f"{source.path}: no rows to ingest (a directory needs .md, .txt, .rst or .html files)")
    limit = options.validation.max_failed_share
    if failed / rows > limit:
        top = "; ".join(f"{message} ({n})" for message, n in problems.most_common(3))
        raise BatchRefused(
            f"{source.path}: {failed} of {rows} rows failed validation ({failed / rows:.0%}, over the "
            f"{limit:.0%} allowed), so nothing was ingested; most common: {top}. Fix the source, or raise "
            "RAGTUNE_VALIDATION__MAX_FAILED_SHARE if this is expected"
        )


def storable(text: str) -> str:
    """Text PostgreSQL can hold, for showing a rejected row: undecodable bytes as \\xNN, NUL as \\x00.

    A reader keeps bytes that are not UTF-8 as lone surrogates (a file name, an id); PostgreSQL
    refuses those and NUL, and one such row would otherwise fail the whole ingest.
    """
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no byte, e.g. from a JSON "\\ud800" escape
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def to_document(source: str, record: Record) -> store.DocumentRow:
    """A validated record as the row to store, with its content hash."""
    metadata = record.metadata or {}
    return store.DocumentRow(
        source=source,
        doc_id=record.id,
        title=record.title,
        text=record.text,
        metadata=metadata,
        content_hash=content_hash(record.title, record.text, metadata),
    )


def content_hash(title: str | None, text: str, metadata: dict[str, Any]) -> str:
    """A stable hash of everything a document says; any change to it is a new version."""
    canonical = json.dumps([title, text, metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
