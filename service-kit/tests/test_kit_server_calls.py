"""What the kit's server does around every call: decode and check the request, refuse what it does not serve,
bound time and concurrency, and write one access line that names the call and not its content."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from todo_contracts.task.v1 import task_pb2
from todo_kit.auth import TokenVerifier, issue_token
from todo_kit.config import Settings
from todo_kit.logs import NOISY_LOGGERS, JsonFormatter, configure_logging
from todo_kit.server import KitServer
from todo_kit.testing import eventually, violated_fields

KEY = "k" * 40
ALICE = [("authorization", f"Bearer {issue_token(KEY, 'alice')}")]
ECHO = "/test.v1.Echo/Echo"
CHAT = "/test.v1.Echo/Chat"
UPLOAD = "/test.v1.Echo/Upload"


class EchoService:
    """A made-up service: Echo returns the task it gets, or waits while `hold` is set; Chat and Upload stream."""

    def __init__(self) -> None:
        self.calls = 0
        self.waiting = 0
        self.hold: asyncio.Event | None = None

    async def echo(self, request: task_pb2.Task, context: Any) -> task_pb2.Task:
        self.calls += 1
        if self.hold is not None:
            self.waiting += 1
            try:
                await self.hold.wait()
            finally:
                self.waiting -= 1
        return request

    async def chat(self, requests: AsyncIterator[task_pb2.Task], context: Any) -> AsyncIterator[task_pb2.Task]:
        self.calls += 1
        async for request in requests:
            yield request

    async def upload(self, requests: AsyncIterator[task_pb2.Task], context: Any) -> task_pb2.Task:
        self.calls += 1
        return task_pb2.Task(title=str(len([r async for r in requests])))

    def handler(self) -> grpc.GenericRpcHandler:
        def codec(**extra: Any) -> dict[str, Any]:
            return {
                "request_deserializer": task_pb2.Task.FromString,
                "response_serializer": task_pb2.Task.SerializeToString,
                **extra,
            }

        return grpc.method_handlers_generic_handler(
            "test.v1.Echo",
            {
                "Echo": grpc.unary_unary_rpc_method_handler(self.echo, **codec()),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat, **codec()),
                "Upload": grpc.stream_unary_rpc_method_handler(self.upload, **codec()),
            },
        )


@asynccontextmanager
async def echo_server(env: dict[str, str] | None = None) -> AsyncIterator[tuple[EchoService, grpc.aio.Channel]]:
    settings = Settings.from_env({"TODO_GRPC_PORT": "0", **(env or {})})
    server = KitServer(settings, TokenVerifier(KEY))
    service = EchoService()
    server.server.add_generic_rpc_handlers((service.handler(),))
    port = await server.start(["test.v1.Echo"])
    await server.mark_serving()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield service, channel
    finally:
        await server.stop(grace=0.1)


def raw_call(channel: grpc.aio.Channel, method: str = ECHO) -> Callable[..., Awaitable[bytes]]:
    return channel.unary_unary(method)  # type: ignore[no-any-return]


def echo(channel: grpc.aio.Channel) -> Callable[..., Awaitable[task_pb2.Task]]:
    return channel.unary_unary(  # type: ignore[no-any-return]
        ECHO, request_serializer=task_pb2.Task.SerializeToString, response_deserializer=task_pb2.Task.FromString
    )


async def test_invalid_utf8_is_invalid_argument_and_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    not_utf8 = b"\x0a\x02\xc3\x28"  # field 1 (title), two bytes that are not UTF-8
    async with echo_server() as (service, channel):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await raw_call(channel)(not_utf8, metadata=ALICE)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "UTF-8" in (raised.value.details() or "")
        assert violated_fields(raised.value) == ["request"]
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await raw_call(channel)(not_utf8)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as garbage:
            await raw_call(channel)(b"\xff\xff\xff", metadata=ALICE)
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert service.calls == 0
    loud = [r for r in caplog.records if r.levelno > logging.WARNING or r.exc_info]
    assert loud == []


async def test_nul_characters_and_out_of_range_timestamps_are_invalid_argument_naming_the_field() -> None:
    async with echo_server() as (service, channel):
        for request, field in [
            (task_pb2.Task(title="a\x00b"), "title"),
            (task_pb2.Task(tags=["ok", "\x00"]), "tags[1]"),
            (task_pb2.Task(create_time=timestamp_pb2.Timestamp(seconds=-62_135_596_801)), "create_time"),
            (task_pb2.Task(update_time=timestamp_pb2.Timestamp(nanos=-5)), "update_time"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await echo(channel)(request, metadata=ALICE)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert violated_fields(raised.value) == [field]
        assert service.calls == 0
        assert (await echo(channel)(task_pb2.Task(title="Pay rent"), metadata=ALICE)).title == "Pay rent"


async def test_streaming_requests_are_refused_not_let_through_unauthenticated() -> None:
    async with echo_server() as (service, channel):
        for metadata in ([], ALICE):
            chat = channel.stream_stream(CHAT)(metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await chat.write(b"")
                await chat.read()
            # A write racing the server's refusal can surface as INTERNAL in the client library; either way the
            # call is refused and never reaches the servicer (checked below).
            assert raised.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL)
            with pytest.raises(grpc.aio.AioRpcError) as upload:
                await channel.stream_unary(UPLOAD)(iter([b"", b""]), metadata=metadata)
            assert upload.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert service.calls == 0


async def test_a_call_without_a_client_deadline_ends_at_the_servers_default() -> None:
    async with echo_server({"TODO_GRPC_DEFAULT_DEADLINE_SECONDS": "1"}) as (service, channel):
        service.hold = asyncio.Event()  # never set: the call would wait forever
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await asyncio.wait_for(echo(channel)(task_pb2.Task(title="x"), metadata=ALICE), timeout=60)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "default deadline" in (raised.value.details() or "")


async def test_calls_beyond_the_concurrency_limit_are_resource_exhausted() -> None:
    async with echo_server({"TODO_GRPC_MAX_CONCURRENT_RPCS": "2"}) as (service, channel):
        service.hold = asyncio.Event()
        held = [asyncio.ensure_future(echo(channel)(task_pb2.Task(title="x"), metadata=ALICE)) for _ in range(2)]
        await eventually(lambda: service.waiting == 2)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await echo(channel)(task_pb2.Task(title="y"), metadata=ALICE, timeout=30)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        service.hold.set()
        assert [r.title for r in await asyncio.gather(*held)] == ["x", "x"]


async def test_one_access_line_per_call_with_method_status_duration_and_user_but_no_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="todo_kit.access")
    async with echo_server() as (_, channel):
        await echo(channel)(task_pb2.Task(title="my secret title"), metadata=ALICE)
        with pytest.raises(grpc.aio.AioRpcError):
            await echo(channel)(task_pb2.Task(title="another secret\x00"), metadata=ALICE)
        with pytest.raises(grpc.aio.AioRpcError):
            await echo(channel)(task_pb2.Task(title="anonymous secret"))
    lines = [r for r in caplog.records if r.name == "todo_kit.access"]
    assert [(r.levelno, r.method, r.code) for r in lines] == [  # type: ignore[attr-defined]
        (logging.INFO, ECHO, "OK"),
        (logging.INFO, ECHO, "INVALID_ARGUMENT"),
        (logging.INFO, ECHO, "UNAUTHENTICATED"),
    ]
    assert [getattr(r, "user_id", None) for r in lines] == ["alice", "alice", None]
    formatted = [JsonFormatter().format(r) for r in lines]
    for line in formatted:
        assert '"duration_ms": ' in line and '"request_id": "request-' in line
        assert "secret" not in line


def test_debug_logs_are_not_flooded_by_library_internals() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {name: logging.getLogger(name).level for name in NOISY_LOGGERS})
    try:
        configure_logging("DEBUG")
        root.handlers[0].stream = io.StringIO()  # type: ignore[attr-defined]
        assert logging.getLogger("todo_kit.server").isEnabledFor(logging.DEBUG)
        for library in ("grpc._cython.cygrpc", "asyncio", "sqlalchemy.engine.Engine", "sqlalchemy.pool"):
            assert not logging.getLogger(library).isEnabledFor(logging.INFO), library
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
