"""Fixtures of the task service's tests: a running host with the task unit, and stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from task_fixtures import TaskClient

from task_svc.unit import unit as task_unit
from todo_contracts.task.v1 import task_service_pb2_grpc
from todo_kit.config import Settings
from todo_kit.testing import bearer, running_host


@pytest.fixture
async def tasks(kit_settings: Settings) -> AsyncIterator[TaskClient]:
    async with running_host(kit_settings, [task_unit]) as host, grpc.aio.insecure_channel(host.address) as channel:
        yield TaskClient(
            host,
            task_service_pb2_grpc.TaskServiceStub(channel),
            bearer(kit_settings, "alice"),
            bearer(kit_settings, "bob"),
        )
