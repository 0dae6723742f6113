"""ragtune's library: every stage of the nightly loop, free of orchestration."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.retrieve import Hit
    from pipeline.settings import Settings


def search(text: str, k: int = 10, settings: Settings | None = None) -> list[Hit]:
    """Top-k chunks for a text, with their sources, from the active index (like `ragtune search`).

    A convenience entry point: it builds Settings from the environment unless given some, and keeps
    one connection pool and one encoder per model version for the life of the process.
    """
    from infra import database
    from pipeline import registry, retrieve
    from pipeline.settings import Settings

    settings = settings or Settings()
    pool = database.connect(settings)
    index = retrieve.active(pool)
    encoder = registry.cached_encoder(settings.tracking_uri, index.model_version, str(settings.model_cache))
    return retrieve.search(pool, encoder, index, text, k)
