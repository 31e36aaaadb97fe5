"""Command channels: calls to another service carry the caller's identity and trace context."""

from __future__ import annotations

import grpc

from todo_kit.commands import command_channel
from todo_kit.request_context import bind_authorization, bind_traceparent

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_command_forwards_the_callers_token_and_trace_and_names_its_target() -> None:
    seen: list[dict[str, str]] = []

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        seen.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("probe.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        bind_authorization("Bearer the-users-token")
        bind_traceparent(TRACEPARENT)
        async with command_channel(f"127.0.0.1:{port}", [("dapr-app-id", "task_svc")]) as channel:
            call = channel.unary_unary("/probe.Echo/Call")
            assert await call(b"ping") == b"ping"
            # What the calling code sets itself is not overridden.
            await call(b"ping", metadata=[("authorization", "Bearer explicit")])
        bind_authorization(None)
        bind_traceparent(None)
        async with command_channel(f"127.0.0.1:{port}") as channel:
            await channel.unary_unary("/probe.Echo/Call")(b"ping")
    finally:
        await server.stop(0)
    first, explicit, anonymous = seen
    assert first["authorization"] == "Bearer the-users-token"
    assert first["traceparent"] == TRACEPARENT
    assert first["dapr-app-id"] == "task_svc"
    assert explicit["authorization"] == "Bearer explicit"
    assert "authorization" not in anonymous and "traceparent" not in anonymous
