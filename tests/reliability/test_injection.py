"""SQL, HTML and console-markup payloads in ids, titles, metadata and queries come back exactly as given."""

import json
import subprocess

import psycopg
import pytest
from psycopg.rows import dict_row

from ragtune.render import shown
from tests.support.cli import cli_env
from tests.support.cli import run_cli as ragtune

pytestmark = pytest.mark.e2e

PAYLOADS = [
    "'); DROP TABLE documents; --",
    "' OR '1'='1",
    "%s %(x)s {0} {} %%",
    "$1 $$ $tag$ :name ?",
    r"\x27 \' \\ C:\new\table \N",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[bold red]x[/] and [/] [link=http://e.vil]y[/link]",
    """quotes " ' ` \u2018 \u2019 \u201c \u201d \u00ab \u00bb \u201e""",
    "unicode Zürich — 東京 🚀 naïve",
    "terminal \x1b[2J\x1b]0;owned\x07 \x1b[31mred\x1b[0m",
]
# Each search starts a process: the SQL, format, HTML, markup and terminal-escape ones.
SEARCHED = [PAYLOADS[0], PAYLOADS[2], PAYLOADS[5], PAYLOADS[7], PAYLOADS[-1]]
SOURCE = "src <b>'); DROP TABLE chunks; --"
CORE_TABLES = ("documents", "chunks", "quarantine", "runs", "model_indexes", "vectors_v1")


@pytest.fixture
def env(prefect_api, database_url, tmp_path, tiny_model) -> dict[str, str]:
    return cli_env(tmp_path / "home", database_url, prefect_api, tiny_model)


def ok(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = ragtune(env, *args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    return result


def documents() -> list[dict]:
    """One document per payload, the payload in every field a user controls."""
    return [
        {
            "id": payload,
            "title": f"title {payload}",
            "text": f"text {i} {payload} end",
            "metadata": {payload: payload, "nested": {"list": [payload, i]}, f"k{i}": f"v {payload}"},
        }
        for i, payload in enumerate(PAYLOADS)
    ]


def bad_rows() -> list[dict]:
    """Rows validation holds back (no text), their ids carrying payloads."""
    return [{"id": f"bad {payload}", "title": payload} for payload in PAYLOADS[:4]]


def test_payloads_are_stored_searched_and_printed_verbatim(env, database_url, tmp_path):
    data = tmp_path / "payloads.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in documents() + bad_rows()), encoding="utf-8")

    ingested = json.loads(ok(env, "ingest", str(data), "--source", SOURCE, "--json").stdout)
    assert (ingested["inserted"], ingested["quarantined"]) == (len(PAYLOADS), len(bad_rows()))
    ok(env, "refresh", "--json")

    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        stored = cur.execute("SELECT source, doc_id, title, text, metadata FROM documents").fetchall()
        tables = {t: cur.execute("SELECT to_regclass(%s) AS t", (t,)).fetchone()["t"] for t in CORE_TABLES}
    assert all(tables.values()), tables
    expected = {row["id"]: row for row in documents()}
    assert {r["doc_id"] for r in stored} == set(expected)
    for row in stored:
        given = expected[row["doc_id"]]
        assert row["source"] == SOURCE
        assert (row["title"], row["text"], row["metadata"]) == (given["title"], given["text"], given["metadata"])

    for payload in SEARCHED:
        hits = json.loads(ok(env, "search", payload, "-k", "50", "--json").stdout)["results"]
        assert {h["doc_id"] for h in hits} == set(expected)
        for hit in hits:
            given = expected[hit["doc_id"]]
            assert (hit["source"], hit["title"], hit["text"]) == (SOURCE, given["title"], given["text"])

    human = ok(env, "search", PAYLOADS[7], "-k", "50").stdout  # the rich-markup one
    assert "\x1b" not in human and "\x07" not in human  # a title cannot drive the terminal
    for given in expected.values():
        assert f"{SOURCE}:{shown(given['id'])}  {shown(given['title'])}\n    {shown(given['text'])}\n" in human

    held = json.loads(ok(env, "quarantine", "list", "--json").stdout)["rows"]
    assert sorted(r["id"] for r in held) == sorted(r["id"] for r in bad_rows())
    assert {r["source"] for r in held} == {SOURCE}
    human = ok(env, "quarantine", "list").stdout
    for row in bad_rows():
        assert f"{SOURCE}  {row['id']}  [{data}:" in human

    status = ok(env, "status").stdout
    assert f"documents {len(PAYLOADS)} live" in status and f"quarantined {len(bad_rows())}" in status
