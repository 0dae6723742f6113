"""A killed ingest leaves the store as it was, and running it again finishes the job."""

import json
import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

pytestmark = pytest.mark.e2e


def test_kill_9_in_the_middle_of_an_ingest_then_a_rerun_finishes_it(prefect_api, database_url, tmp_path):
    source = tmp_path / "feed.jsonl"
    with source.open("w") as f:
        for i in range(120_000):
            f.write(json.dumps({"id": f"d{i}", "text": f"Document {i} about the standard library. " * 4}) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGTUNE_")}
    env.update(
        RAGTUNE_HOME=str(tmp_path / "home"),
        RAGTUNE_DATABASE_URL=database_url,
        PREFECT_API_URL=prefect_api,
        RAGTUNE_BATCH_SIZE="1000",
    )
    command = [sys.executable, "-m", "ragtune", "ingest", str(source), "--json"]

    victim = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with psycopg.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 120
        while not conn.execute("SELECT 1 FROM runs WHERE status = 'running'").fetchone():
            assert victim.poll() is None and time.monotonic() < deadline, "the ingest never started"
            time.sleep(0.1)
        time.sleep(1.0)  # well into the batches
        assert victim.poll() is None, "the ingest finished before it could be killed; use a larger source"
        victim.send_signal(signal.SIGKILL)
        victim.wait()

        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0

        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["inserted"] == 120_000
        assert conn.execute("SELECT count(*), count(DISTINCT doc_id) FROM documents").fetchone() == (120_000, 120_000)
