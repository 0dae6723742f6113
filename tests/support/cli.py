"""Running `ragtune` as a user does, in the tests: its environment, pointed at the test's services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env(home: Path, database_url: str, prefect_api: str, model: Path) -> dict[str, str]:
    """The environment of a user running `ragtune` against the test's database, with the tiny model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGTUNE_", "MLFLOW_TRACKING"))}
    env.update(
        RAGTUNE_HOME=str(home),
        RAGTUNE_DATABASE_URL=database_url,
        PREFECT_API_URL=prefect_api,
        RAGTUNE_BASE_MODEL=str(model),
        RAGTUNE_PRECISION="fp32",
    )
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`ragtune ARGS` in a child process with this environment; its exit code and output, whatever they are."""
    return subprocess.run(
        [sys.executable, "-m", "ragtune", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
