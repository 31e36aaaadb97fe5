"""The kit's gRPC server: health follows readiness and shutdown; reflection lists the services."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from todo_kit.auth import TokenVerifier
from todo_kit.config import Settings
from todo_kit.server import KitServer


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
