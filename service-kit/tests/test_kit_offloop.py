"""CPU-bound work off the event loop: the loop keeps running while it computes."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from todo_kit.offloop import OffLoop


def spin(seconds: float) -> str:
    """Pure computation, holding the interpreter as much as Python lets it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))
    return "done"


async def test_the_loop_keeps_running_while_work_computes_off_it() -> None:
    pool = OffLoop("test", workers=2, timeout=10.0)
    try:
        slow = asyncio.create_task(pool.run(spin, 1.5))
        ticks_before_done = 0
        while not slow.done():
            await asyncio.sleep(0.01)
            ticks_before_done += 1 if not slow.done() else 0
        assert slow.result() == "done"
    finally:
        pool.close()
    # On the loop itself the work would have allowed no tick at all until it ended.
    assert ticks_before_done >= 10


async def test_at_most_workers_run_at_once_and_the_rest_wait() -> None:
    pool = OffLoop("test", workers=2, timeout=10.0)
    running, most = 0, 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with guard:
            running -= 1

    try:
        await asyncio.gather(*(pool.run(work) for _ in range(6)))
    finally:
        pool.close()
    assert most == 2


async def test_work_past_its_timeout_frees_the_caller_and_errors_pass_through() -> None:
    pool = OffLoop("test", workers=2, timeout=0.2)
    try:
        with pytest.raises(TimeoutError):
            await pool.run(time.sleep, 1.0)

        def fail() -> None:
            raise ValueError("bad rule")

        with pytest.raises(ValueError, match="bad rule"):
            await pool.run(fail)
    finally:
        pool.close()
