"""Supervision of a host's background work: restarted with backoff when it fails, and reported in health.

Every long-running loop of a host (event dispatchers, outbox relays, the job
timer, pruning, a unit's own background work) runs under a Supervisor. A loop
that raises is logged, counted as down, and started again after a capped
exponential backoff; while any loop of an owner (a unit, or the host itself)
is down, the owner is reported NOT_SERVING, so a consumer that died can never
hide behind a SERVING health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

HOST = "host"
"""The owner of work that serves every unit (the job timer, pruning)."""

FIRST_DELAY = 0.2
MAX_DELAY = 10.0
STABLE_AFTER = 60.0
"""A loop that ran this long before failing starts again from the first delay."""
STOP_WAIT_SECONDS = 60.0
"""How long stop() waits for cancelled workers (a consumer may take half a minute to hand its partitions over)."""


async def wait_for_wake(wake: asyncio.Event, timeout: float) -> None:
    """Waits until wake is set or timeout seconds passed, whichever is first.

    Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
    arrives as the event is set, and a loop using it then never stops.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await wake.wait()


@dataclass(frozen=True)
class Worker:
    """A named loop and the owner whose health it is part of."""

    name: str
    owner: str
    run: Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    """Runs workers, restarts the ones that fail, and reports which owners are down."""

    def __init__(self, on_health: Callable[[frozenset[str]], Awaitable[None]]) -> None:
        self._on_health = on_health
        self.stop_wait = STOP_WAIT_SECONDS
        self._workers: list[Worker] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._down: dict[str, int] = {}
        self.restarts = 0

    def add(self, name: str, owner: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Adds a worker; started by start(), or at once if the supervisor runs already."""
        worker = Worker(name, owner, run)
        self._workers.append(worker)
        if self._tasks:
            self._tasks.append(asyncio.create_task(self._keep(worker), name=name))

    @property
    def down(self) -> frozenset[str]:
        """Owners with at least one worker down now."""
        return frozenset(owner for owner, count in self._down.items() if count > 0)

    async def start(self) -> None:
        """Starts every worker added so far."""
        self._tasks = [asyncio.create_task(self._keep(w), name=w.name) for w in self._workers]

    async def stop(self) -> None:
        """Cancels every worker and waits for them to end.

        Bounded: a worker still running after stop_wait seconds is logged as an
        error, cancelled once more and left behind, so a worker that lost its
        cancel never keeps a host from shutting down.
        """
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        done, stuck = await asyncio.wait(tasks, timeout=self.stop_wait)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("background work ended with an error while stopping", extra={"worker": task.get_name()})
        for task in stuck:
            log.error("background work did not stop when cancelled", extra={"worker": task.get_name()})
            task.cancel()

    async def _keep(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        delay = FIRST_DELAY
        while True:
            started = loop.time()
            try:
                # In a task of its own: a failed asyncio.TaskGroup of Python 3.11 can leave its task's cancel count
                # raised (the cancel it sent itself is never taken back), which the check below would mistake for
                # a stop. This task's count moves only when stop() cancels it.
                await asyncio.create_task(worker.run(), name=worker.name)
                log.error("background work ended by itself; starting it again", extra={"worker": worker.name})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "background work failed; starting it again",
                    extra={"worker": worker.name, "error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                    exc_info=loop.time() - started > 1.0 or delay == FIRST_DELAY,
                )
            this_task = asyncio.current_task()
            if this_task is not None and this_task.cancelling():
                # The worker swallowed its cancel (asyncio.wait_for of Python 3.11 can): it ends all the same.
                raise asyncio.CancelledError
            if loop.time() - started > STABLE_AFTER:
                delay = FIRST_DELAY
            await self._mark(worker.owner, +1)
            try:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            finally:
                await asyncio.shield(self._mark(worker.owner, -1))
            self.restarts += 1
            delay = min(delay * 2, MAX_DELAY)

    async def _mark(self, owner: str, change: int) -> None:
        before = self.down
        self._down[owner] = self._down.get(owner, 0) + change
        after = self.down
        if after != before:
            try:
                await self._on_health(after)
            except Exception:
                log.exception("reporting health failed")
