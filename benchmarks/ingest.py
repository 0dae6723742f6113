"""Ingest throughput on real text, against a bare binary COPY of the same rows measured in the same run.

    python benchmarks/ingest.py --docs 20000 --out benchmarks/results/ingest.json

The documents are paragraphs of the Python standard library's documentation (the demo corpus),
each a separate JSONL row. Measured: a first ingest (validate + insert), a re-ingest with nothing
changed, a re-ingest with 1% changed, and the peer: COPY of the same (id, text) rows into a bare
table, the floor for any writer. Uses RAGTUNE_DATABASE_URL, or an embedded server in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from scratch import scratch_settings

from infra import database
from pipeline import demo, runs
from pipeline.ingest import IngestOptions, ingest
from pipeline.settings import Settings
from pipeline.sources import open_sources
from pipeline.validate import Validator


def paragraphs() -> list[str]:
    """Paragraphs of real documentation, at least 40 characters each."""
    with tempfile.TemporaryDirectory() as tmp:
        demo.write_stdlib_docs(Path(tmp))
        texts = [p.read_text() for p in sorted(Path(tmp).rglob("*.*")) if p.is_file()]
    return [para.strip() for text in texts for para in text.split("\n\n") if len(para.strip()) >= 40]


def write_corpus(path: Path, n: int, pool: list[str], changed: frozenset[int] = frozenset()) -> None:
    with path.open("w") as f:
        for i in range(n):
            text = pool[i % len(pool)] + f"\n\n(document {i})" + (" revised" if i in changed else "")
            f.write(json.dumps({"id": f"doc-{i}", "text": text, "metadata": {"n": i}}) + "\n")


class TimedValidator(Validator):
    """The real validator, timing itself."""

    seconds = 0.0

    def validate(self, records, source):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return super().validate(records, source)
        finally:
            self.seconds += time.perf_counter() - start


def timed_ingest(settings: Settings, path: Path) -> dict[str, Any]:
    pool = database.connect(settings)
    validator = TimedValidator(settings.validation)
    options = IngestOptions.from_settings(settings)
    start = time.perf_counter()
    with runs.recorded(pool, "ingest", {}) as run:
        report = ingest(pool, open_sources([path]), validator, options, run.run_id)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows_per_s": report.rows_read / seconds,
        "validate_s": validator.seconds,
        "inserted": report.inserted,
        "updated": report.updated,
        "unchanged": report.unchanged,
    }


def copy_peer(url: str, path: Path) -> dict[str, Any]:
    rows = [(r["id"], r["text"]) for r in map(json.loads, path.open())]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS peer_copy (id text PRIMARY KEY, text text NOT NULL)")
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY peer_copy (id, text) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["text", "text"])
            for row in rows:
                copy.write_row(row)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows_per_s": len(rows) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ingest.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, scratch_settings(Path(tmp)) as (settings, url):
        pool_text = paragraphs()
        corpus = Path(tmp) / "docs.jsonl"
        write_corpus(corpus, args.docs, pool_text)
        peer = copy_peer(url, corpus)
        full = timed_ingest(settings, corpus)
        noop = timed_ingest(settings, corpus)
        write_corpus(corpus, args.docs, pool_text, changed=frozenset(range(0, args.docs, 100)))
        one_percent = timed_ingest(settings, corpus)

    result = {
        "docs": args.docs,
        "peer_copy": peer,
        "full": full,
        "noop": noop,
        "one_percent_changed": one_percent,
        "ingest_vs_copy": full["rows_per_s"] / peer["rows_per_s"],
        "validation_share": full["validate_s"] / full["seconds"],
        "noop_vs_full": noop["seconds"] / full["seconds"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(f"{'run':<22}{'seconds':>9}{'rows/s':>11}  notes")
    print(f"{'COPY (peer)':<22}{peer['seconds']:>9.2f}{peer['rows_per_s']:>11,.0f}  bare binary COPY of id, text")
    for label, run in (("ingest, first", full), ("ingest, no change", noop), ("ingest, 1% changed", one_percent)):
        notes = f"inserted {run['inserted']:,} updated {run['updated']:,} unchanged {run['unchanged']:,}"
        notes += f", validation {run['validate_s']:.2f} s"
        print(f"{label:<22}{run['seconds']:>9.2f}{run['rows_per_s']:>11,.0f}  {notes}")
    print(
        f"ingest_vs_copy {result['ingest_vs_copy']:.3f}   validation_share {result['validation_share']:.2f}   "
        f"noop_vs_full {result['noop_vs_full']:.2f}   peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
