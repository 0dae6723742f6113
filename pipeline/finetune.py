"""A fine-tune, step by step: gather the data, train a challenger, judge it against the champion.

Each function here is one step of the finetune flow. Nothing in this module moves ``champion`` or
touches an index: a crash anywhere in it leaves both as they were.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import evaluate, gate, pairs, plots, registry, report, store, tracking
from pipeline.embed import Encoder, cpu_supports_bf16
from pipeline.errors import UserError
from pipeline.gate import Decision
from pipeline.progress import counter
from pipeline.train import FinetuneOptions, StepCallback, TrainResult, train_lora

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

MIN_TRAIN_PAIRS = 16  # fewer than this is not a domain, and one batch of in-batch negatives at most


@dataclass
class Corpus:
    """The live chunks, the pairs mined from them, and what they were when mined."""

    chunks: list[pairs.CorpusChunk]
    data: pairs.TrainingData
    snapshot: dict[str, Any] = field(default_factory=dict)


def gather(pool: ConnectionPool, options: pairs.PairOptions) -> Corpus:
    """Mine training pairs and held-out queries from the live corpus; a clear error if there are too few."""
    with pool.connection() as conn:
        chunks = [pairs.CorpusChunk(*row) for row in store.corpus_chunks(conn)]
        snapshot = store.corpus_snapshot(conn)
        last = store.last_champion_move(conn)
    canary_before: datetime | None = last["changed_at"] if last else None
    data = pairs.build(chunks, options, canary_before)
    if len(data.train) < MIN_TRAIN_PAIRS:
        raise UserError(
            f"only {len(data.train)} training pairs could be mined from {len(chunks)} chunks (at least "
            f"{MIN_TRAIN_PAIRS} are needed): ingest and refresh more documents, or add pairs with pairs.user_pairs"
        )
    if not data.heldout_queries:
        raise UserError("no held-out queries to judge a challenger by: ingest more documents, then run again")
    return Corpus(chunks, data, snapshot)


def train(
    base_dir: Path,
    corpus: Corpus,
    options: FinetuneOptions,
    workdir: Path,
    precision: str,
    progress: bool = False,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train a LoRA challenger from ``base_dir`` on the mined pairs (bf16 where the CPU has it natively)."""
    bf16 = precision == "bf16" or (precision == "auto" and cpu_supports_bf16())
    with counter("training", progress, total=None) as show:

        def step(done: int, total: int, loss: float) -> None:
            show(done, f"step {done}/{total}  loss {loss:.4f}")
            if on_step:
                on_step(done, total, loss)

        return train_lora(base_dir, corpus.data.train_dataset(), options, workdir, bf16, step)


def eval_sets(corpus: Corpus, options: gate.GateOptions, user_queries: Path | None, seed: int) -> list[gate.EvalSet]:
    """The sets both models are scored on: held-out, canary and (when configured) the user's queries."""
    data = corpus.data
    sets = [
        gate.eval_set("heldout", data.heldout_queries, corpus.chunks, options.corpus_chunks, seed, indexed=False),
        gate.eval_set("canary", data.canary_queries, corpus.chunks, options.corpus_chunks, seed, indexed=False),
    ]
    if user_queries is not None:
        queries = evaluate.load_queries(user_queries)
        sets.append(gate.eval_set("user", queries, corpus.chunks, options.corpus_chunks, seed, indexed=True))
    return [s for s in sets if s.queries]


def judge(
    champion: Encoder,
    trained: TrainResult,
    corpus: Corpus,
    options: gate.GateOptions,
    user_queries: Path | None,
    seed: int,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], gate.Decision]:
    """Score the trained challenger and the champion on every set and apply the gate.

    Returns (challenger metrics, champion metrics, decision), the metrics keyed by set name.
    """
    sets = eval_sets(corpus, options, user_queries, seed)
    challenger = Encoder(trained.model_dir)
    scores: dict[str, dict[str, Any]] = {"challenger": {}, "champion": {}}
    probe = [text for texts in list(sets[0].corpus.values())[:32] for text in texts][:32] if sets else []
    for encoder in (challenger, champion):
        encoder.choose_precision(probe)  # bf16 only where it agrees with fp32 on this corpus
    with counter("scoring challenger and champion", progress, total=2 * len(sets)) as show:
        done = 0
        for evalset in sets:
            for name, encoder in (("challenger", challenger), ("champion", champion)):
                scores[name][evalset.name] = gate.score(encoder, evalset)
                done += 1
                show(done, evalset.name)
    return scores["challenger"], scores["champion"], gate.decide(scores["challenger"], scores["champion"], options)


def should_train(pool: ConnectionPool) -> tuple[bool, str]:
    """Whether the latest drift decision calls for a fine-tune (one made since the champion was promoted)."""
    with pool.connection() as conn:
        drift = store.latest_drift(conn)
        last = store.last_champion_move(conn)
    if drift is None:
        return False, "no drift report yet, so nothing calls for a fine-tune; use --force to train anyway"
    if last is not None and drift["created_at"] < last["changed_at"]:
        return False, "no drift report since the champion was promoted; use --force to train anyway"
    if not drift["drifted"]:
        return False, f"the latest drift report calls for no fine-tune: {drift['reason'] or 'no drift'}"
    return True, f"drift: {drift['reason'] or 'score ' + format(drift['score'], '.3f')}"


