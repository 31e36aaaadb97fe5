"""The gRPC server every service runs on: identity, error mapping, health, reflection, tracing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from opentelemetry import trace

from todo_kit.auth import TokenVerifier, set_current_user
from todo_kit.config import Settings
from todo_kit.errors import DomainError
from todo_kit.request_context import bind_authorization, bind_traceparent

log = logging.getLogger(__name__)

ServicerContext = Any
"""What servicers receive as `context` (grpc.aio.ServicerContext; grpc ships no type information)."""

# No request of this contract needs more; a larger one is RESOURCE_EXHAUSTED
# before any handler runs.
MAX_REQUEST_BYTES = 1024 * 1024

# Methods anyone may call without a token: probes and service discovery.
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _trace_id() -> str:
    span = trace.get_current_span().get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else ""


class KitInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call and maps errors to statuses.

    DomainError -> its status with google.rpc details; any other exception ->
    INTERNAL carrying only the trace id (the stack trace goes to the log).
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client streaming is not used by this contract

    def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        metadata = dict(context.invocation_metadata() or ())
        set_current_user(self._verifier.user_of(metadata.get("authorization")))
        # Commands this call makes and events it causes carry the same identity and trace.
        bind_authorization(metadata.get("authorization"))
        bind_traceparent(metadata.get("traceparent"))

    def _wrap_unary(self, method: str, inner: Any) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            failure = None
            try:
                self._authenticate(context)
                return await inner(request, context)
            except DomainError as exc:
                failure = exc
            except grpc.aio.AbortError:
                raise
            except Exception:
                failure = _internal(method)
            await context.abort_with_status(rpc_status.to_status(failure.to_status()))

        return call

    def _wrap_stream(self, method: str, inner: Any) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            failure = None
            try:
                self._authenticate(context)
                async for response in inner(request, context):
                    yield response
                return
            except DomainError as exc:
                failure = exc
            except grpc.aio.AbortError:
                raise
            except Exception:
                failure = _internal(method)
            await context.abort_with_status(rpc_status.to_status(failure.to_status()))

        return call


def _internal(method: str) -> DomainError:
    reference = _trace_id() or f"request-{uuid.uuid4().hex[:16]}"
    log.exception("unhandled error in RPC", extra={"method": method, "error_ref": reference})
    error = DomainError(f"internal error; quote {reference} when reporting it")
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
    """A grpc.aio server with health (NOT_SERVING until ready) and reflection."""

    def __init__(self, settings: Settings, verifier: TokenVerifier, *, tracing: Iterable[Any] = ()) -> None:
        self.settings = settings
        # gRPC turns SO_REUSEPORT on by default: a second server on a busy port
        # would then start silently and take half of the calls.
        self.server = grpc.aio.server(
            interceptors=[*tracing, KitInterceptor(verifier)],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_REQUEST_BYTES)],
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
