"""Database errors tell what failed, never the values a statement carried (users' titles and notes)."""

from __future__ import annotations

import logging
import os
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from todo_kit.db import Database, ensure_database
from todo_kit.logs import JsonFormatter


async def test_a_failing_statement_does_not_carry_the_users_title(postgres_url_template: str) -> None:
    name = f"t{os.getpid()}_hidden_parameters"
    await ensure_database(postgres_url_template.format(database="postgres"), name)
    db = Database(postgres_url_template.format(database=name))
    title = "Call the oncologist about the biopsy"
    try:
        async with db.transaction() as conn:
            await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, title text)"))
            await conn.execute(sa.text("TRUNCATE notes"))
        insert = sa.text("INSERT INTO notes (id, title) VALUES (:id, :title)")
        async with db.transaction() as conn:
            await conn.execute(insert, {"id": 1, "title": title})
        with pytest.raises(DBAPIError) as raised:
            async with db.transaction() as conn:
                await conn.execute(insert, {"id": 1, "title": title})  # the same id again
    finally:
        await db.close()
    assert "duplicate key" in str(raised.value)
    assert title not in str(raised.value)
    try:
        raise RuntimeError("while saving a task") from raised.value
    except RuntimeError:
        record = logging.getLogger("test").makeRecord("test", logging.ERROR, __file__, 0, "failed", (), sys.exc_info())
        line = JsonFormatter().format(record)
    assert "duplicate key" in line and title not in line
