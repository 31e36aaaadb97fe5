"""Calls into a running stack as a user would: gRPC through the gateway's front, REST through the gateway."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from stack import Stack

from todo_contracts.audit.v1 import audit_pb2, audit_pb2_grpc
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import notify_pb2, notify_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_contracts.task.v1 import task_service_pb2_grpc
from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings

RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL}


def utc_in(delta: timedelta) -> common_pb2.ZonedDateTime:
    """A UTC wall-clock time this far from now, to the second."""
    moment = datetime.now(UTC) + delta
    return common_pb2.ZonedDateTime(local_time=moment.strftime("%Y-%m-%dT%H:%M:%S"), time_zone="UTC")


class StackClient:
    """One user's stubs on the gateway's gRPC front, and REST calls through the gateway."""

    def __init__(self, stack: Stack, user: str) -> None:
        self.stack = stack
        self.user = user
        settings = Settings.from_env({"TODO_JWT_SECRET_FILE": stack.env["TODO_JWT_SECRET_FILE"]})
        self.token = issue_token(signing_key_for(settings, create=False), user)
        self.metadata = [("authorization", f"Bearer {self.token}")]
        self.channel = grpc.aio.insecure_channel(stack.grpc_address)
        self.tasks = task_service_pb2_grpc.TaskServiceStub(self.channel)
        self.notifications = notify_pb2_grpc.NotificationServiceStub(self.channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def create(self, request: ts.CreateTaskRequest, *, retry_for: float = 120.0) -> ts.CreateTaskResponse:
        """CreateTask, sent again with the same client_request_id while the system cannot answer (outages)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry_for
        while True:
            try:
                reply: ts.CreateTaskResponse = await self.tasks.CreateTask(request, metadata=self.metadata, timeout=10)
                return reply
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRIED or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def notifications_by_reminder(self) -> Counter[str]:
        """How many notifications each reminder id produced (all pages)."""
        counts: Counter[str] = Counter()
        token = ""
        while True:
            reply = await self.notifications.ListNotifications(
                notify_pb2.ListNotificationsRequest(page_size=100, page_token=token), metadata=self.metadata, timeout=10
            )
            counts.update(n.reminder_id for n in reply.notifications)
            if not reply.next_page_token:
                return counts
            token = reply.next_page_token

    async def activity(self, task_id: str) -> Counter[str]:
        """How many activity entries of each event type the task has."""
        counts: Counter[str] = Counter()
        token = ""
        while True:
            reply = await self.audit.ListActivity(
                audit_pb2.ListActivityRequest(task_id=task_id, page_size=100, page_token=token),
                metadata=self.metadata, timeout=10,
            )  # fmt: skip
            counts.update(entry.event_type.rsplit(".", 1)[-1] for entry in reply.entries)
            if not reply.next_page_token:
                return counts
            token = reply.next_page_token

    def rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A REST call through the gateway (blocking; run it in a thread)."""
        request = urllib.request.Request(
            self.stack.web_url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=15) as reply:
            return dict(json.loads(reply.read()))
