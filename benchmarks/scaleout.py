"""Refresh with embedding sharded across 1, 2, ... Dask worker processes: the same full rebuild, timed.

    python benchmarks/scaleout.py --docs 150 --workers 1 2 --out benchmarks/results/scaleout.json

The documents are pages of the Python standard library's documentation (as in embed_refresh.py); the
model is the packaged all-MiniLM-L6-v2. One refresh chunks them and registers the model; then each
worker count rebuilds the index from nothing (``refresh --rebuild --workers N``), ``--repeat`` times,
in turns. Seconds are the refresh flow's wall time, Dask cluster start and stop included: what a user
waits for. Uses RAGTUNE_DATABASE_URL, or an embedded server in a temp dir; Prefect runs ephemeral.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from embed_refresh import run_ingest, write_corpus
from scratch import scratch_settings


def timed_refresh(settings: Any, workers: int) -> dict[str, Any]:
    """One full rebuild through the refresh flow with ``workers`` shards; the report and its wall time."""
    from flows.refresh import refresh_flow

    start = time.perf_counter()
    report = refresh_flow(settings=settings.model_copy(update={"refresh_workers": workers}), rebuild=True)
    return {**report, "wall_seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=150)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scaleout.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, scratch_settings(Path(tmp)) as (settings, _):
        for name, value in {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PREFECT_HOME": str(Path(tmp) / "prefect"),
            "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
        }.items():
            os.environ.setdefault(name, value)
        from flows.refresh import refresh_flow

        settings = settings.model_copy(update={"precision": args.precision})
        corpus = Path(tmp) / "docs.jsonl"
        write_corpus(corpus, args.docs)
        run_ingest(settings, corpus)
        first = refresh_flow(settings=settings)  # chunks, registers the model, fills the cache
        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in args.workers}
        for _ in range(args.repeat):
            for n in args.workers:
                runs[n].append(timed_refresh(settings, n))

    baseline = statistics.median(r["wall_seconds"] for r in runs[args.workers[0]])
    rows = []
    for n, measured in runs.items():
        wall = statistics.median(r["wall_seconds"] for r in measured)
        rows.append(
            {
                "workers": n,
                "chunks": measured[0]["embedded"],
                "wall_seconds": wall,
                "runs_wall_seconds": [r["wall_seconds"] for r in measured],
                "refresh_seconds": statistics.median(r["seconds"] for r in measured),
                "model_seconds": statistics.median(r["model_seconds"] for r in measured),
                "shards": measured[0]["shards"],
                "precision": measured[0]["precision"],
                "speedup": baseline / wall,
            }
        )
    result = {"docs": args.docs, "chunks": first["embedded"], "cpus": len(os.sched_getaffinity(0)), "runs": rows}
    header = f"{'workers':>7}{'chunks':>8}{'wall s':>9}{'refresh s':>11}{'model s':>9}{'chunks/s':>10}{'speedup':>9}"
    print(f"{header}  shards")
    for row in rows:
        print(
            f"{row['workers']:>7}{row['chunks']:>8,}{row['wall_seconds']:>9.2f}{row['refresh_seconds']:>11.2f}"
            f"{row['model_seconds']:>9.2f}{row['chunks'] / row['wall_seconds']:>10,.1f}{row['speedup']:>9.2f}"
            f"  {row['shards']} ({row['precision']})"
        )
    print(
        f"{result['cpus']} CPUs; median of {args.repeat} runs. wall: the flow; refresh: its report's seconds "
        "(Dask cluster start and stop included); model: the slowest shard's encoder time"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
