"""Moving ``champion``: promotion of a challenger, its index switch, and rollback.

The registry alias is the truth about which model is champion; the active-index pointer follows it.
A move sets the alias first, then switches the pointer and records the move in one database
transaction. If a crash falls between the two, the next refresh finds the champion's index not
active and switches it then (``refresh`` always leaves searches on the champion's index).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline import drift, refresh, registry, store
from pipeline.embed import Encoder
from pipeline.errors import UserError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool


@dataclass
class Move:
    """One move of ``champion``, and what happened to the indexes."""

    version: str
    previous: str | None
    reason: str
    switched: bool  # searches now read the new champion's index
    index: str | None  # its table, if it has one
    dropped_indexes: list[str] = field(default_factory=list)
    behind: int = 0  # chunk texts the index lacks (a kept index misses what arrived since it retired)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The move as JSON-ready data."""
        return asdict(self)


def record_first_champion(pool: ConnectionPool, version: str, run_id: str) -> None:
    """Record the base model's registration as the first move of ``champion``."""
    with store.transaction(pool) as conn:
        store.record_alias(conn, registry.CHAMPION, version, None, "first use: the base model", run_id)


def promote(
    pool: ConnectionPool,
    tracking_uri: str,
    encoder: Encoder,
    version: str,
    reason: str,
    run_id: str,
    options: refresh.RefreshOptions,
    drift_options: drift.DriftOptions | None = None,
) -> tuple[refresh.RefreshReport, Move]:
    """Build a version's index beside the live one, then make it champion and switch searches to it.

    The build embeds every live chunk (HNSW after the load) while searches keep reading the live
    index; the switch is one transaction. A crash during the build leaves champion and the live
    index as they were, and a partial index that the next call completes (vectors are keyed by the
    text they embed). The refresh lock is held throughout, so no refresh interleaves. The new
    champion's drift reference is taken from the index it gets: what it knew when promoted.
    """
    with _locked(pool, run_id):
        built = refresh.fill_index(pool, encoder, version, options, run_id)
        with pool.connection() as conn:
            index = store.index_of(conn, version)
        if index is not None:
            drift.ensure_reference(pool, index, drift_options or drift.DriftOptions(), run_id)
        return built, _move(pool, tracking_uri, version, reason, run_id, options.index_retention)


def rollback(pool: ConnectionPool, tracking_uri: str, target: str | None, run_id: str, retention: int) -> Move:
    """Move ``champion`` back (by default to the version it replaced) and switch to its kept index."""
    current = registry.resolve(tracking_uri, registry.CHAMPION)
    with pool.connection() as conn:
        last = store.last_champion_move(conn)
    if target is None:
        if not last or not last["previous_version"]:
            raise UserError("there is no earlier champion to roll back to; see `ragtune status`")
        target = str(last["previous_version"])
    target = registry.resolve(tracking_uri, target)
    if target == current:
        raise UserError(f"version {target} is already champion; name another version: `ragtune rollback VERSION`")
    with _locked(pool, run_id):
        return _move(pool, tracking_uri, target, f"rollback from version {current}", run_id, retention)


@contextlib.contextmanager
def _locked(pool: ConnectionPool, run_id: str) -> Iterator[None]:
    with store.exclusive(pool, refresh.LOCK) as alone:
        if not alone:
            raise UserError("a refresh or reindex is running against this database; wait for it, then run again")
        store.mark_interrupted(pool, refresh.LOCKED_KINDS, run_id)
        yield


def _move(pool: ConnectionPool, tracking_uri: str, version: str, reason: str, run_id: str, retention: int) -> Move:
    previous = registry.set_champion(tracking_uri, version, reason, run_id)
    move = Move(version=version, previous=previous, reason=reason, switched=False, index=None)
    with store.transaction(pool) as conn:
        store.record_alias(conn, registry.CHAMPION, version, previous, reason, run_id)
        index = store.index_of(conn, version)
        # A 'building' index is partial (a reindex that never finished): serving it would hide documents.
        if index is None or store.index_status(conn, version) == "building":
            move.note = (
                f"version {version} has no finished index, so searches still read the previous one; "
                "run `ragtune refresh --rebuild` to build its index and switch to it"
            )
            return move
        move.index = index.table
        move.switched = store.switch_index(conn, version) is not None
        move.dropped_indexes = store.drop_retired_indexes(conn, retention)
        move.behind = store.count_to_embed(conn, index)
    if move.behind:
        move.note = f"its index lacks {move.behind} chunk texts added since it retired; `ragtune refresh` adds them"
    return move
