"""A database password never leaves the URL it was configured in; the embedded server is private."""

import json
import secrets
import sqlite3
import stat
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from infra import database
from tests.support import domain
from tests.support.cli import cli_env
from tests.support.cli import run_cli as ragtune


@pytest.fixture
def secret() -> str:
    return f"pw{secrets.token_hex(12)}"


@pytest.fixture
def secret_url(pg_server, database_url, secret) -> str:
    """The test database's URL as a user with a password would configure it (local auth may be trust)."""
    role = f"ragtune_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(role), sql.Literal(secret))
        )
    return psycopg.conninfo.make_conninfo(database_url, user=role, password=secret)


@pytest.fixture
def env(prefect_api, secret_url, tmp_path, tiny_model) -> dict[str, str]:
    return cli_env(tmp_path / "home", secret_url, prefect_api, tiny_model)


@pytest.mark.e2e
def test_a_database_password_appears_in_no_output_run_record_or_file(env, secret, secret_url, tmp_path):
    assert secret in secret_url
    outputs = []

    def ok(*args: str, **extra: str) -> dict:
        result = ragtune({**env, **extra}, *args, "--json")
        outputs.append(result)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    ok("ingest", str(domain.write_pages(tmp_path / "manual")))
    sharded = ok("refresh", RAGTUNE_REFRESH_WORKERS="2")
    assert len(sharded["shards"]) == 2  # the embed-shards subflow ran, with the settings as a parameter
    ok("refresh", "--rebuild")
    ok("drift")
    assert ok("search", "zorvane gallop")["results"]
    assert ok("status")["documents"] > 0
    outputs += [ragtune(env, "status"), ragtune(env, "search", "skarn stall")]

    unreachable = f"postgresql://someone:{secret}@/nowhere?host={tmp_path / 'no-socket-here'}"
    failed = ragtune({**env, "RAGTUNE_DATABASE_URL": unreachable}, "status")
    outputs.append(failed)
    assert failed.returncode == 1
    assert failed.stderr.startswith("ragtune: error: cannot connect to the database at postgresql://someone:***@/")
    assert len(failed.stderr.strip().splitlines()) == 1

    for result in outputs:
        assert secret not in result.stdout and secret not in result.stderr, result.args
    assert_not_in_mlflow(Path(env["RAGTUNE_HOME"]) / "mlflow.db", secret)
    with psycopg.connect(secret_url) as conn:  # ragtune's own run records
        recorded = conn.execute("SELECT params::text, stats::text, coalesce(error, '') FROM runs").fetchall()
    assert recorded and not [row for row in recorded if secret in "".join(row)]
    assert_not_in_prefect(secret)
    leaked = [str(p) for p in Path(env["RAGTUNE_HOME"]).rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []


def assert_not_in_mlflow(mlflow_db: Path, secret: str) -> None:
    with sqlite3.connect(mlflow_db) as db:
        params = db.execute("SELECT key, value FROM params").fetchall()
        tags = db.execute("SELECT key, value FROM tags").fetchall()
        names = db.execute("SELECT name FROM runs").fetchall()
    assert params and names  # refresh and drift logged runs
    assert [row for row in params + tags + names if any(secret in str(v) for v in row)] == []


def assert_not_in_prefect(secret: str) -> None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        shards = [r for r in runs if r.name and client.read_flow(r.flow_id).name == "embed-shards"]
        assert shards, "the sharded refresh left no embed-shards flow run"
        assert all(set(r.parameters["settings"]["database_url"]) == {"*"} for r in shards)  # masked, not dropped
        logs = []
        while batch := client.read_logs(limit=200, offset=len(logs)):
            logs += batch
        artifacts = client.read_artifacts(limit=200)
    assert [r.name for r in runs if secret in json.dumps(r.parameters, default=str)] == []
    assert [log.message for log in logs if secret in log.message] == []
    assert [a.key for a in artifacts if secret in json.dumps(a.data, default=str)] == []


@pytest.mark.integration
@pytest.mark.parametrize("depth", [1, 12], ids=["socket-in-pgdata", "path-too-long-for-a-socket"])
def test_the_embedded_server_listens_only_on_a_private_unix_socket(tmp_path, depth):
    # A pgdata path past the ~107 bytes a socket path may have puts the socket in another directory.
    pgdata = tmp_path.joinpath(*["deep-directory"] * depth) / "pgdata"
    url = database.start_embedded(pgdata)
    try:
        with psycopg.connect(url) as conn:
            listen = conn.execute("SHOW listen_addresses").fetchone()[0]
            sockets = conn.execute("SHOW unix_socket_directories").fetchone()[0]
        assert listen == ""  # no TCP at all
        for directory in sockets.split(","):
            mode = Path(directory.strip()).stat().st_mode
            assert stat.S_IMODE(mode) & 0o077 == 0, f"{directory} is open to others: {oct(stat.S_IMODE(mode))}"
    finally:
        assert database.stop_embedded(pgdata)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:s3cr%40t@db.example:5432/rag", "postgresql://me:***@db.example:5432/rag"),
        (
            "postgresql:///rag?host=/run/pg&password=s3cret&user=me",
            "postgresql:///rag?host=/run/pg&password=***&user=me",
        ),
        ("host=/run/pg user=me password=s3cret dbname=rag", "host=/run/pg user=me password=*** dbname=rag"),
        ("host=/run/pg password = 's3 c\\'ret' dbname=rag", "host=/run/pg password = *** dbname=rag"),
        ("postgresql://me@/rag?host=/run/pg", "postgresql://me@/rag?host=/run/pg"),
    ],
)
def test_redact_hides_the_password_in_every_url_form_libpq_reads(url, shown):
    assert database.redact(url) == shown
