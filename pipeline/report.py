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
