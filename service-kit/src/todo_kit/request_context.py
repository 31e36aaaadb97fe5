"""What travels with a request into the calls and events it causes: the caller's token and trace context.

The server binds both when an RPC arrives; a runtime binds the trace context
when it hands an event to a handler. Command channels forward them, and the
outbox stamps the trace context on every event it writes, so one trace follows
a user's command through every service it reaches.
"""

from __future__ import annotations

import contextvars
import re

from opentelemetry import trace

_authorization: contextvars.ContextVar[str | None] = contextvars.ContextVar("authorization", default=None)
_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)

# W3C trace context: version-traceid-parentid-flags, lower-case hex.
TRACEPARENT_PATTERN = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")


def bind_authorization(value: str | None) -> None:
    """Remembers the caller's `authorization` value for this context (set by the server)."""
    _authorization.set(value)


def current_authorization() -> str | None:
    """The `authorization` value of the RPC being handled, if any."""
    return _authorization.get()


def bind_traceparent(value: str | None) -> None:
    """Remembers an incoming W3C traceparent for this context; malformed values are ignored."""
    _traceparent.set(value if value and TRACEPARENT_PATTERN.match(value) else None)


def current_traceparent() -> str | None:
    """The trace context to pass on: the active span's when tracing is on, else the one received."""
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        return f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags):02x}"
    return _traceparent.get()
