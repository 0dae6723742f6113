"""Human-readable summaries of runs, as markdown (Prefect artifacts) and plain lines (the CLI)."""

from __future__ import annotations

from typing import Any


def ingest_markdown(report: dict[str, Any]) -> str:
    """The counts of one ingest as a markdown table, with what was held back and why."""
    rows = ["| | rows |", "|---|---:|"]
    rows += [
        f"| {key} | {report[key]:,} |"
        for key in ("inserted", "updated", "unchanged", "deleted", "quarantined", "rows_read")
    ]
    lines = [f"# Ingest of {', '.join(report['sources'])}", "", *rows, ""]
    if report["problems"]:
        lines += ["## Held back in quarantine", "", "| problem | rows |", "|---|---:|"]
        lines += [f"| {problem} | {n:,} |" for problem, n in report["problems"].items()]
        lines += ["", "`ragtune quarantine list` shows each row and its reasons.", ""]
    if report.get("data_docs"):
        lines += [f"Great Expectations Data Docs: `{report['data_docs']}`"]
    lines += [f"Run id: `{report['run_id']}`"]
    return "\n".join(lines)


def refresh_markdown(report: dict[str, Any]) -> str:
    """The counts and timings of one refresh as a markdown table."""
    rows = ["| | |", "|---|---:|"]
    rows += [
        f"| {key} | {report[key]:,} |"
        for key in ("embedded", "skipped", "deleted", "chunked_documents", "dropped_chunks")
    ]
    rows += [
        f"| seconds | {report['seconds']:.1f} |",
        f"| of which in the model | {report['model_seconds']:.1f} |",
        f"| precision | {report['precision']} |",
        f"| embedding shards | {len(report['shards'])} |",
    ]
    return "\n".join(
        [
            f"# Refresh of index `{report['index']}` (model version {report['model_version']})",
            "",
            *rows,
            "",
            f"Run id: `{report['run_id']}`",
        ]
    )


def refresh_mlflow_fields(report: dict[str, Any]) -> dict[str, Any]:
    """A refresh report as MLflow params, metrics and tags."""
    metrics = {
        key: report[key]
        for key in ("embedded", "skipped", "deleted", "chunked_documents", "dropped_chunks", "seconds", "model_seconds")
    }
    if report["probe_cosine"] is not None:
        metrics["probe_cosine"] = report["probe_cosine"]
    metrics["shards"] = len(report["shards"])
    return {
        "params": {
            "model_version": report["model_version"],
            "index": report["index"],
            "precision": report["precision"],
        },
        "metrics": metrics,
        "tags": {"ragtune.run_id": report["run_id"]},
    }


def eval_markdown(result: dict[str, Any]) -> str:
    """Retrieval metrics as a markdown table."""
    rows = [f"| {key} | {result[key]:.4f} |" for key in ("ndcg@10", "recall@10", "mrr@10")]
    return "\n".join(
        [
            f"# Retrieval quality of model version {result['model_version']}",
            "",
            "| metric | value |",
            "|---|---:|",
            *rows,
            "",
            f"{result['n_queries']} queries",
        ]
    )


def eval_mlflow_fields(result: dict[str, Any], queries: Any) -> dict[str, Any]:
    """Eval metrics as MLflow params, metrics and tags (MLflow metric names cannot hold '@')."""
    return {
        "params": {"model_version": result["model_version"], "queries": str(queries), "n_queries": result["n_queries"]},
        "metrics": {key.replace("@", "_at_"): result[key] for key in ("ndcg@10", "recall@10", "mrr@10")},
        "tags": {"ragtune.index": result["index"]},
    }


