"""Human-readable summaries of command results (the ``--json`` output is the data itself)."""

from __future__ import annotations

from typing import Any

# C0 and C1 control characters, DEL: in user data they would move the cursor, recolour or retitle
# the terminal, or forge extra output lines; they are shown escaped instead (--json keeps them).
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def shown(value: object) -> str:
    """User data (ids, titles, text, reasons) fit for a terminal: control characters escaped, nothing else."""
    return str(value).translate(_CONTROL)


def ingest_summary(r: dict[str, Any]) -> str:
    """A few lines on one ingest."""
    lines = [
        f"ingested {shown(', '.join(r['sources']))}: {r['rows_read']:,} rows read",
        f"  inserted {r['inserted']:,}   updated {r['updated']:,}   unchanged {r['unchanged']:,}   "
        f"deleted {r['deleted']:,}   quarantined {r['quarantined']:,}",
    ]
    if r["problems"]:
        held = ", ".join(f"{problem} ({n:,})" for problem, n in r["problems"].items())
        lines.append(f"  held back: {held}; see `ragtune quarantine list`")
    if r.get("data_docs"):
        lines.append(f"  validation report (GX Data Docs): {r['data_docs']}")
    lines.append(f"  run {r['run_id']}")
    return "\n".join(lines)


def refresh_summary(r: dict[str, Any]) -> str:
    """A few lines on one refresh."""
    lines = [
        f"refreshed index {r['index']} (model version {r['model_version']}) in {r['seconds']:.1f} s",
        f"  embedded {r['embedded']:,}   skipped {r['skipped']:,}   deleted {r['deleted']:,}   "
        f"re-chunked documents {r['chunked_documents']:,}   precision {r['precision']}",
    ]
    if len(r.get("shards", [])) > 1:
        shares = ", ".join(f"{n:,}" for n in r["shards"])
        lines.append(f"  embedded in {len(r['shards'])} shards on Dask workers ({shares})")
    if r.get("bulk_load"):
        lines.append("  a large delta: loaded without the HNSW index, then built it again (faster than inserting)")
    if r.get("switched_from"):
        lines.append(f"  searches switched from version {r['switched_from']}'s index to this one")
    lines.append(f"  run {r['run_id']}   MLflow run {r['mlflow_run_id']}")
    return "\n".join(lines)


def drift_summary(r: dict[str, Any]) -> str:
    """The decision, why, and the numbers behind it."""
    score = "n/a" if r["score"] is None else f"{r['score']:.3f}"
    p_value = "n/a" if r["p_value"] is None else f"{r['p_value']:.3f}"
    lines = [
        f"{'DRIFT' if r['drifted'] else 'no drift'} against model version {r['model_version']}: {r['reason']}",
        f"  AUC {score} (threshold {r['threshold']})   p {p_value}   reference {r['n_reference']:,} chunks   "
        f"new since {r['n_current']:,}",
    ]
    if r["details"].get("reference_taken_now"):
        lines.append("  (this model had no reference yet: it was taken now from the index)")
    lines.append(f"  run {r.get('run_id', '')}   MLflow run {r['mlflow_run_id']}")
    return "\n".join(lines)


def nightly_summary(r: dict[str, Any]) -> str:
    """Each stage of the night in a line or two."""
    if r["skipped"]:
        return f"nightly run skipped: {r['reason']}"
    parts = [ingest_summary(i) for i in r["ingest"]]
    parts += [refresh_summary(r["refresh"]), drift_summary(r["drift"]), finetune_summary(r["finetune"])]
    return "\n".join([*parts, f"night done in {r['seconds']:.0f} s"])


def finetune_summary(r: dict[str, Any]) -> str:
    """The gate's decision, both models' numbers, and what happened to the index."""
    if not r["trained"]:
        return f"no fine-tune: {r['reason']}"
    verdict = "PROMOTED to champion" if r["promoted"] else "not promoted (stays challenger)"
    t = r["training"]
    lines = [
        f"trained version {r['model_version']} (LoRA on version {r['parent_version']}): {verdict}",
        f"  {r['data']['train_pairs']:,} pairs, {t['steps']} steps in {t['seconds']:.0f} s ({t['precision']}), "
        f"final loss {t['final_loss']:.4f}",
    ]
    for name, ours in r["metrics"].items():
        theirs = r["champion_metrics"][name]
        lines.append(
            f"  {name:<8} nDCG@10 {ours['ndcg@10']:.4f} vs champion {theirs['ndcg@10']:.4f} "
            f"({ours['ndcg@10'] - theirs['ndcg@10']:+.4f}) on {ours['n_queries']} queries"
        )
    lines.append(f"  decision: {r['reason']}")
    if r.get("reindex"):
        x = r["reindex"]
        lines.append(f"  index {x['index']} built ({x['embedded']:,} embedded); searches switched to it")
    lines.append(f"  MLflow run {r['mlflow_run_id']} (experiment ragtune-finetune)")
    return "\n".join(lines)


