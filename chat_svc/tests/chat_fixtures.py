"""What the chat's tests drive: a host with every service, the chat on a fake interpreter, stubs and tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc

from audit_svc.unit import unit as audit_unit
from chat_svc.unit import build_unit
from notify_svc.unit import unit as notify_unit
from recurrence_svc.unit import unit as recurrence_unit
from reminder_svc.unit import unit as reminder_unit
from task_svc.unit import unit as task_unit
from todo_contracts.audit.v1 import audit_pb2_grpc
from todo_contracts.chat.v1 import chat_pb2, chat_pb2_grpc
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2_grpc
from todo_contracts.reminder.v1 import reminder_pb2_grpc
from todo_contracts.task.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.testing import EventRecorder, bearer, running_host

Metadata = list[tuple[str, str]]


@dataclass
class FakeInterpreter:
    """Understands exactly the phrases it was taught; anything else is not understood."""

    phrases: dict[str, chat_pb2.Intent] = field(default_factory=dict)
    name: str = "fake"
    seen: list[tuple[str, str, datetime]] = field(default_factory=list)

    def teach(self, phrase: str, intent: chat_pb2.Intent) -> None:
        self.phrases[phrase] = intent

    def interpret(self, text: str, time_zone: str, reference_time: datetime) -> chat_pb2.Intent:
        self.seen.append((text, time_zone, reference_time))
        intent = chat_pb2.Intent()
        intent.CopyFrom(self.phrases.get(text, chat_pb2.Intent(kind=chat_pb2.INTENT_KIND_UNSPECIFIED)))
        return intent


@dataclass
class Chat:
    """Stubs on a running host with every service, the fake interpreter, tokens for alice and bob."""

    host: EmbeddedHost
    interpreter: FakeInterpreter
    chat: chat_pb2_grpc.ChatServiceStub
    tasks: task_service_pb2_grpc.TaskServiceStub
    reminders: reminder_pb2_grpc.ReminderServiceStub
    audit: audit_pb2_grpc.AuditServiceStub
    notify: notify_pb2_grpc.NotificationServiceStub
    alice: Metadata
    bob: Metadata
    recorder: EventRecorder

    def teach(self, phrase: str, intent: chat_pb2.Intent) -> None:
        self.interpreter.teach(phrase, intent)

    async def say(
        self, text: str, *, who: Metadata | None = None, conversation_id: str = "", zone: str = "Europe/Berlin",
        client_request_id: str = "",
    ) -> chat_pb2.SendMessageResponse:  # fmt: skip
        request = chat_pb2.SendMessageRequest(
            text=text, time_zone=zone, conversation_id=conversation_id, client_request_id=client_request_id
        )
        response: chat_pb2.SendMessageResponse = await self.chat.SendMessage(request, metadata=who or self.alice)
        return response

    async def add(self, title: str, *, who: Metadata | None = None, **fields: object) -> task_pb2.Task:
        """A task made directly through the task service."""
        request = task_service_pb2.CreateTaskRequest(task=task_pb2.Task(title=title, **fields))  # type: ignore[arg-type]
        task: task_pb2.Task = (await self.tasks.CreateTask(request, metadata=who or self.alice)).task
        return task

    async def listed(self, *, who: Metadata | None = None, **filters: object) -> list[task_pb2.Task]:
        request = task_service_pb2.ListTasksRequest(page_size=1000, **filters)  # type: ignore[arg-type]
        return list((await self.tasks.ListTasks(request, metadata=who or self.alice)).tasks)

    async def get(self, task_id: str, *, who: Metadata | None = None) -> task_pb2.Task:
        request = task_service_pb2.GetTaskRequest(task_id=task_id)
        task: task_pb2.Task = (await self.tasks.GetTask(request, metadata=who or self.alice)).task
        return task


@asynccontextmanager
async def running_chat(settings: Settings) -> AsyncIterator[Chat]:
    """Starts a host with every service, the chat on a fresh FakeInterpreter."""
    interpreter = FakeInterpreter()
    units = [task_unit, reminder_unit, recurrence_unit, notify_unit, audit_unit, build_unit(interpreter=interpreter)]
    recorder = EventRecorder()
    async with (
        running_host(settings, units, recorder=recorder) as host,
        grpc.aio.insecure_channel(host.address) as channel,
    ):
        yield Chat(
            host,
            interpreter,
            chat_pb2_grpc.ChatServiceStub(channel),
            task_service_pb2_grpc.TaskServiceStub(channel),
            reminder_pb2_grpc.ReminderServiceStub(channel),
            audit_pb2_grpc.AuditServiceStub(channel),
            notify_pb2_grpc.NotificationServiceStub(channel),
            bearer(settings, "alice"),
            bearer(settings, "bob"),
            recorder,
        )


def in_days(days: int, hour: int, zone: str) -> common_pb2.ZonedDateTime:
    """A wall-clock time `days` from today's date (UTC) at hour:00 in zone."""
    day = (datetime.now(UTC) + timedelta(days=days)).date()
    return common_pb2.ZonedDateTime(local_time=f"{day.isoformat()}T{hour:02d}:00", time_zone=zone)


def create_intent(title: str, **fields: object) -> chat_pb2.Intent:
    return chat_pb2.Intent(
        kind=chat_pb2.INTENT_KIND_CREATE_TASK,
        task=task_pb2.Task(title=title, **fields),  # type: ignore[arg-type]
        confidence=0.9,
    )


def command(kind: int, target_query: str = "", **fields: object) -> chat_pb2.Intent:
    return chat_pb2.Intent(kind=kind, target_query=target_query, **fields)  # type: ignore[arg-type]
