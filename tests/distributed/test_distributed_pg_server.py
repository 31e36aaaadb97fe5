"""The distributed mode's PostgreSQL server (todo_kit.pg_server): one role and one database per service."""

from __future__ import annotations

import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from todo_kit.db import Database, migrate
from todo_kit.embedded_host import installed_units
from todo_kit.pg_server import SUPERUSER, PostgresServer, ServiceRole

UNITS = {unit.app_id: unit for unit in installed_units()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    pg = PostgresServer(folder, port=free_port())
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def roles(server: PostgresServer) -> dict[str, ServiceRole]:
    return await server.provision(list(UNITS.values()))


async def test_each_service_role_connects_only_to_its_own_database(roles: dict[str, ServiceRole]) -> None:
    task = roles["task_svc"]
    conn = await asyncpg.connect(task.database_url("todo_task"))
    assert await conn.fetchval("SELECT current_user") == "task_svc"
    await conn.close()
    for other in ("todo_reminder", "todo_audit", "postgres"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncpg.connect(task.database_url(other))


async def test_a_wrong_password_is_refused(roles: dict[str, ServiceRole]) -> None:
    task = roles["task_svc"]
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(f"postgresql://task_svc:not-{task.password}@{task.host}:{task.port}/todo_task")


async def test_a_service_role_owns_what_its_migrations_create(roles: dict[str, ServiceRole]) -> None:
    task = roles["task_svc"]
    await migrate(UNITS["task_svc"].migrations, task.database_url("todo_task"))
    conn = await asyncpg.connect(task.database_url("todo_task"))
    try:
        owners = {
            row["tableowner"]
            for row in await conn.fetch("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
        }
    finally:
        await conn.close()
    assert owners == {"task_svc"}


async def test_audit_runs_as_its_runtime_role_which_cannot_delete_entries(roles: dict[str, ServiceRole]) -> None:
    audit = roles["audit_svc"]
    unit = UNITS["audit_svc"]
    assert unit.runtime_role is not None
    await migrate(unit.migrations, audit.database_url("todo_audit"), runtime_role=unit.runtime_role)
    db = Database(audit.database_url("todo_audit"), role=unit.runtime_role)
    try:
        async with db.transaction() as conn:
            assert await conn.scalar(sa.text("SELECT current_user")) == unit.runtime_role
            assert await conn.scalar(sa.text("SELECT count(*) FROM activity_log")) == 0
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            async with db.transaction() as conn:
                await conn.execute(sa.text("DELETE FROM activity_log"))
    finally:
        await db.close()


async def test_a_second_start_reuses_the_data_and_the_passwords(
    server: PostgresServer, roles: dict[str, ServiceRole]
) -> None:
    url = roles["chat_svc"].database_url("todo_chat")
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE IF NOT EXISTS kept (note text); INSERT INTO kept VALUES ('still here')")
    await conn.close()
    server.stop()
    assert server.pid() is None
    server.start()
    again = await server.provision(list(UNITS.values()))
    assert {app: role.password for app, role in again.items()} == {app: role.password for app, role in roles.items()}
    conn = await asyncpg.connect(url)
    try:
        assert "still here" in [row["note"] for row in await conn.fetch("SELECT note FROM kept")]
    finally:
        await conn.close()


def test_password_files_are_readable_by_their_owner_only(server: PostgresServer, roles: dict[str, ServiceRole]) -> None:
    files = sorted(server.passwords.iterdir())
    assert {f.name for f in files} == {SUPERUSER, *roles}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert stat.S_IMODE(server.passwords.stat().st_mode) == 0o700
