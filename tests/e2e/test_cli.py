"""The ragtune command as a user runs it: JSON on stdout, one-line errors, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def run(prefect_api, database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}
    env.update(RAGTUNE_HOME=str(tmp_path / "home"), RAGTUNE_DATABASE_URL=database_url, PREFECT_API_URL=prefect_api)

    def ragtune(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ragtune", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
        )

    return ragtune


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    root.mkdir()
    (root / "install.md").write_text("# Install\n\npip install it.\n")
    (root / "usage.rst").write_text("Usage\n=====\n\nRun it.\n")
    (root / "broken.md").write_bytes(b"\xff\xfe binary \x00 junk")
    return root


def test_ingest_json_prints_one_object_with_the_contract_keys(run, kb):
    result = run("ingest", str(kb), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert {"inserted", "updated", "unchanged", "deleted", "quarantined", "run_id"} <= report.keys()
    assert (report["inserted"], report["quarantined"]) == (2, 1)
    assert result.stderr == ""


def test_ingest_summary_then_quarantine_list_and_status(run, kb):
    first = run("ingest", str(kb), "--source", "manual")
    assert first.returncode == 0, first.stderr
    assert "inserted 2   updated 0   unchanged 0   deleted 0   quarantined 1" in first.stdout
    assert "held back: NUL bytes in text (1), not valid UTF-8 (1)" in first.stdout

    listed = json.loads(run("quarantine", "list", "--json").stdout)
    (row,) = listed["rows"]
    assert (row["source"], row["id"]) == ("manual", "broken.md")
    assert [r["message"] for r in row["reasons"]] == ["text contains NUL bytes", "not valid UTF-8 (in text)"]
    assert "manual  broken.md" in run("quarantine", "list").stdout

    status = json.loads(run("status", "--json").stdout)
    assert {k: status[k] for k in ("documents", "tombstoned", "chunks", "vectors", "quarantined")} == {
        "documents": 2,
        "tombstoned": 0,
        "chunks": 0,
        "vectors": 0,
        "quarantined": 1,
    }
    assert (status["champion_version"], status["active_index"]) == (None, None)
    assert status["last_runs"][0]["kind"] == "ingest"


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, ["ingest", "nowhere"], "nowhere: no such file or directory"),
        (
            {"people.csv": "id,name\n1,Ada\n"},
            ["ingest", "people.csv"],
            "people.csv: no 'text' column (found: id, name)",
        ),
        ({"empty.jsonl": ""}, ["ingest", "empty.jsonl"], "empty.jsonl: the file is empty"),
        ({"x.jsonl": '{"id": 1, "text": ""}\nnot json\n'}, ["ingest", "x.jsonl"], "x.jsonl: 2 of 2 rows failed"),
        ({"ragtune.toml": "batch_size = -1\n"}, ["status"], "invalid configuration"),
        ({}, ["ingest"], "Missing argument 'PATH'. (see 'python -m ragtune ingest --help')"),
        ({}, ["ingest", "kb", "--snapshots"], "No such option: --snapshots"),
    ],
)
def test_bad_input_gives_one_line_on_stderr_and_exit_code_2(run, tmp_path, files, args, message):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"ragtune: error: {message}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["ingest", "--help"],
        ["status", "--help"],
        ["demo", "--help"],
        ["drift", "--help"],
        ["nightly", "--help"],
        ["serve", "--help"],
        ["refresh", "--help"],
        ["quarantine", "list", "--help"],
        ["db", "stop", "--help"],
    ],
)
def test_every_command_has_help(run, command):
    result = run(*command)
    assert result.returncode == 0
    assert "Usage: python -m ragtune" in result.stdout
    if command != ["--help"]:
        assert "--json" in result.stdout


def test_db_stop_refuses_to_manage_an_external_server(run):
    result = run("db", "stop")
    assert result.returncode == 2
    assert "RAGTUNE_DATABASE_URL is set" in result.stderr


def play_demo(prefect_api: str, database_url: str, cwd: Path, *args: str, timeout: int) -> dict:
    """`ragtune demo --json` on the default home (./.ragtune under ``cwd``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}
    env.update(RAGTUNE_DATABASE_URL=database_url, PREFECT_API_URL=prefect_api)
    result = subprocess.run(
        [sys.executable, "-m", "ragtune", "demo", *args, "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_demo_plays_the_first_three_nights_on_the_default_relative_home(prefect_api, database_url, tmp_path):
    demo = play_demo(prefect_api, database_url, tmp_path, "--nights", "3", timeout=300)
    first, second, quiet = (night["ingest"][0] for night in demo["nights"])
    embedded = [night["refresh"]["embedded"] for night in demo["nights"]]
    drifts = [night["drift"] for night in demo["nights"]]
    assert embedded[0] > 500 and embedded[1] > 100 and embedded[2] == 0
    json_query, process_query = demo["searches"]
    assert json_query["hits"][0]["doc_id"] == "json.md"
    assert process_query["hits"][0]["doc_id"] == "subprocess.md"
    assert first["inserted"] == first["rows_read"] > 60 and first["quarantined"] == 0
    assert (second["updated"], second["deleted"], second["quarantined"]) == (3, 2, 3)
    assert second["inserted"] > 20  # the held-back third of the standard library
    assert (quiet["inserted"], quiet["updated"], quiet["deleted"]) == (0, 0, 0)
    # Night 1 takes the reference; night 2's new pages are the same kind of text: no drift, and
    # cleared, they join the reference, so the quiet night has nothing new to test.
    assert drifts[0]["details"]["reference_taken_now"] and drifts[0]["n_current"] == 0
    assert drifts[1]["n_current"] >= 100 and drifts[1]["score"] < drifts[1]["threshold"]
    assert not drifts[1]["drifted"] and drifts[1]["details"]["absorbed"] == drifts[1]["n_current"]
    assert drifts[2]["n_current"] == 0 and not drifts[2]["drifted"]
    assert all(night["finetune"]["trained"] is False for night in demo["nights"])
    assert (tmp_path / ".ragtune" / "data_docs" / "index.html").exists()
    assert (tmp_path / ".ragtune" / "demo" / "docs" / "json.md").exists()


@pytest.mark.slow
def test_the_full_demo_drifts_on_the_shift_and_fine_tunes(prefect_api, database_url, tmp_path):
    demo = play_demo(prefect_api, database_url, tmp_path, timeout=1200)
    shift = demo["nights"][3]
    assert shift["ingest"][0]["inserted"] > 100  # the ML libraries' pages
    assert shift["drift"]["drifted"] and shift["drift"]["score"] >= 0.9, shift["drift"]["reason"]
    tuned = shift["finetune"]
    assert tuned["trained"] and tuned["parent_version"] == "1"
    if tuned["promoted"]:  # the gate decides; either way the decision is reported with its numbers
        assert tuned["reindex"]["switched_from"] == "1"
        assert [s["model_version"] for s in demo["shift_searches"]["after"]] == ["2", "2"]
    assert tuned["reason"]


def test_refresh_search_and_eval_through_the_command_line(run, kb, tmp_path):
    assert run("ingest", str(kb)).returncode == 0

    refreshed = run("refresh", "--json")
    assert refreshed.returncode == 0, refreshed.stderr
    report = json.loads(refreshed.stdout)
    assert {"embedded", "deleted", "skipped", "index", "model_version", "seconds"} <= report.keys()
    assert (report["embedded"], report["model_version"], report["index"]) == (2, "1", "vectors_v1")
    assert json.loads(run("refresh", "--json").stdout)["embedded"] == 0

    found = json.loads(run("search", "how do I install it", "-k", "2", "--json").stdout)["results"]
    assert [hit["doc_id"] for hit in found] == ["install.md", "usage.rst"]
    assert {"doc_id", "chunk_id", "score", "title", "source", "heading", "text"} <= found[0].keys()
    assert found[0]["source"] == "kb" and found[0]["title"] == "Install"

    (tmp_path / "q.jsonl").write_text('{"query": "installing with pip", "relevant": ["install.md"]}\n')
    scored = json.loads(run("eval", "--queries", str(tmp_path / "q.jsonl"), "--per-query", "--json").stdout)
    assert (scored["ndcg@10"], scored["recall@10"], scored["mrr@10"], scored["n_queries"]) == (1.0, 1.0, 1.0, 1)
    assert scored["per_query"] == [{"query": "installing with pip", "ranked_doc_ids": ["install.md", "usage.rst"]}]

    status = json.loads(run("status", "--json").stdout)
    assert (status["chunks"], status["vectors"], status["champion_version"]) == (2, 2, "1")


def test_nightly_runs_the_loop_and_drift_reports_the_contract_keys(run, kb):
    night = run("nightly", str(kb), "--json")
    assert night.returncode == 0, night.stderr
    result = json.loads(night.stdout)
    assert result["ingest"][0]["inserted"] == 2 and result["refresh"]["embedded"] == 2
    assert result["drift"]["drifted"] is False and result["finetune"]["trained"] is False

    checked = run("drift", "--json")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    keys = {"score", "threshold", "drifted", "method", "p_value", "n_reference", "n_current", "model_version"}
    assert keys <= report.keys()
    assert (report["model_version"], report["n_reference"], report["n_current"]) == ("1", 2, 0)
    assert "only 0 chunk texts" in run("drift").stdout


def test_a_second_nightly_run_says_so_and_exits_0(run, kb, database_url):
    import psycopg

    from flows.nightly import LOCK
    from pipeline import store

    with psycopg.connect(database_url, autocommit=True) as other:
        assert store.try_lock(other, LOCK)
        result = run("nightly", str(kb))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nightly run skipped: another nightly run holds the lock; this one did nothing"


def test_nightly_without_sources_says_what_to_set(run):
    result = run("nightly")
    assert result.returncode == 2
    assert "nightly.sources" in result.stderr and "RAGTUNE_NIGHTLY__SOURCES" in result.stderr
