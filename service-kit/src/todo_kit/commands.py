"""Command channels: gRPC calls from one service to another, made as the user being served.

A runtime hands a unit a channel for each target; calls on it carry the
current caller's `authorization` and W3C `traceparent` (todo_kit.request_context),
plus whatever the runtime needs to route them (Dapr's `dapr-app-id`, say).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc

from todo_kit.request_context import current_authorization, current_traceparent


def forwarded_metadata(extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The metadata a command carries: the caller's identity and trace context, then extra."""
    metadata: list[tuple[str, str]] = []
    authorization = current_authorization()
    if authorization:
        metadata.append(("authorization", authorization))
    traceparent = current_traceparent()
    if traceparent:
        metadata.append(("traceparent", traceparent))
    metadata.extend(extra)
    return metadata


def _with_forwarded(details: Any, extra: Sequence[tuple[str, str]], default_timeout: float | None = None) -> Any:
    given = list(details.metadata or ())
    names = {key for key, _ in given}
    # What the code making the call set itself wins over what is forwarded.
    added = [(k, v) for k, v in forwarded_metadata(extra) if k not in names]
    timeout = details.timeout if details.timeout is not None else default_timeout
    return grpc.aio.ClientCallDetails(
        details.method, timeout, grpc.aio.Metadata(*given, *added), details.credentials, details.wait_for_ready,
    )  # fmt: skip


class _ForwardUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, extra: Sequence[tuple[str, str]], default_timeout: float | None = None) -> None:
        self._extra = extra
        self._default_timeout = default_timeout

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_forwarded(client_call_details, self._extra, self._default_timeout), request)


class _ForwardStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, extra: Sequence[tuple[str, str]]) -> None:
        self._extra = extra

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_forwarded(client_call_details, self._extra), request)


def retry_options(attempts: int = 5, initial_backoff: float = 0.1, max_backoff: float = 2.0) -> list[tuple[str, Any]]:
    """Channel options that retry a call refused with UNAVAILABLE (the target restarting) with backoff.

    gRPC retries only calls that did not reach the service's handler or that
    the server refused as a whole, within the call's deadline.
    """
    config = {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": attempts,
                    "initialBackoff": f"{initial_backoff}s",
                    "maxBackoff": f"{max_backoff}s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    # A target that restarts is reconnected to within the retries' window (gRPC's default first backoff is 1 s).
    reconnect = int(initial_backoff * 1000)
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(config)),
        ("grpc.initial_reconnect_backoff_ms", reconnect),
        ("grpc.min_reconnect_backoff_ms", reconnect),
        ("grpc.max_reconnect_backoff_ms", int(max_backoff * 1000)),
    ]


def command_channel(
    address: str,
    extra_metadata: Sequence[tuple[str, str]] = (),
    *,
    options: Sequence[tuple[str, Any]] = (),
    default_timeout: float | None = None,
    stream_metadata: Sequence[tuple[str, str]] = (),
) -> grpc.aio.Channel:
    """A plaintext channel to address whose calls forward the caller's identity and trace context.

    extra_metadata goes on every call, stream_metadata on server-streaming
    calls only (Dapr's `dapr-stream: true`); options: gRPC channel options
    (retry_options()); default_timeout: the deadline, in seconds, of a unary
    call made without one.
    """
    return grpc.aio.insecure_channel(
        address,
        options=list(options),
        interceptors=[
            _ForwardUnary(extra_metadata, default_timeout),
            _ForwardStream([*extra_metadata, *stream_metadata]),
        ],
    )
