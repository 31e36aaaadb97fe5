"""The gRPC server every service runs on: identity, input checks, error mapping, limits, access log, health,
reflection, tracing."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from opentelemetry import trace

from todo_kit.auth import BearerVerifier, set_current_user
from todo_kit.config import Settings
from todo_kit.errors import DeadlineExceeded, DomainError, InvalidArgument
from todo_kit.inputs import request_problems
from todo_kit.ratelimit import CommandRateLimiter
from todo_kit.request_context import bind_authorization, bind_traceparent

log = logging.getLogger(__name__)

ServicerContext = Any
"""What servicers receive as `context` (grpc.aio.ServicerContext; grpc ships no type information)."""

# No request of this contract needs more; a larger one is RESOURCE_EXHAUSTED
# before any handler runs.
MAX_REQUEST_BYTES = 1024 * 1024

# Long-lived calls (server streams) to clients that vanished without closing
# their connection are found by pings: one after a minute without traffic, the
# connection closed if it is not answered within 20 s. Clients may ping too
# (every 10 s at most, also between calls) without being sent away.
KEEPALIVE = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
)


def pending_call_limits(max_concurrent_rpcs: int) -> tuple[tuple[str, int], ...]:
    """How many arrived calls gRPC keeps waiting for the application to take up.

    gRPC's defaults (1,000, randomly refusing more up to 3,000) cancel part of
    a burst, such as thousands of live streams reconnecting after a restart,
    before any handler sees it. The server takes every call it may run at once.
    """
    return (
        ("grpc.server.max_pending_requests", max_concurrent_rpcs),
        ("grpc.server.max_pending_requests_hard_limit", 2 * max_concurrent_rpcs),
    )


# Methods anyone may call without a token: probes and service discovery.
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# Dapr's callbacks (AppCallback, AppCallbackAlpha, AppCallbackHealthCheck): only a Dapr host serves them, and it
# guards them itself with Dapr's app API token (todo_kit.dapr_callback); a user's bearer token means nothing there.
CALLBACK_METHOD_PREFIXES = ("/dapr.proto.runtime.v1.AppCallback",)


access_log = logging.getLogger("todo_kit.access")


def _trace_id() -> str:
    span = trace.get_current_span().get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else ""


class _CallRecord:
    """One call as its access line tells it: method, outcome, duration, who, and a reference to quote."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.user_id = ""
        trace_id = _trace_id()
        self.trace_id = trace_id
        # Without tracing, a request id ties the access line, the error log and the client's message together.
        self.reference = trace_id or f"request-{uuid.uuid4().hex[:16]}"

    def log(self) -> None:
        """The call's one INFO access line; never anything of the request's content."""
        extra: dict[str, object] = {
            "method": self.method,
            "code": self.code.name,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 1),
        }
        if not self.trace_id:
            extra["request_id"] = self.reference
        if self.user_id:
            extra["user_id"] = self.user_id
        access_log.info("rpc", extra=extra)


class KitInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call, checks and decodes its request, bounds its time, maps errors, logs it.

    Requests are decoded here rather than by grpc, so an undecodable one (a
    string that is not UTF-8, a broken frame) is INVALID_ARGUMENT, and every
    request is checked with todo_kit.inputs.request_problems before its handler
    runs. DomainError -> its status with google.rpc details; any other
    exception -> INTERNAL carrying only a reference (the stack trace goes to the
    log). A unary call without a client deadline gets default_deadline seconds.
    Client- and bidirectional-streaming methods are refused (UNIMPLEMENTED):
    none is in the contract, and none may bypass authentication. Public methods
    (health, reflection) pass untouched.
    """

    def __init__(
        self, verifier: BearerVerifier, *, default_deadline: float = 30.0, limiter: CommandRateLimiter | None = None
    ) -> None:
        self._verifier = verifier
        self._default_deadline = default_deadline
        self._limiter = limiter

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_METHOD_PREFIXES) or method.startswith(CALLBACK_METHOD_PREFIXES):
            return handler
        # request_deserializer=None: the wrapper receives the raw bytes and decodes them itself.
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary, handler.request_deserializer),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream, handler.request_deserializer),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        return self._refused(method, handler)

    async def _admit(self, record: _CallRecord, decode: Any, raw: bytes, context: ServicerContext) -> Any:
        """The authenticated user is bound and the request decoded and checked; raises DomainError otherwise."""
        metadata = dict(context.invocation_metadata() or ())
        record.user_id = await self._verifier.authenticate(metadata.get("authorization"))
        if self._limiter is not None:
            # Once per call: a stream counts when it opens, whatever it sends afterwards.
            await self._limiter.admit(record.method, record.user_id)
        set_current_user(record.user_id)
        # Commands this call makes and events it causes carry the same identity and trace.
        bind_authorization(metadata.get("authorization"))
        bind_traceparent(metadata.get("traceparent"))
        request = _decoded(decode, raw)
        problems = request_problems(request) if isinstance(request, Message) else []
        if problems:
            raise InvalidArgument(problems)
        return request

    def _wrap_unary(self, method: str, inner: Any, decode: Any) -> Any:
        async def call(raw: bytes, context: ServicerContext) -> Any:
            record = _CallRecord(method)
            try:
                request = await self._admit(record, decode, raw, context)
                remaining = context.time_remaining()
                limit = self._default_deadline if remaining is None else None
                try:
                    async with asyncio.timeout(limit) as scope:
                        return await inner(request, context)
                except TimeoutError:
                    if not scope.expired():
                        raise
                    raise DeadlineExceeded(
                        f"the call took longer than {limit:g} s (the server's default deadline); retry"
                    ) from None
            except BaseException as exc:
                await self._fail(record, exc, context)
                raise
            finally:
                record.log()

        return call

    def _wrap_stream(self, method: str, inner: Any, decode: Any) -> Any:
        async def call(raw: bytes, context: ServicerContext) -> AsyncIterator[Any]:
            record = _CallRecord(method)
            try:
                request = await self._admit(record, decode, raw, context)
                async for response in inner(request, context):
                    yield response
            except BaseException as exc:
                await self._fail(record, exc, context)
                raise
            finally:
                record.log()

        return call

    @staticmethod
    async def _fail(record: _CallRecord, exc: BaseException, context: ServicerContext) -> None:
        """Records how the call ended and, for an error of ours or of a handler, aborts with its status."""
        if isinstance(exc, grpc.aio.AbortError):
            record.code = _code_of(context, grpc.StatusCode.UNKNOWN)
            return
        if isinstance(exc, asyncio.CancelledError):
            # The client went away or its own deadline passed; nobody reads a reply.
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            record.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            return
        if not isinstance(exc, Exception):
            record.code = grpc.StatusCode.CANCELLED  # a stream closed by its client (GeneratorExit), or shutdown
            return
        failure = exc if isinstance(exc, DomainError) else _internal(record)
        record.code = failure.code
        await context.abort_with_status(rpc_status.to_status(failure.to_status()))

    @staticmethod
    def _refused(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        async def refuse(requests: Any, context: ServicerContext) -> None:
            record = _CallRecord(method)
            record.code = grpc.StatusCode.UNIMPLEMENTED
            record.log()
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "streaming requests are not served")

        make = grpc.stream_unary_rpc_method_handler if handler.stream_unary else grpc.stream_stream_rpc_method_handler
        return make(refuse, request_deserializer=None, response_serializer=handler.response_serializer)


def _decoded(decode: Any, raw: bytes) -> Any:
    if decode is None:
        return raw
    try:
        return decode(raw)
    except Exception:  # DecodeError for a broken frame or a string that is not UTF-8
        raise InvalidArgument(
            [("request", "is not a valid message of this method's request type (text fields must be UTF-8)")]
        ) from None


def _code_of(context: ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    try:
        code = context.code()
    except Exception:
        return default
    return code if isinstance(code, grpc.StatusCode) else default


def _internal(record: _CallRecord) -> DomainError:
    log.exception("unhandled error in RPC", extra={"method": record.method, "error_ref": record.reference})
    error = DomainError(f"internal error; quote {record.reference} when reporting it")
    error.code = grpc.StatusCode.INTERNAL
    return error


_tracer_provider: Any = None


def configure_tracing(settings: Settings, service_name: str) -> list[grpc.aio.ServerInterceptor]:
    """OpenTelemetry gRPC instrumentation, exporting over OTLP, when OTEL_EXPORTER_OTLP_ENDPOINT is set; off otherwise.

    Set up once per process. With tracing off, logs and errors carry a request
    id instead of a trace id.
    """
    global _tracer_provider
    if not settings.otlp_endpoint:
        return []
    if _tracer_provider is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        _tracer_provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        _tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        trace.set_tracer_provider(_tracer_provider)
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_tracer_provider)]


class KitServer:
    """A grpc.aio server with health (NOT_SERVING until ready) and reflection.

    At most settings.max_concurrent_rpcs calls run at once (more are refused
    with RESOURCE_EXHAUSTED by grpc; an open stream counts as one), a unary
    call without a client deadline gets settings.default_deadline_seconds
    (streams get none: they are meant to stay open), and keepalive pings find
    connections whose client is gone (KEEPALIVE).
    """

    def __init__(
        self,
        settings: Settings,
        verifier: BearerVerifier,
        *,
        tracing: Iterable[Any] = (),
        limiter: CommandRateLimiter | None = None,
    ) -> None:
        self.settings = settings
        # gRPC turns SO_REUSEPORT on by default: a second server on a busy port
        # would then start silently and take half of the calls.
        self.server = grpc.aio.server(
            interceptors=[
                *tracing,
                KitInterceptor(verifier, default_deadline=settings.default_deadline_seconds, limiter=limiter),
            ],
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                *KEEPALIVE,
                *pending_call_limits(settings.max_concurrent_rpcs),
            ],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names: list[str] = []
        self.port = 0

    async def start(self, service_names: Iterable[str]) -> int:
        """Adds reflection, binds, starts; every service is NOT_SERVING until mark_serving."""
        self.service_names = list(service_names)
        reflection.enable_server_reflection(
            [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise SystemExit(f"cannot listen on {address}: is another instance running? (set TODO_GRPC_PORT)")
        await self.server.start()
        return self.port

    async def mark_serving(self) -> None:
        """Declares every service ready (migrations ran, subscriptions are live)."""
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def set_health(self, statuses: dict[str, int]) -> None:
        """Sets the health of services by name ("" is the server as a whole)."""
        for name, status in statuses.items():
            await self.health.set(name, status)

    async def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first (so load balancers drain), then stop with grace."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
