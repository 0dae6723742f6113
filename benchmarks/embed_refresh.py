"""Refresh against sentence-transformers on the same chunks, no-op and 1% refreshes, and search, in one run.

    python benchmarks/embed_refresh.py --docs 2000 --out benchmarks/results/embed_refresh.json

The documents are pages of the Python standard library's documentation (the demo corpus), cut
into documents of a few paragraphs each. Measured on the chunks ragtune makes from them:
  (a) sentence-transformers ``encode`` of exactly those chunk texts with the same model (the peer),
  (b) a full ``refresh`` (chunking, embedding, binary COPY, HNSW build),
  (c) a refresh with nothing changed, (d) a refresh after 1% of the documents changed,
  (e) search latency p50/p95 over the HNSW index, and its recall@10 against exact search.
Uses RAGTUNE_DATABASE_URL, or an embedded server in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from scratch import scratch_settings

from infra import database
from pipeline import demo, registry, runs
from pipeline.chunk import embedding_text
from pipeline.ingest import IngestOptions, ingest
from pipeline.refresh import RefreshOptions, refresh
from pipeline.settings import Settings
from pipeline.sources import open_sources
from pipeline.validate import Validator

N_QUERIES = 200


def write_corpus(path: Path, n: int, changed: frozenset[int] = frozenset()) -> None:
    """n documents of three consecutive paragraphs of the standard library's documentation."""
    with tempfile.TemporaryDirectory() as tmp:
        demo.write_stdlib_docs(Path(tmp))
        paras = [
            p.strip()
            for f in sorted(Path(tmp).rglob("*.*"))
            for p in f.read_text().split("\n\n")
            if len(p.strip()) >= 80
        ]
    with path.open("w") as f:
        for i in range(n):
            body = "\n\n".join(paras[(3 * i + j) % len(paras)] for j in range(3))
            if i in changed:
                body += "\n\nThis page was revised."
            f.write(json.dumps({"id": f"doc-{i}", "title": f"Page {i}", "text": f"# Page {i}\n\n{body}"}) + "\n")


def run_ingest(settings: Settings, path: Path) -> None:
    pool = database.connect(settings)
    with runs.recorded(pool, "ingest", {}) as run:
        ingest(
            pool,
            open_sources([path]),
            Validator(settings.validation),
            IngestOptions.from_settings(settings),
            run.run_id,
        )


def run_refresh(settings: Settings, encoder: Any, version: str) -> dict[str, Any]:
    pool = database.connect(settings)
    with runs.recorded(pool, "refresh", {}) as run:
        return refresh(pool, encoder, version, RefreshOptions(chunk=settings.chunk), run.run_id).as_dict()


