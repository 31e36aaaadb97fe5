"""The client the task service's tests call through, and a reader of StreamTaskChanges."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from todo_contracts.task.v1 import task_service_pb2, task_service_pb2_grpc
from todo_kit.embedded_host import EmbeddedHost


@dataclass
class TaskClient:
    """A TaskService stub on a running host, with tokens for two users."""

    host: EmbeddedHost
    stub: task_service_pb2_grpc.TaskServiceStub
    alice: list[tuple[str, str]]
    bob: list[tuple[str, str]]


class ChangeStream:
    """An open StreamTaskChanges call and its messages as they arrive."""

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:
        self.call = call

    @classmethod
    def open(
        cls, stub: task_service_pb2_grpc.TaskServiceStub, metadata: list[tuple[str, str]], resume_after: str = ""
    ) -> ChangeStream:
        """Opens a stream as the user of metadata."""
        request = task_service_pb2.StreamTaskChangesRequest(resume_after=resume_after)
        return cls(stub.StreamTaskChanges(request, metadata=metadata))

    async def next(self, timeout: float = 15.0) -> task_service_pb2.StreamTaskChangesResponse:
        """The next message, heartbeat or change (a guard against a hang, not a measure of speed)."""
        async with asyncio.timeout(timeout):
            message = await self.call.read()
        assert message is not grpc.aio.EOF, "the stream ended"
        assert isinstance(message, task_service_pb2.StreamTaskChangesResponse)
        return message

    async def heartbeat(self, timeout: float = 15.0) -> task_service_pb2.TaskFeedHeartbeat:
        """The next message, which must be a heartbeat."""
        message = await self.next(timeout)
        assert message.HasField("heartbeat") and not message.HasField("change"), message
        return message.heartbeat

    async def change(self, timeout: float = 15.0) -> task_service_pb2.TaskChange:
        """The next change, passing over heartbeats."""
        while True:
            message = await self.next(timeout)
            if message.HasField("change"):
                return message.change

    async def changes(self, count: int, timeout: float = 15.0) -> list[task_service_pb2.TaskChange]:
        """The next count changes."""
        return [await self.change(timeout) for _ in range(count)]

    def close(self) -> None:
        """Ends the call from the client's side."""
        self.call.cancel()
