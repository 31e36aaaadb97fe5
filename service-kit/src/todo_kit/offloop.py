"""CPU-bound work off the event loop, so one long computation never stops a host answering its other calls.

Every service of a host shares one event loop. A function that computes for a
while (evaluating a recurrence rule, say) runs in one of a few worker threads
instead: at most `workers` at once, each given `timeout` seconds. Python's
interpreter lock switches threads every few milliseconds, so the loop keeps
serving RPCs, events and jobs meanwhile.

A thread cannot be stopped from outside: the function itself must be bounded
(for example by an rrules.Budget), and `timeout` is the safety net that frees
the caller if it is not.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class OffLoop:
    """A few worker threads for blocking work; run() awaits the result without blocking the loop."""

    def __init__(self, name: str, *, workers: int = 2, timeout: float = 5.0) -> None:
        self.name = name
        self.workers = workers
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = asyncio.Semaphore(workers)

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs work(*args, **kwargs) in a worker thread and returns its result (or raises its exception).

        Waits for a free worker first (without a time limit: callers have their
        own deadlines), then raises TimeoutError if the work takes longer than
        timeout seconds; the caller is then freed and the thread finishes on
        its own.
        """
        loop = asyncio.get_running_loop()
        # Like asyncio.to_thread: the work sees the caller's context (trace ids in logs).
        call = functools.partial(contextvars.copy_context().run, work, *args, **kwargs)
        async with self._slots:
            async with asyncio.timeout(self.timeout):
                return await loop.run_in_executor(self._executor, call)

    def close(self) -> None:
        """Stops taking work; what is queued is dropped, what runs finishes in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)
