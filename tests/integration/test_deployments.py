"""The deployments as a user runs them: a real Prefect server on a free port, `prefect deploy` of
deployments/prefect.yaml, a process worker running `nightly`; and `ragtune serve` on its own."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient

from tests.support import domain
from tests.support.tiny import build_tiny_bert

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A child in its own session, so stop() takes down its children (flow runs) too."""
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_interruptible,
        )


def _interruptible() -> None:
    """Ctrl-C as in a terminal: a test run started in the background (nohup, `cmd &`) ignores SIGINT,
    and a child inherits that, so `ragtune serve` would never see the signal this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return int(proc.returncode)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` on a free port; yields its API URL and an environment pointing at it."""
    home = tmp_path_factory.mktemp("prefect-home")
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAGTUNE_"))}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    port = url.split(":")[2].split("/")[0]
    server = start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port], env, home / "server.log"
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (home / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if json.loads(response.read()) is True:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the Prefect server did not come up in 90 s"
            time.sleep(0.5)
        yield url, env | {"PREFECT_API_URL": url}
    finally:
        stop(server)


@pytest.fixture
def ragtune_env(prefect_server, database_url: str, tmp_path: Path, tmp_path_factory) -> dict[str, str]:
    """What a user's worker or serve process has: ragtune's settings in RAGTUNE_* variables."""
    _, env = prefect_server
    model = build_tiny_bert(tmp_path_factory.mktemp("tiny") / "model")
    return env | {
        "RAGTUNE_HOME": str(tmp_path / "home"),
        "RAGTUNE_DATABASE_URL": database_url,
        "RAGTUNE_BASE_MODEL": str(model),
        "RAGTUNE_PRECISION": "fp32",
        "RAGTUNE_NIGHTLY__TIMEZONE": "Europe/Berlin",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HF_HUB_OFFLINE": "1",
    }


def prefect(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def wait_for(url: str, flow_run_id: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    with SyncPrefectClient(url) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.type.value in TERMINAL:
                return run.state.type.value
            assert time.monotonic() < deadline, f"flow run still {run.state_name} after {timeout} s"
            time.sleep(1)


def test_prefect_deploy_and_a_worker_run_the_nightly_deployment(prefect_server, ragtune_env, tmp_path):
    url, _ = prefect_server
    manual = domain.write_pages(tmp_path / "manual")
    prefect(["work-pool", "create", "ragtune", "--type", "process", "--overwrite"], ragtune_env)
    prefect(["--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all"], ragtune_env)

    with SyncPrefectClient(url) as client:
        nightly = client.read_deployment_by_name("nightly/nightly")
        finetune = client.read_deployment_by_name("finetune/finetune")
        (schedule,) = nightly.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
        assert finetune.schedules == [] and nightly.work_pool_name == "ragtune"
        run = client.create_flow_run_from_deployment(nightly.id, parameters={"paths": [str(manual)]})

    worker = subprocess.run(
        [str(BIN / "prefect"), "worker", "start", "--pool", "ragtune", "--run-once"],
        env=ragtune_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )

    assert wait_for(url, str(run.id)) == "COMPLETED", worker.stdout + worker.stderr
    with SyncPrefectClient(url) as client:
        stages = {r.flow_id for r in client.read_flow_runs() if r.parent_task_run_id is not None}
        names = {client.read_flow(flow_id).name for flow_id in stages}
    assert {"ingest", "refresh", "drift"} <= names  # the stages ran as subflows of the night


def test_ragtune_serve_serves_the_nightly_flow_on_its_schedule(prefect_server, ragtune_env, tmp_path):
    url, _ = prefect_server
    manual = domain.write_pages(tmp_path / "manual")
    env = ragtune_env | {"RAGTUNE_NIGHTLY__SOURCES": json.dumps([str(manual)])}
    served = start([str(BIN / "ragtune"), "serve", "--json"], env, tmp_path / "serve.log")
    try:
        with SyncPrefectClient(url) as client:
            deadline = time.monotonic() + 90
            while True:
                try:
                    nightly = client.read_deployment_by_name("nightly/nightly-local")
                    break
                except Exception:
                    assert served.poll() is None, (tmp_path / "serve.log").read_text()
                    assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                    time.sleep(1)
            (schedule,) = nightly.schedules
            assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
            client.read_deployment_by_name("finetune/finetune-local")
            run = client.create_flow_run_from_deployment(nightly.id)  # "Run" in the UI

        assert wait_for(url, str(run.id)) == "COMPLETED", (tmp_path / "serve.log").read_text()
    finally:
        code = stop(served, signal.SIGINT)
    assert code == 0
    printed = next(line for line in (tmp_path / "serve.log").read_text().splitlines() if line.startswith("{"))
    assert json.loads(printed)["deployments"] == ["nightly/nightly-local", "finetune/finetune-local"]
