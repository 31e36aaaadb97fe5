"""The supervisor's stop ends every worker, even one that loses or ignores its cancel, and never waits for ever."""

from __future__ import annotations

import asyncio
import logging

import pytest

from todo_kit.supervision import Supervisor


async def _no_health(down: frozenset[str]) -> None:
    return None


async def test_a_worker_that_swallows_its_cancel_once_still_ends_at_stop() -> None:
    runs = 0

    async def polls_and_swallows() -> None:
        nonlocal runs
        runs += 1
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return  # as asyncio.wait_for can do: the cancel is lost and the worker returns normally

    supervisor = Supervisor(_no_health)
    supervisor.add("poller", "svc", polls_and_swallows)
    await supervisor.start()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(supervisor.stop(), 5)
    assert runs == 1  # not restarted after the lost cancel


async def test_a_worker_that_ignores_every_cancel_is_logged_and_left_after_the_stop_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    supervisor = Supervisor(_no_health)
    supervisor.stop_wait = 0.2
    supervisor.add("stubborn", "svc", stubborn)
    await supervisor.start()
    await asyncio.sleep(0.05)
    with caplog.at_level(logging.ERROR, logger="todo_kit.supervision"):
        await asyncio.wait_for(supervisor.stop(), 5)
    assert any("did not stop when cancelled" in r.getMessage() for r in caplog.records)
    release.set()
    await asyncio.sleep(0.05)


async def test_a_worker_whose_task_group_failed_is_restarted_not_taken_for_stopped() -> None:
    runs = 0

    async def fails_soon() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionError("the database is restarting")

    async def batch_in_a_task_group() -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            await asyncio.sleep(30)
        async with asyncio.TaskGroup() as group:
            # Fails while the group waits at its end: Python 3.11 then leaves the task's cancel count raised.
            group.create_task(fails_soon())

    supervisor = Supervisor(_no_health)
    supervisor.add("dispatcher", "svc", batch_in_a_task_group)
    await supervisor.start()
    try:
        for _ in range(100):
            if runs >= 2:
                break
            await asyncio.sleep(0.05)
        assert runs >= 2
    finally:
        await asyncio.wait_for(supervisor.stop(), 5)