def chunk_texts(url: str) -> tuple[list[str], list[str]]:
    """(content_hash, text as embedded) of every distinct chunk, as refresh saw them."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (c.content_hash) c.content_hash, d.title, c.heading, c.text "
            "FROM chunks c JOIN documents d USING (source, doc_id)"
        ).fetchall()
    return [r[0] for r in rows], [embedding_text(r[1], r[2], r[3]) for r in rows]


def stored_vectors(url: str, table: str, hashes: list[str]) -> np.ndarray:
    from pgvector.psycopg import register_vector

    with psycopg.connect(url) as conn:
        register_vector(conn)
        query = sql.SQL("SELECT content_hash, embedding FROM {} WHERE content_hash = ANY(%s)").format(
            sql.Identifier(table)
        )
        found = {
            h: v.to_numpy() if hasattr(v, "to_numpy") else np.asarray(v)
            for h, v in conn.execute(query, (hashes,)).fetchall()
        }
    return np.stack([found[h] for h in hashes])


def search_latency(url: str, table: str, queries: np.ndarray) -> dict[str, float]:
    """HNSW search p50/p95 (ms) and recall@10 against an exact scan, for precomputed query vectors."""
    from pgvector.psycopg import register_vector

    top = sql.SQL("SELECT content_hash FROM {} ORDER BY embedding <=> %s LIMIT 10").format(sql.Identifier(table))
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("SET hnsw.ef_search = 100")
        timings, approximate = [], []
        for q in queries:
            start = time.perf_counter()
            approximate.append({r[0] for r in conn.execute(top, (q,)).fetchall()})
            timings.append((time.perf_counter() - start) * 1000)
        conn.execute("SET enable_indexscan = off")
        # prepare=False: a statement prepared before the SET would keep using the index.
        exact = [{r[0] for r in conn.execute(top, (q,), prepare=False).fetchall()} for q in queries]
    recall = statistics.mean(len(a & e) / len(e) for a, e in zip(approximate, exact, strict=True))
    return {
        "search_p50_ms": statistics.median(timings),
        "search_p95_ms": float(np.percentile(timings, 95)),
        "search_recall_at_10": recall,
    }


def search_at_scale(url: str, base: np.ndarray, size: int, rng: np.random.Generator) -> dict[str, float]:
    """Search latency and recall at ``size`` vectors: the real chunk embeddings plus noisy copies of them.

    Embedding 100k real chunks takes about half an hour on 2 cores; the search side can be measured
    at that size in seconds. The copies are labelled synthetic in the output.
    """
    from pgvector.psycopg import register_vector

    picks = rng.integers(0, len(base), size)
    vectors = base[picks] + rng.normal(0, 0.03, (size, base.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        dim = sql.Literal(base.shape[1])
        conn.execute(sql.SQL("CREATE TABLE scale (content_hash text PRIMARY KEY, embedding vector({}))").format(dim))
        with (
            conn.cursor() as cur,
            cur.copy("COPY scale (content_hash, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["text", "vector"])
            for i, v in enumerate(vectors):
                copy.write_row((f"s{i}", v))
        conn.execute("SET maintenance_work_mem = '1GB'")
        start = time.perf_counter()
        conn.execute("CREATE INDEX ON scale USING hnsw (embedding vector_cosine_ops)")
        build = time.perf_counter() - start
    queries = base[rng.choice(len(base), N_QUERIES)] + rng.normal(0, 0.03, (N_QUERIES, base.shape[1])).astype(
        np.float32
    )
    measured = search_latency(url, "scale", queries)
    return {"scale_vectors": size, "scale_hnsw_build_s": build, **{f"scale_{k}": v for k, v in measured.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/embed_refresh.json"))
    parser.add_argument(
        "--search-scale",
        type=int,
        default=100_000,
        help="also measure search at this many vectors (synthetic, from the real ones); 0: skip",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, scratch_settings(Path(tmp)) as (settings, url):
        work = Path(tmp)
        model = registry.champion(settings.tracking_uri, settings.mlflow_artifacts, registry.default_base_model())
        encoder = registry.load_encoder(settings.tracking_uri, model.version, settings.model_cache)

        corpus = work / "docs.jsonl"
        write_corpus(corpus, args.docs)
        run_ingest(settings, corpus)
        full = run_refresh(settings, encoder, model.version)
        noop = run_refresh(settings, encoder, model.version)
        hashes, texts = chunk_texts(url)

        from sentence_transformers import SentenceTransformer

        peer = SentenceTransformer(str(registry.default_base_model()), device="cpu")
        start = time.perf_counter()
        reference = peer.encode(texts, normalize_embeddings=True, batch_size=32)
        peer_seconds = time.perf_counter() - start
        cosines = np.sum(stored_vectors(url, full["index"], hashes) * reference, axis=1)

        write_corpus(corpus, args.docs, changed=frozenset(range(0, args.docs, 100)))
        run_ingest(settings, corpus)
        one_percent = run_refresh(settings, encoder, model.version)
        rng = np.random.default_rng(0)
        queries = reference[rng.choice(len(reference), size=min(N_QUERIES, len(reference)), replace=False)]
        queries = queries + rng.normal(0, 0.02, queries.shape).astype(np.float32)  # near, not equal, to a chunk
        search = search_latency(url, full["index"], queries)
        if args.search_scale:
            search |= search_at_scale(url, reference.astype(np.float32), args.search_scale, rng)

    chunks = len(texts)
    result = {
        "docs": args.docs,
        "chunks": chunks,
        "precision": full["precision"],
        "encode_seconds": peer_seconds,
        "full": full,
        "noop": noop,
        "one_percent_changed": one_percent,
        "refresh_vs_encode": peer_seconds / full["seconds"],
        "model_share": full["model_seconds"] / full["seconds"],
        "noop_vs_full": noop["seconds"] / full["seconds"],
        "cosine_vs_fp32_min": float(cosines.min()),
        "cosine_vs_fp32_mean": float(cosines.mean()),
        **search,
    }
    print(f"{'run':<34}{'seconds':>9}{'chunks/s':>10}  notes")
    print(
        f"{'sentence-transformers encode':<34}{peer_seconds:>9.2f}{chunks / peer_seconds:>10,.1f}  fp32, batch 32, "
        "the same chunk texts"
    )
    for label, r in (
        ("refresh, full", full),
        ("refresh, nothing changed", noop),
        ("refresh, 1% of docs changed", one_percent),
    ):
        rate = r["embedded"] / r["seconds"] if r["embedded"] else 0.0
        print(
            f"{label:<34}{r['seconds']:>9.2f}{rate:>10,.1f}  embedded {r['embedded']:,}, model "
            f"{r['model_seconds']:.2f} s, {r['precision']}"
        )
    print(
        f"refresh_vs_encode {result['refresh_vs_encode']:.2f}   model_share {result['model_share']:.2f}   "
        f"noop_vs_full {result['noop_vs_full']:.3f}   cosine vs fp32 min {result['cosine_vs_fp32_min']:.5f}"
    )
    print(
        f"search over {chunks:,} vectors: p50 {search['search_p50_ms']:.2f} ms   p95 {search['search_p95_ms']:.2f} ms"
        f"   recall@10 vs exact {search['search_recall_at_10']:.3f}"
    )
    if args.search_scale:
        print(
            f"search over {search['scale_vectors']:,} synthetic vectors (real ones plus noise): p50 "
            f"{search['scale_search_p50_ms']:.2f} ms   p95 {search['scale_search_p95_ms']:.2f} ms   recall@10 vs exact "
            f"{search['scale_search_recall_at_10']:.3f}   HNSW build {search['scale_hnsw_build_s']:.1f} s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
