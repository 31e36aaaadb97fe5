"""A unit's runtime role: its service acts as that role on every connection, its migrations as the owner."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from todo_kit.config import Settings
from todo_kit.db import Database, check_role_name, ensure_database
from todo_kit.runtime.port import ServiceUnit, UnitContext, UnitWiring
from todo_kit.testing import running_host

ROLE = "todo_kit_probe_reader"


async def scratch_database(postgres_url_template: str, suffix: str) -> str:
    """A fresh database with a table `notes` and ROLE allowed only to read it; returns its URL."""
    name = f"t{os.getpid()}_{suffix}"
    await ensure_database(postgres_url_template.format(database="postgres"), name)
    url = postgres_url_template.format(database=name)
    owner = Database(url)
    try:
        async with owner.transaction() as conn:
            await conn.execute(
                sa.text(
                    f"DO $$ BEGIN CREATE ROLE {ROLE} NOLOGIN; "
                    "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
                )
            )
            await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY)"))
            await conn.execute(sa.text("REVOKE ALL ON notes FROM PUBLIC"))
            await conn.execute(sa.text(f"GRANT SELECT ON notes TO {ROLE}"))
    finally:
        await owner.close()
    return url


async def test_every_connection_of_a_database_with_a_role_acts_as_that_role_even_after_a_reset(
    postgres_url_template: str,
) -> None:
    url = await scratch_database(postgres_url_template, "role_reset")
    db = Database(url, role=ROLE, pool_size=2)
    try:

        async def who_after(reset: str) -> tuple[str, str]:
            async with db.transaction() as conn:
                before = await conn.scalar(sa.text("SELECT current_user"))
                await conn.execute(sa.text(reset))
                after = await conn.scalar(sa.text("SELECT current_user"))
                await asyncio.sleep(0.05)  # hold the connection, so the pool opens several
            return str(before), str(after)

        # What poolers and careless code issue: each returns to the session's role, the runtime role.
        resets = ["RESET ROLE", "RESET ALL", "RESET SESSION AUTHORIZATION", "SELECT 1"]
        seen = await asyncio.gather(*(who_after(reset) for reset in resets))
    finally:
        await db.close()
    assert seen == [(ROLE, ROLE)] * len(resets)


async def test_a_database_with_a_role_may_do_only_what_the_role_was_granted(postgres_url_template: str) -> None:
    url = await scratch_database(postgres_url_template, "role_grants")
    db = Database(url, role=ROLE)
    try:
        async with db.transaction() as conn:
            assert await conn.scalar(sa.text("SELECT count(*) FROM notes")) is not None
        with pytest.raises(DBAPIError, match="permission denied"):
            async with db.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO notes VALUES (1)"))
    finally:
        await db.close()
    owner = Database(url)
    try:
        async with owner.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO notes VALUES (1) ON CONFLICT DO NOTHING"))
    finally:
        await owner.close()


async def test_a_role_that_does_not_exist_fails_the_connect(postgres_url_template: str) -> None:
    url = await scratch_database(postgres_url_template, "role_missing")
    db = Database(url, role="todo_kit_no_such_role")
    try:
        with pytest.raises(DBAPIError, match="does not exist"):
            async with db.transaction() as conn:
                await conn.execute(sa.text("SELECT 1"))
    finally:
        await db.close()


@pytest.mark.parametrize("name", ["", "Writer", "a-b", "x; DROP TABLE notes", "r" * 64, "9lives", 'a"b'])
def test_a_role_name_that_is_not_a_plain_identifier_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a plain role name"):
        check_role_name(name)
    with pytest.raises(ValueError, match="not a plain role name"):
        Database("postgresql://u@localhost/db", role=name)


MIGRATION = '''
"""Probe: the role, a table only the owner may change, and what the migration saw."""

import sqlalchemy as sa
from alembic import op

from todo_kit.db import migration_runtime_role

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    role = migration_runtime_role()
    op.execute(
        f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )
    op.execute("CREATE TABLE migrated_by (login text, runtime_role text)")
    op.execute(f"INSERT INTO migrated_by VALUES (current_user, '{role}')")
    op.execute("REVOKE ALL ON migrated_by FROM PUBLIC")
    op.execute(f"GRANT SELECT ON migrated_by TO {role}")
'''


def probe_migrations(folder: Path) -> Path:
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text("from todo_kit.migration_env import run\n\nrun()\n")
    (folder / "versions" / "0001_probe.py").write_text(textwrap.dedent(MIGRATION))
    return folder


async def test_a_host_migrates_as_the_owner_and_serves_the_unit_as_its_runtime_role(
    kit_settings: Settings, tmp_path: Path
) -> None:
    async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        return UnitWiring()

    unit = ServiceUnit(
        "role_probe", "todo_role_probe", probe_migrations(tmp_path / "migrations"), ("todo.probe.v1.RoleProbe",),
        register, runtime_role=ROLE,
    )  # fmt: skip
    async with running_host(kit_settings, [unit]) as host:
        db = host.databases["todo_role_probe"]
        async with db.transaction() as conn:
            acting_as = await conn.scalar(sa.text("SELECT current_user"))
            migrated = (await conn.execute(sa.text("SELECT login, runtime_role FROM migrated_by"))).one()
            owner = await conn.scalar(sa.text("SELECT tableowner FROM pg_tables WHERE tablename = 'migrated_by'"))
        with pytest.raises(DBAPIError, match="permission denied"):
            async with db.transaction() as conn:
                await conn.execute(sa.text("DELETE FROM migrated_by"))
    assert acting_as == ROLE
    assert migrated.runtime_role == ROLE and migrated.login == owner and owner != ROLE
