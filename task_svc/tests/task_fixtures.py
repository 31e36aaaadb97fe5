"""The client the task service's tests call through."""

from __future__ import annotations

from dataclasses import dataclass

from todo_contracts.task.v1 import task_service_pb2_grpc
from todo_kit.embedded_host import EmbeddedHost


@dataclass
class TaskClient:
    """A TaskService stub on a running host, with tokens for two users."""

    host: EmbeddedHost
    stub: task_service_pb2_grpc.TaskServiceStub
    alice: list[tuple[str, str]]
    bob: list[tuple[str, str]]
