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
