"""The kit's gRPC server: health follows readiness and shutdown; reflection lists the services."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from todo_kit.auth import TokenVerifier
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.server import KitServer
from todo_kit.testing import running_host


async def status(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def test_health_is_serving_only_between_ready_and_shutdown() -> None:
    settings = Settings.from_env({"TODO_GRPC_PORT": "0"})
    server = KitServer(settings, TokenVerifier("k" * 40))
    port = await server.start(["todo.task.v1.TaskService"])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await status(channel, "todo.task.v1.TaskService") == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await status(channel, "") == health_pb2.HealthCheckResponse.NOT_SERVING
            await server.mark_serving()
            assert await status(channel, "todo.task.v1.TaskService") == health_pb2.HealthCheckResponse.SERVING
            await server.health.enter_graceful_shutdown()
            assert await status(channel, "") == health_pb2.HealthCheckResponse.NOT_SERVING

            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = [
                r
                async for r in stub.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                )
            ]
            names = {s.name for s in replies[0].list_services_response.service}
            assert {"todo.task.v1.TaskService", "grpc.health.v1.Health"} <= names
    finally:
        await server.stop(grace=0.1)


async def test_a_busy_port_is_refused_not_shared() -> None:
    settings = Settings.from_env({"TODO_GRPC_PORT": "0"})
    first = KitServer(settings, TokenVerifier("k" * 40))
    port = await first.start(["todo.task.v1.TaskService"])
    try:
        second = KitServer(Settings.from_env({"TODO_GRPC_PORT": str(port)}), TokenVerifier("k" * 40))
        with pytest.raises(SystemExit, match="another instance"):
            await second.start(["todo.task.v1.TaskService"])
    finally:
        await first.stop(grace=0.1)


async def test_one_host_per_data_folder(kit_settings: Settings) -> None:
    async with running_host(kit_settings, []):
        with pytest.raises(SystemExit, match="another host is running"):
            await EmbeddedHost(kit_settings, []).start()
    async with running_host(kit_settings, []) as again:  # free once the first has stopped
        assert again.port > 0
