"""Pruning the reminder service's tables: what goes, what stays, and in bounded batches."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from reminder_svc import storage
from reminder_svc.storage import CANCELLED, FIRED, SCHEDULED, reminders, task_plans
from reminder_svc.unit import unit as reminder_unit
from todo_kit.config import Settings
from todo_kit.db import Database
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.testing import running_host

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def host(kit_settings: Settings) -> AsyncIterator[EmbeddedHost]:
    async with running_host(kit_settings, [reminder_unit]) as running:
        yield running


def database(host: EmbeddedHost) -> Database:
    return host.databases["todo_reminder"]


async def add_plan(db: Database, status: str, changed: datetime) -> str:
    task_id = str(uuid.uuid4())
    async with db.transaction() as conn:
        await conn.execute(
            sa.insert(task_plans).values(
                task_id=task_id, user_id="alice", task_version=2, status=status, title="Pay rent",
                plan_key="{}", plan_version=1, update_time=changed,
            )
        )  # fmt: skip
    return task_id


async def add_reminders(db: Database, task_id: str, state: int, changed: datetime, count: int = 1) -> list[str]:
    ids = [f"{task_id}/r{uuid.uuid4().hex[:8]}/1" for _ in range(count)]
    async with db.transaction() as conn:
        await conn.execute(
            sa.insert(reminders),
            [
                {
                    "reminder_id": reminder_id, "user_id": "alice", "task_id": task_id, "rule_id": "r",
                    "task_title": "Pay rent", "fire_time": changed, "state": state, "plan_version": 1,
                    "late": False, "job_name": f"reminder/{task_id}/r", "update_time": changed,
                    "fired_time": changed if state == FIRED else None,
                }
                for reminder_id in ids
            ],
        )  # fmt: skip
    return ids


async def remaining(db: Database, key: sa.Column[Any]) -> set[str]:
    async with db.engine.connect() as conn:
        return set((await conn.execute(sa.select(key))).scalars().all())


async def test_pruning_deletes_old_fired_and_cancelled_reminders_in_batches_and_keeps_scheduled_ones(
    host: EmbeddedHost,
) -> None:
    db = database(host)
    done = await add_plan(db, "deleted", NOW - 30 * DAY)
    live = await add_plan(db, "open", NOW - 30 * DAY)
    doomed = await add_reminders(db, done, CANCELLED, NOW - 30 * DAY, 23)
    doomed += await add_reminders(db, live, FIRED, NOW - 20 * DAY, 4)
    kept = await add_reminders(db, live, SCHEDULED, NOW - 30 * DAY, 3)  # waiting, however old
    kept += await add_reminders(db, live, FIRED, NOW - DAY)  # younger than the cut-off
    kept += await add_reminders(db, live, CANCELLED, NOW)
    deletes: list[int] = []

    def count_deletes(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(cursor.rowcount)

    sa.event.listen(db.engine.sync_engine, "after_cursor_execute", count_deletes)
    try:
        deleted = await storage.prune_reminders(db, NOW - 7 * DAY, batch=10)
    finally:
        sa.event.remove(db.engine.sync_engine, "after_cursor_execute", count_deletes)
    assert deleted == len(doomed) == 27
    # One transaction per batch: fired 4; cancelled 10, 10, 3.
    assert sorted(deletes, reverse=True) == [10, 10, 4, 3]
    assert await remaining(db, reminders.c.reminder_id) == set(kept)


async def test_plans_of_closed_tasks_go_twice_the_retention_after_they_closed_and_only_without_reminders(
    host: EmbeddedHost,
) -> None:
    db = database(host)
    for status in ("completed", "deleted"):
        await add_plan(db, status, NOW - 15 * DAY)
    kept = [
        await add_plan(db, "open", NOW - 30 * DAY),  # an open task's plan stays
        await add_plan(db, "deleted", NOW - 10 * DAY),  # older than the retention, not twice
        await add_plan(db, "completed", NOW - 30 * DAY),  # a reminder of it is still kept
    ]
    await add_reminders(db, kept[2], FIRED, NOW - DAY)
    pruners = host.wirings["reminder_svc"].pruners
    assert list(pruners) == ["reminders", "task_plans"]  # reminders first, then the plans they leave alone
    # As the host calls them with the default retention of 7 days.
    cutoff = NOW - timedelta(days=host.settings.retention_days)
    assert await pruners["reminders"](cutoff) == 0
    assert await pruners["task_plans"](cutoff) == 2
    assert await remaining(db, task_plans.c.task_id) == set(kept)


async def test_plans_are_pruned_in_batches(host: EmbeddedHost) -> None:
    db = database(host)
    for _ in range(5):
        await add_plan(db, "deleted", NOW - 30 * DAY)
    assert await storage.prune_task_plans(db, NOW, batch=2) == 5
    assert await remaining(db, task_plans.c.task_id) == set()


async def test_the_host_runs_the_reminder_pruners(host: EmbeddedHost) -> None:
    counts = await host.prune()
    assert counts["reminder_svc.reminders"] == 0 and counts["reminder_svc.task_plans"] == 0
