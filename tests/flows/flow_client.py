"""A running embedded host with the task, reminder and recurrence services, and helpers to drive it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from recurrence_svc.unit import unit as recurrence_unit
from reminder_svc.unit import unit as reminder_unit
from task_svc.unit import unit as task_unit
from todo_contracts import envelope
from todo_contracts.common.v1 import common_pb2
from todo_contracts.recurrence.v1 import recurrence_pb2_grpc
from todo_contracts.reminder.v1 import reminder_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2_grpc
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.testing import EventRecorder, bearer, eventually, running_host

UNITS = [task_unit, reminder_unit, recurrence_unit]
__all__ = ["UNITS", "Flow", "eventually", "in_utc", "running_flow"]


@dataclass
class Flow:
    """Stubs for the three services on one host, and tokens for alice and bob."""

    host: EmbeddedHost
    tasks: task_service_pb2_grpc.TaskServiceStub
    reminders: reminder_pb2_grpc.ReminderServiceStub
    recurrence: recurrence_pb2_grpc.RecurrenceServiceStub
    alice: list[tuple[str, str]]
    bob: list[tuple[str, str]]

    recorder: EventRecorder

    async def events(self, type_name: str | None = None) -> list[envelope.DecodedEvent]:
        """Every event delivered so far to a subscriber of every topic (of one type, if given), in order."""
        return self.recorder.events(type_name)

    async def job_handler(self, app_id: str, prefix: str) -> Callable[[str, bytes], Awaitable[None]]:
        """A unit's job handler, to deliver a job by hand (as a duplicate, say)."""
        return self.host.wirings[app_id].job_handlers[prefix]


@asynccontextmanager
async def running_flow(settings: Settings) -> AsyncIterator[Flow]:
    """Starts the host with the three services and yields stubs for them."""
    recorder = EventRecorder()
    async with (
        running_host(settings, UNITS, recorder=recorder) as host,
        grpc.aio.insecure_channel(host.address) as channel,
    ):
        yield Flow(
            host,
            task_service_pb2_grpc.TaskServiceStub(channel),
            reminder_pb2_grpc.ReminderServiceStub(channel),
            recurrence_pb2_grpc.RecurrenceServiceStub(channel),
            bearer(settings, "alice"),
            bearer(settings, "bob"),
            recorder,
        )


def in_utc(delta: timedelta) -> common_pb2.ZonedDateTime:
    """A UTC wall-clock time this far from now, to the second (sub-second part kept)."""
    moment = datetime.now(UTC) + delta
    return common_pb2.ZonedDateTime(local_time=moment.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")
