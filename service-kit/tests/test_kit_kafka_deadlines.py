"""The Kafka runtime's deadline helper keeps a cancellation that arrives as the awaited call finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from todo_kit.runtime.kafka import within


async def cancelled_as_the_call_finishes(bounded: Callable[[float, Awaitable[int]], Awaitable[int]]) -> bool:
    """Cancels a task in the same loop step in which its awaited call finishes; True if the cancel arrived."""
    loop = asyncio.get_running_loop()
    call: asyncio.Future[int] = loop.create_future()
    after: list[str] = []

    async def poller() -> None:
        await bounded(5.0, call)
        after.append("went on after its cancel")

    task = asyncio.create_task(poller())
    await asyncio.sleep(0)  # the task now waits for the call
    call.set_result(1)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return not after
    return False


async def test_a_cancel_that_arrives_as_the_bounded_call_finishes_stops_the_caller() -> None:
    assert await cancelled_as_the_call_finishes(within)


async def test_the_same_cancel_is_lost_by_wait_for_of_this_python_which_is_why_within_exists() -> None:
    # Documents the defect within() avoids; if a Python release fixes it, this test says so.
    lost = not await cancelled_as_the_call_finishes(lambda seconds, call: asyncio.wait_for(call, seconds))
    if not lost:
        pytest.skip("this Python's asyncio.wait_for keeps such a cancellation")
    assert lost


async def test_within_raises_timeout_when_the_deadline_passes() -> None:
    never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await within(0.05, never)
    assert never.cancelled()