def workdir(root: Path, stale_after_s: float = 86_400) -> Path:
    """A fresh directory for one training's adapter and merged model; leftovers of killed runs are removed."""
    import shutil

    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("finetune-*"):
        if time.time() - old.stat().st_mtime > stale_after_s:  # a day old: no training runs that long here
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="finetune-", dir=root))


def register_challenger(
    tracking_uri: str, artifact_root: Path, trained: TrainResult, corpus: Corpus, parent: str, run_id: str
) -> str:
    """Register the merged model as a new version with alias ``challenger``; return the version."""
    data, snap = corpus.data.stats, corpus.snapshot
    tags = {
        "base_model": f"{registry.MODEL_NAME}/{parent}",
        "parent_version": parent,
        "data_snapshot": f"{snap.get('documents')} documents, last change {snap.get('last_change')}, "
        f"md5 {snap.get('fingerprint')}",
        "train_pairs": str(data["train_pairs"]),
        "heldout_queries": str(len(corpus.data.heldout_queries)),
        "canary_queries": str(len(corpus.data.canary_queries)),
        "training_run_id": run_id,
    }
    description = (
        f"LoRA fine-tune of version {parent} on {data['train_pairs']:,} title/heading → passage pairs mined "
        f"from {data['documents']:,} documents; awaiting the promotion gate."
    )
    version = registry.register_encoder(tracking_uri, artifact_root, trained.model_dir, description, run_id, tags)
    registry.set_challenger(tracking_uri, version)
    return version


def record_decision(
    tracking_uri: str, result: dict[str, Any], trained: TrainResult, corpus: Corpus, run_id: str, workdir: Path
) -> None:
    """Put the gate's decision and numbers on the version and the MLflow run, with the report, plot and adapter."""
    import shutil

    heldout, champion = result["metrics"]["heldout"], result["champion_metrics"]["heldout"]
    verdict = "promoted to champion" if result["promoted"] else "not promoted; stays challenger"
    registry.tag_version(
        tracking_uri,
        result["model_version"],
        {
            "gate.decision": "promoted" if result["promoted"] else "rejected",
            "gate.reason": result["reason"],
            "gate.heldout_ndcg_at_10": f"{heldout['ndcg@10']:.4f}",
            "gate.champion_heldout_ndcg_at_10": f"{champion['ndcg@10']:.4f}",
        },
        description=(
            f"LoRA fine-tune of version {result['parent_version']} on {corpus.data.stats['train_pairs']:,} pairs "
            f"mined from {corpus.data.stats['documents']:,} documents. Held-out nDCG@10 {heldout['ndcg@10']:.4f} "
            f"vs champion {champion['ndcg@10']:.4f} on {heldout['n_queries']} queries: {verdict} "
            f"({result['reason']})."
        ),
    )
    (workdir / "finetune-report.md").write_text(report.finetune_markdown(result), encoding="utf-8")
    plots.finetune_figure(result, trained.losses, workdir / "challenger-vs-champion.png")
    with (workdir / "heldout-queries.jsonl").open("w", encoding="utf-8") as f:
        for q in corpus.data.heldout_queries:
            f.write(json.dumps({"query": q.text, "relevant": list(q.relevant)}) + "\n")
    tracking.finish_run(
        tracking_uri,
        run_id,
        metrics=report.finetune_mlflow_metrics(result),
        tags={"gate.decision": "promoted" if result["promoted"] else "rejected", "gate.reason": result["reason"]},
        artifacts={
            "adapter": trained.adapter_dir,
            "report": workdir / "finetune-report.md",
            "plots": workdir / "challenger-vs-champion.png",
            "data": workdir / "heldout-queries.jsonl",
        },
    )
    shutil.rmtree(workdir, ignore_errors=True)  # the registry holds the merged model now


def outcome(
    version: str,
    parent: str,
    ours: dict[str, Any],
    theirs: dict[str, Any],
    decision: Decision,
    trained: TrainResult,
    corpus: Corpus,
    mlflow_run: str,
    why: str,
) -> dict[str, Any]:
    """What a fine-tune did, as the command's JSON: the contract keys first, then the evidence."""
    return {
        "trained": True,
        "model_version": version,
        "parent_version": parent,
        "metrics": ours,
        "champion_metrics": theirs,
        "promoted": decision.promote,
        "reason": decision.reason,
        "checks": decision.as_dict()["checks"],
        "why_trained": why,
        "training": trained.summary(),
        "data": corpus.data.stats,
        "mlflow_run_id": mlflow_run,
        "reindex": None,
    }


def skipped(why: str) -> dict[str, Any]:
    """The command's JSON when nothing was trained."""
    return {
        "trained": False,
        "model_version": None,
        "metrics": None,
        "champion_metrics": None,
        "promoted": False,
        "reason": why,
    }
