"""Test-wide setup: offline, quiet, and every service state kept under a temporary folder."""

import os
import tempfile
from pathlib import Path

# Before anything imports Prefect, MLflow or GX: no telemetry, no hub, state in a scratch folder.
_scratch = Path(tempfile.mkdtemp(prefix="ragtune-tests-"))
for _name, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "PREFECT_HOME": str(_scratch / "prefect"),
    "XDG_RUNTIME_DIR": str(_scratch / "run"),
}.items():
    os.environ[_name] = _value
(_scratch / "run").mkdir(mode=0o700)
for _name in [n for n in os.environ if n.startswith("RAGTUNE_")]:
    del os.environ[_name]  # a developer's own configuration must not leak into the tests

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_api():
    """A Prefect API for the whole session (starting one per test costs seconds each)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        from prefect.settings import PREFECT_API_URL

        yield PREFECT_API_URL.value()
