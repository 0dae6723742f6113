"""Drift: how the default threshold was chosen, and what the test costs.

    python benchmarks/drift.py --seeds 20 --out benchmarks/results/drift.json

Real text, offline: the demo's standard-library pages and the ML libraries' pages, chunked with
ragtune's chunker and embedded by the packaged MiniLM. For each seed, the standard-library pages
are split at random into two halves by document: the "no drift" case, where any alarm is false.
The shift is a half of the standard library against the ML pages.

ragtune's test (pipeline.drift.compare: folds and permutations by document) is measured against
the peer a user would write from the scikit-learn docs: ``permutation_test_score`` with
stratified chunk-level folds and the same classifier, on the same samples in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import demo, drift
from pipeline.chunk import ChunkOptions, chunk_document, embedding_text
from pipeline.embed import Encoder
from pipeline.registry import default_base_model


def embed_pages(directory: Path, encoder: Encoder) -> drift.Sample:
    texts, documents = [], []
    for page in sorted(p for p in directory.rglob("*") if p.is_file()):
        fmt = "markdown" if page.suffix == ".md" else "text"
        body = page.read_text(encoding="utf-8")
        for c in chunk_document("docs", page.name, 1, page.stem, body, fmt, encoder.tokenizer, ChunkOptions()):
            texts.append(embedding_text(page.stem, c.heading, c.text))
            documents.append(page.name)
    encoder.choose_precision(texts[:32])
    return drift.Sample(encoder.encode(texts), documents)


def halves(sample: drift.Sample, seed: int) -> tuple[drift.Sample, drift.Sample]:
    names = sorted(set(sample.documents))
    first = set(np.random.default_rng(seed).permutation(names)[: len(names) // 2])
    mask = np.array([d in first for d in sample.documents])
    docs = np.array(sample.documents)
    return (
        drift.Sample(sample.vectors[mask], list(docs[mask])),
        drift.Sample(sample.vectors[~mask], list(docs[~mask])),
    )


def peer(reference: drift.Sample, current: drift.Sample, options: drift.DriftOptions) -> tuple[float, float]:
    """scikit-learn's permutation_test_score with chunk-level stratified folds, same classifier and PCA."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold, permutation_test_score

    vectors = np.vstack([reference.vectors, current.vectors])
    labels = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    reduced = PCA(n_components=options.components, random_state=options.seed).fit_transform(vectors)
    model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=[0.5, 0.5])
    folds = StratifiedKFold(options.folds, shuffle=True, random_state=options.seed)
    auc, _, p_value = permutation_test_score(
        model,
        reduced,
        labels,
        cv=folds,
        scoring="roc_auc",
        n_permutations=options.permutations,
        random_state=options.seed,
    )
    return float(auc), float(p_value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="random halves to test")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/drift.json"))
    args = parser.parse_args(argv)
    options = drift.DriftOptions()

    with tempfile.TemporaryDirectory() as tmp:
        demo.write_stdlib_docs(Path(tmp) / "stdlib")
        demo.write_ml_docs(Path(tmp) / "ml")
        encoder = Encoder(default_base_model())
        tick = time.perf_counter()
        stdlib = embed_pages(Path(tmp) / "stdlib", encoder)
        ml = embed_pages(Path(tmp) / "ml", encoder)
        embed_seconds = time.perf_counter() - tick
    print(
        f"embedded {len(stdlib):,} standard-library and {len(ml):,} ML chunks in {embed_seconds:.0f} s", file=sys.stderr
    )

    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        reference, current = halves(stdlib, seed)
        rows.append(measure("random halves", seed, reference, current, options))
    for seed in range(3):
        reference, _ = halves(stdlib, seed)
        rows.append(measure("shift to ML docs", seed, reference, ml, options))

    summary = summarise(rows, options)
    print_table(rows, summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": rows}, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def measure(case: str, seed: int, reference: drift.Sample, current: drift.Sample, options: drift.DriftOptions) -> dict:
    reference = capped(reference, options.reference_size, seed)  # as ragtune samples them
    current = capped(current, options.current_size, seed)
    tick = time.perf_counter()
    ours = drift.compare(reference, current, options)
    ours_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    peer_auc, peer_p = peer(reference, current, options)
    peer_seconds = time.perf_counter() - tick
    drifted, _ = drift.decide(ours, len(current), options, None)
    return {
        "case": case,
        "seed": seed,
        "n_reference": len(reference),
        "n_current": len(current),
        "auc": round(ours.auc, 4),
        "p_value": round(ours.p_value, 4),
        "permutations": ours.permutations,
        "drifted": drifted,
        "seconds": round(ours_seconds, 2),
        "peer_auc": round(peer_auc, 4),
        "peer_p_value": round(peer_p, 4),
        "peer_drifted": peer_auc >= options.threshold and peer_p < options.alpha,
        "peer_seconds": round(peer_seconds, 2),
    }


def capped(sample: drift.Sample, size: int, seed: int) -> drift.Sample:
    if len(sample) <= size:
        return sample
    picked = np.sort(np.random.default_rng(seed).choice(len(sample), size=size, replace=False))
    return drift.Sample(sample.vectors[picked], [sample.documents[i] for i in picked])


def summarise(rows: list[dict], options: drift.DriftOptions) -> dict[str, Any]:
    quiet = [r for r in rows if r["case"] == "random halves"]
    shift = [r for r in rows if r["case"] != "random halves"]
    return {
        "threshold": options.threshold,
        "alpha": options.alpha,
        "halves_auc_max": max(r["auc"] for r in quiet),
        "halves_auc_mean": round(float(np.mean([r["auc"] for r in quiet])), 4),
        "halves_false_alarms": sum(r["drifted"] for r in quiet),
        "peer_halves_auc_max": max(r["peer_auc"] for r in quiet),
        "peer_halves_false_alarms": sum(r["peer_drifted"] for r in quiet),
        "shift_auc_min": min(r["auc"] for r in shift),
        "shift_detected": sum(r["drifted"] for r in shift),
        "shift_cases": len(shift),
        "seconds_per_test": round(float(np.mean([r["seconds"] for r in rows])), 2),
        "peer_seconds_per_test": round(float(np.mean([r["peer_seconds"] for r in rows])), 2),
    }


def print_table(rows: list[dict], summary: dict[str, Any]) -> None:
    print(f"{'case':<18}{'seed':>5}{'AUC':>8}{'p':>8}{'drift':>7}{'peer AUC':>10}{'peer p':>8}{'peer drift':>11}")
    for r in rows:
        print(
            f"{r['case']:<18}{r['seed']:>5}{r['auc']:>8.3f}{r['p_value']:>8.3f}{'yes' if r['drifted'] else 'no':>7}"
            f"{r['peer_auc']:>10.3f}{r['peer_p_value']:>8.3f}{'yes' if r['peer_drifted'] else 'no':>11}"
        )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