def finetune_markdown(result: dict[str, Any]) -> str:
    """The gate's decision with both models' numbers on each query set, as a markdown report."""
    if not result["trained"]:
        return f"# Fine-tune skipped\n\n{result['reason']}\n"
    verdict = "promoted to champion" if result["promoted"] else "stays challenger"
    lines = [
        f"# Fine-tune: version {result['model_version']} {verdict}",
        "",
        f"**Decision:** {result['reason']}",
        "",
        f"Challenger version {result['model_version']} (LoRA on version {result['parent_version']}) "
        f"against champion version {result['parent_version']}, on the same queries and passages.",
        "",
        "| set | queries | metric | challenger | champion | change |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, ours in result["metrics"].items():
        theirs = result["champion_metrics"][name]
        for metric in ("ndcg@10", "recall@10", "mrr@10"):
            mine, champ, n = ours[metric], theirs[metric], ours["n_queries"]
            lines.append(f"| {name} | {n} | {metric} | {mine:.4f} | {champ:.4f} | {mine - champ:+.4f} |")
    lines += ["", "| check | rule | passed |", "|---|---|---|"]
    lines += [f"| {c['name']} | {c['rule']} | {'yes' if c['passed'] else 'no'} |" for c in result["checks"]]
    training, data = result["training"], result["data"]
    lines += [
        "",
        f"Training: {data['train_pairs']:,} pairs from {data['documents']:,} documents "
        f"({data['heldout_documents']:,} held out), {training['steps']} steps in {training['seconds']:.0f} s "
        f"({training['precision']}), final loss {training['final_loss']:.4f}, "
        f"{training['trainable_share']:.2%} of the weights trained.",
    ]
    if result.get("reindex"):
        lines += ["", reindex_line(result["reindex"])]
    lines += ["", f"MLflow run: `{result['mlflow_run_id']}`"]
    return "\n".join(lines)


def reindex_line(reindex: dict[str, Any]) -> str:
    """One line on a promotion's index build and switch."""
    return (
        f"Index `{reindex['index']}` built beside the live one ({reindex['embedded']:,} chunk texts embedded, "
        f"{reindex['seconds']:.0f} s); searches switched from version {reindex['switched_from']} "
        f"to {reindex['model_version']}."
    )


def move_markdown(move: dict[str, Any]) -> str:
    """A move of ``champion`` (a promotion or a rollback) as markdown."""
    lines = [f"# Champion: version {move['previous']} → {move['version']}", "", f"Why: {move['reason']}", ""]
    if move["switched"]:
        lines.append(f"Searches now read `{move['index']}`.")
    if move["dropped_indexes"]:
        lines.append(f"Dropped retired indexes of versions {', '.join(move['dropped_indexes'])} (retention).")
    if move["note"]:
        lines.append(move["note"])
    return "\n".join(lines)


def finetune_mlflow_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Both models' metrics on each set, as MLflow metric names (``challenger_heldout_ndcg_at_10``)."""
    metrics = {}
    for who, key in (("challenger", "metrics"), ("champion", "champion_metrics")):
        for name, values in result[key].items():
            for metric in ("ndcg@10", "recall@10", "mrr@10"):
                metrics[f"{who}_{name}_{metric.replace('@', '_at_')}"] = values[metric]
    return metrics


def drift_markdown(report: dict[str, Any]) -> str:
    """One drift check: the decision first, then the numbers behind it."""
    verdict = "**drift**: a fine-tune is due" if report["drifted"] else "no drift"
    score = "n/a" if report["score"] is None else f"{report['score']:.3f}"
    p_value = "n/a" if report["p_value"] is None else f"{report['p_value']:.3f}"
    details = report["details"]
    rows = [
        "| | |",
        "|---|---:|",
        f"| AUC (drift score) | {score} |",
        f"| threshold | {report['threshold']} |",
        f"| p-value (alpha {details['alpha']}) | {p_value} |",
        f"| reference chunks | {report['n_reference']:,} |",
        f"| new chunks since | {report['n_current']:,} (compared {details['compared']:,}) |",
        f"| permutations | {details['permutations']} |",
    ]
    return "\n".join(
        [
            f"# Drift against model version {report['model_version']}: {verdict}",
            "",
            report["reason"],
            "",
            *rows,
            "",
            f"Method: {report['method']}. Reference taken {details['reference_taken_at']}.",
        ]
    )


def drift_mlflow_fields(report: dict[str, Any]) -> dict[str, Any]:
    """A drift report as MLflow params, metrics and tags."""
    details = report["details"]
    metrics = {"n_reference": report["n_reference"], "n_current": report["n_current"], "drifted": report["drifted"]}
    metrics |= {"compared": details["compared"], "permutations": details["permutations"]}
    if report["score"] is not None:
        metrics |= {"auc": report["score"], "p_value": report["p_value"]}
    return {
        "params": {
            "model_version": report["model_version"],
            "threshold": report["threshold"],
            "alpha": details["alpha"],
            "min_samples": details["min_samples"],
            "cooldown_hours": details["cooldown_hours"],
            "method": report["method"],
        },
        "metrics": metrics,
        "tags": {"decision": "drift" if report["drifted"] else "no drift", "reason": report["reason"]},
    }


def nightly_markdown(result: dict[str, Any]) -> str:
    """One night: what each stage did, in one table."""
    if result["skipped"]:
        return f"# Nightly run skipped\n\n{result['reason']}"
    ingested = result["ingest"]
    refreshed, drifted, tuned = result["refresh"], result["drift"], result["finetune"]
    score = "n/a" if drifted["score"] is None else f"{drifted['score']:.3f}"
    rows = [
        "| stage | outcome |",
        "|---|---|",
        *(
            f"| ingest {', '.join(i['sources'])} | {i['inserted']:,} new, {i['updated']:,} changed, "
            f"{i['deleted']:,} deleted, {i['quarantined']:,} quarantined |"
            for i in ingested
        ),
        f"| refresh | {refreshed['embedded']:,} embedded, {refreshed['deleted']:,} vectors removed "
        f"(model version {refreshed['model_version']}) |",
        f"| drift | {'**drift**' if drifted['drifted'] else 'no drift'}: AUC {score}, "
        f"{drifted['n_current']:,} new chunks |",
        f"| finetune | {_finetune_cell(tuned)} |",
    ]
    retried = [f"- {r['stage']} ran again after a transient database error: {r['error']}" for r in result["retries"]]
    return "\n".join([f"# Nightly run ({result['seconds']:.0f} s)", "", *rows, "", *retried])


def _finetune_cell(tuned: dict[str, Any]) -> str:
    if not tuned["trained"]:
        return f"not run: {tuned['reason']}"
    verdict = "promoted, index switched" if tuned["promoted"] else "not promoted"
    return f"version {tuned['model_version']} {verdict}: {tuned['reason']}"