def move_summary(r: dict[str, Any]) -> str:
    """A move of champion (rollback): from, to, and whether searches switched."""
    lines = [f"champion: version {r['previous']} -> {r['version']} ({r['reason']})"]
    if r["switched"]:
        lines.append(f"  searches now read {r['index']}; nothing was embedded")
    if r["dropped_indexes"]:
        lines.append(f"  dropped retired indexes of versions {', '.join(r['dropped_indexes'])}")
    if r["note"]:
        lines.append(f"  {r['note']}")
    return "\n".join(lines)


def search_results(r: dict[str, Any]) -> str:
    """Numbered hits: score, where the chunk lives, and the start of its text."""
    if not r["results"]:
        return "no results"
    blocks = []
    for rank, hit in enumerate(r["results"], start=1):
        where = shown(" > ".join(part for part in (hit["title"], hit["heading"]) if part))
        snippet = shown(" ".join(hit["text"].split())[:200])
        found = shown(f"{hit['source']}:{hit['doc_id']}")
        blocks.append(f"{rank:>2}. {hit['score']:.3f}  {found}  {where}\n    {snippet}")
    return "\n".join(blocks)


def eval_summary(r: dict[str, Any]) -> str:
    """The metrics on one line, then per-query rankings if asked."""
    lines = [
        f"model version {r['model_version']} on {r['n_queries']} queries: nDCG@10 {r['ndcg@10']:.4f}   "
        f"recall@10 {r['recall@10']:.4f}   MRR@10 {r['mrr@10']:.4f}"
    ]
    for q in r.get("per_query", []):
        lines.append(shown(f"  {q['query']}: {', '.join(q['ranked_doc_ids'][:5])}"))
    return "\n".join(lines)


def status_summary(s: dict[str, Any]) -> str:
    """The store at a glance, and the latest runs."""
    lines = [
        f"documents {s['documents']:,} live, {s['tombstoned']:,} tombstoned   chunks {s['chunks']:,}   "
        f"vectors {s['vectors']:,}   quarantined {s['quarantined']:,}",
        f"champion model version: {s['champion_version'] or '(none yet)'}   "
        f"active index: {s['active_index'] or '(none yet)'}",
    ]
    others = [f"{i['table_name']} ({i['status']})" for i in s["indexes"] if i["table_name"] != s["active_index"]]
    if others:
        lines.append(f"kept for rollback: {', '.join(others)}")
    if s["last_runs"]:
        lines.append("last runs:")
        for run in s["last_runs"]:
            counts = ", ".join(
                f"{k} {v:,}"
                for k, v in run["stats"].items()
                if k in ("inserted", "updated", "unchanged", "deleted", "quarantined", "embedded")
                and isinstance(v, int)
                and v
            )
            lines.append(
                f"  {run['started_at'][:19]}  {run['kind']:<8} {run['status']:<11} {counts}"
                + (f"  {shown(run['error'][:120])}" if run["error"] else "")
            )
    return "\n".join(lines)


def quarantine_table(result: dict[str, Any]) -> str:
    """One block per quarantined row: where it came from and every reason."""
    rows = result["rows"]
    if not rows:
        return "nothing in quarantine"
    blocks = []
    for row in rows:
        reasons = shown("; ".join(reason["message"] for reason in row["reasons"]))
        blocks.append(f"{shown(row['source'])}  {shown(row['id'] or '(no id)')}  [{shown(row['origin'])}]\n  {reasons}")
    return "\n".join(blocks) + f"\n{len(rows)} row(s); run ids and raw rows with --json"


def db_stop_summary(r: dict[str, Any]) -> str:
    """Whether the embedded server was stopped."""
    return (
        f"stopped the embedded PostgreSQL ({r['pgdata']})"
        if r["stopped"]
        else "the embedded PostgreSQL was not running"
    )


def demo_summary(r: dict[str, Any]) -> str:
    """Each simulated night, the searches before and after a switch, then the state of the store."""
    parts = [f"== night {night['night']}: {night['story']}\n{nightly_summary(night)}" for night in r["nights"]]
    for example in r["searches"]:
        parts.append(f"== search: {example['query']}\n{search_results({'results': example['hits']})}")
    shift = r.get("shift_searches")
    if shift:
        for before, after in zip(shift["before"], shift["after"], strict=True):
            lines = [f"== search after the shift: {before['query']}"]
            for label, found in (("previous champion", before), ("new champion", after)):
                titles = ", ".join(f"{h['doc_id']} ({h['score']:.3f})" for h in found["hits"])
                lines.append(f"  {label} v{found['model_version']}: {titles}")
            parts.append("\n".join(lines))
    parts.append("== status\n" + status_summary(r["status"]))
    parts.append("\n".join(r["next_steps"]))
    return "\n\n".join(parts)
