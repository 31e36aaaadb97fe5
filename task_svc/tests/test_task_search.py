"""Word search through the owner-scoped index (migration 0002): same matches, per user, exact counts."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import command
from task_fixtures import TaskClient

from task_svc import domain
from task_svc.storage import tasks as tasks_table
from task_svc.unit import unit as task_unit
from todo_contracts.task.v1 import task_pb2
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit.db import alembic_config


async def create(c: TaskClient, md: list[tuple[str, str]], title: str, **fields: object) -> task_pb2.Task:
    request = ts.CreateTaskRequest(task=task_pb2.Task(title=title, **fields))  # type: ignore[arg-type]
    return (await c.stub.CreateTask(request, metadata=md)).task


async def search(c: TaskClient, md: list[tuple[str, str]], query: str, **fields: object) -> ts.ListTasksResponse:
    return await c.stub.ListTasks(ts.ListTasksRequest(query=query, **fields), metadata=md)  # type: ignore[arg-type]


async def test_search_matches_what_the_plain_word_query_matches(tasks: TaskClient) -> None:
    # Words the tokenizer splits (foo_bar), numbers, accents, stop words and
    # prefixes of stop words: the owner-scoped index must not lose a match
    # that to_tsquery on the ranked column finds.
    titles = [
        "Pay rent to the landlord",
        "foo_bar review",
        "Renew passport 2024",
        "Café with mom",
        "Cancel the gym subscription",
        "It's the budget",
        "Studying spanish",
    ]
    for title in titles:
        await create(tasks, tasks.alice, title, description="by the 1st", tags=["home"])
    queries = ["rent", "landl", "paying", "foo_bar", "foo", "bar foo", "2024", "20", "café", "caf", "the rent",
               "the", "can", "rent the", "it's", "studies", "spa", "hom", "1st", "renew passport 20", "x_"]  # fmt: skip
    db = tasks.host.databases["todo_task"]
    for query in queries:
        words = domain.search_words(query)
        expression = " & ".join(f"{w}:*" if i == len(words) - 1 else w for i, w in enumerate(words))
        plain = tasks_table.c.search.op("@@")(sa.func.to_tsquery(sa.literal_column("'english'::regconfig"), expression))
        async with db.engine.connect() as conn:
            expected = set((await conn.execute(sa.select(tasks_table.c.task_id).where(plain))).scalars())
        found = await search(tasks, tasks.alice, query)
        assert {t.task_id for t in found.tasks} == expected, query
        assert found.total_size == len(expected), query
    assert len((await search(tasks, tasks.alice, "rent")).tasks) == 1
    assert len((await search(tasks, tasks.alice, "20")).tasks) == 1


async def test_search_sees_only_the_callers_tasks(tasks: TaskClient) -> None:
    mine = await create(tasks, tasks.alice, "Pay rent")
    await create(tasks, tasks.bob, "Pay rent")
    await create(tasks, tasks.bob, "Rent a car")
    for query in ("rent", "ren", "pay rent"):
        found = await search(tasks, tasks.alice, query)
        assert [t.task_id for t in found.tasks] == [mine.task_id] and found.total_size == 1
    assert (await search(tasks, tasks.bob, "rent")).total_size == 2


async def test_search_pages_carry_the_exact_total(tasks: TaskClient) -> None:
    made = {(await create(tasks, tasks.alice, f"Rent item {i:02d}")).task_id for i in range(7)}
    await create(tasks, tasks.alice, "Buy milk")
    seen: list[str] = []
    token = ""
    while True:
        page = await search(tasks, tasks.alice, "rent", page_size=3, page_token=token)
        assert page.total_size == 7
        seen += [t.task_id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 7 and set(seen) == made
    by_title = await search(tasks, tasks.alice, "rent", page_size=3, order_by=ts.TASK_ORDER_BY_TITLE)
    assert [t.title for t in by_title.tasks] == ["Rent item 00", "Rent item 01", "Rent item 02"]
    assert by_title.total_size == 7
    assert (await search(tasks, tasks.alice, "nothinglikethis")).total_size == 0
    # Every match after the first page goes away before the next page is asked
    # for: that page is empty and still carries the count.
    first = await search(tasks, tasks.alice, "rent", page_size=3)
    for task_id in made - {t.task_id for t in first.tasks}:
        await tasks.stub.DeleteTask(ts.DeleteTaskRequest(task_id=task_id), metadata=tasks.alice)
    beyond = await search(tasks, tasks.alice, "rent", page_size=3, page_token=first.next_page_token)
    assert list(beyond.tasks) == [] and beyond.total_size == 3 and not beyond.next_page_token


async def test_owner_scoped_search_migration_downgrades_and_upgrades(tasks: TaskClient) -> None:
    made = await create(tasks, tasks.alice, "Pay rent")
    db = tasks.host.databases["todo_task"]
    config = alembic_config(task_unit.migrations, db.engine.url.render_as_string(hide_password=False))
    await db.engine.dispose()  # pooled sessions must not hold the table while it changes
    await asyncio.to_thread(command.downgrade, config, "0001")
    await asyncio.to_thread(command.upgrade, config, "head")
    await db.engine.dispose()  # prepared statements of the old schema
    assert [t.task_id for t in (await search(tasks, tasks.alice, "rent")).tasks] == [made.task_id]
