"""Load: ingest and refresh a growing corpus of short documents; throughput, and peak memory that stays flat.

    python benchmarks/load.py --steps 10000,30000,100000 --out benchmarks/results/load.json

The corpus grows in steps (each a snapshot of the first N documents), and each step runs the real
commands, `ragtune ingest --snapshot` then `ragtune refresh`, as separate processes whose peak RSS
the kernel reports (wait4). The new work grows from step to step, so a reader or embedder that held
its whole input would grow with it; ragtune streams batches and pages and should not. The peer, in
the same run: the obvious non-streaming reader, the whole file read into a list of dicts. Uses
RAGTUNE_DATABASE_URL, or an embedded server in a temp dir; the packaged MiniLM unless --model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scratch import scratch_settings

WORDS = (
    "the a of to in and for with on by from is are was be this that it as at or an which can "
    "pump valve bearing nozzle coil filter sensor rotor gasket housing shaft relay harness controller "
    "coolant pressure signal corrosion load speed inspect replace drain flush refill tighten clean check "
    "index query vector model embedding document chunk source refresh nightly drift schema batch"
).split()

PEER = """
import json, resource, sys
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
print(json.dumps({"rows": len(rows), "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    """The first n documents of one seeded corpus: short texts (12 to 40 words), one chunk each."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40)))
            f.write(json.dumps({"id": f"doc-{i:07}", "title": f"Note {i}", "text": f"{text}."}) + "\n")


def measured(command: list[str], env: dict[str, str], parse: bool = True) -> dict[str, Any]:
    """Run a command; its wall seconds, its own peak RSS (VmHWM, polled until it exits) and its JSON output.

    Only the process itself counts, not the temporary Prefect server it may start beside it.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        peak_kb = 0
        while process.poll() is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(process.pid))
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command[2:4])} failed:\n{err.read()[-3000:]}")
        stdout = out.read()
    return {"seconds": seconds, "peak_rss_mb": peak_kb / 1024, "result": json.loads(stdout) if parse else None}


def _vm_hwm_kb(pid: int) -> int:
    """A live process's peak resident set so far, in kB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_step(env: dict[str, str], corpus: Path, docs: int) -> dict[str, Any]:
    ragtune = [sys.executable, "-m", "ragtune"]
    write_corpus(corpus, docs)
    ingest = measured([*ragtune, "ingest", str(corpus), "--snapshot", "--json"], env)
    refresh = measured([*ragtune, "refresh", "--json"], env)
    peer = measured([sys.executable, "-c", PEER, str(corpus)], env)
    peer["peak_rss_mb"] = peer["result"]["peak_rss_kb"] / 1024  # it reports its own: it may end before a poll
    return {"docs": docs, "ingest": ingest, "refresh": refresh, "peer_read_all": peer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="10000,30000,100000", help="corpus sizes, growing (comma-separated)")
    parser.add_argument("--model", type=Path, default=None, help="base model folder (default: packaged MiniLM)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/load.json"))
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    if steps != sorted(steps):
        parser.error("--steps must grow")

    rows = []
    with tempfile.TemporaryDirectory() as tmp, scratch_settings(Path(tmp)) as (settings, url):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}
        env.update(RAGTUNE_HOME=str(settings.home), RAGTUNE_DATABASE_URL=url)
        if args.model:
            env["RAGTUNE_BASE_MODEL"] = str(args.model.resolve())
        # Warm-up, not reported: the first refresh registers the base model in MLflow (a 90 MB copy).
        run_step(env, Path(tmp) / "docs.jsonl", min(200, steps[0]))
        before = min(200, steps[0])
        for docs in steps:
            step = run_step(env, Path(tmp) / "docs.jsonl", docs)
            step["new_docs"] = docs - before
            step["ingest_docs_per_s"] = step["new_docs"] / step["ingest"]["seconds"]
            embedded = step["refresh"]["result"]["embedded"]
            step["refresh_chunks_per_s"] = embedded / step["refresh"]["seconds"]
            rows.append(step)
            before = docs
            done = f"ingest {step['ingest']['seconds']:.1f} s, refresh {step['refresh']['seconds']:.1f} s"
            print(f"  {docs:>9,} docs: {done}", file=sys.stderr)

    first, last = rows[0], rows[-1]
    result = {
        "steps": rows,
        "work_growth": last["new_docs"] / first["new_docs"],
        "ingest_rss_growth": last["ingest"]["peak_rss_mb"] / first["ingest"]["peak_rss_mb"],
        "refresh_rss_growth": last["refresh"]["peak_rss_mb"] / first["refresh"]["peak_rss_mb"],
        "peer_rss_growth": last["peer_read_all"]["peak_rss_mb"] / first["peer_read_all"]["peak_rss_mb"],
        "precision": last["refresh"]["result"]["precision"],
    }
    header = f"{'corpus':>9} {'new':>8} {'ingest s':>9} {'docs/s':>8} {'RSS MB':>7} {'refresh s':>10} {'chunks/s':>9}"
    print(header + f" {'RSS MB':>7} {'peer RSS MB':>12}")
    for r in rows:
        print(
            f"{r['docs']:>9,} {r['new_docs']:>8,} {r['ingest']['seconds']:>9.1f} {r['ingest_docs_per_s']:>8,.0f} "
            f"{r['ingest']['peak_rss_mb']:>7.0f} {r['refresh']['seconds']:>10.1f} {r['refresh_chunks_per_s']:>9,.0f} "
            f"{r['refresh']['peak_rss_mb']:>7.0f} {r['peer_read_all']['peak_rss_mb']:>12.0f}"
        )
    print(
        f"new work grew {result['work_growth']:.1f}x; peak RSS grew: ingest {result['ingest_rss_growth']:.2f}x, "
        f"refresh {result['refresh_rss_growth']:.2f}x, peer (whole file in memory) {result['peer_rss_growth']:.2f}x"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
