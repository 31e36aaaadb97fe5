"""Domain errors and their gRPC status.

Handlers raise these; the server's interceptor turns them into the status a
client expects (with google.rpc details) and anything else into INTERNAL with
only a trace id, never a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

SHOWN_MAX = 80
"""How much of a client's value an error message repeats (an id, a path): enough to recognise it."""

MESSAGE_MAX = 2000
"""The longest status message sent; the message and details travel in trailing metadata, which is limited."""

VIOLATIONS_MAX = 20
"""At most this many field violations are sent; the first ones name what to fix first."""


def shown(value: str, limit: int = SHOWN_MAX) -> str:
    """value quoted for an error message, cut to limit characters so a huge id cannot swell the reply."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DomainError(Exception):
    """An error a client caused or can act on."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        message = _cut(message, MESSAGE_MAX)
        super().__init__(message)
        self.message = message

    def details(self) -> list[any_pb2.Any]:
        """google.rpc detail messages to send with the status."""
        return []

    def to_status(self) -> status_pb2.Status:
        """The google.rpc.Status of this error."""
        code = getattr(code_pb2, self.code.name)
        return status_pb2.Status(code=code, message=self.message, details=self.details())


class InvalidArgument(DomainError):
    """Bad input: INVALID_ARGUMENT with one google.rpc.BadRequest violation per field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Iterable[tuple[str, str]]) -> None:
        self.violations = [(_cut(field, 200), _cut(description, 300)) for field, description in violations][
            :VIOLATIONS_MAX
        ]
        summary = "; ".join(f"{field}: {description}" for field, description in self.violations)
        super().__init__(f"invalid argument: {summary}")

    def details(self) -> list[any_pb2.Any]:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                for field, description in self.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        return [packed]


class NotFound(DomainError):
    """The object does not exist for this caller (also when it is another user's)."""

    code = grpc.StatusCode.NOT_FOUND


class VersionConflict(DomainError):
    """The object changed since the version the caller expected."""

    code = grpc.StatusCode.ABORTED


class LimitExceeded(DomainError):
    """A size or count limit was reached."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(DomainError):
    """No valid bearer token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(DomainError):
    """The object is not in a state that allows the call."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DeadlineExceeded(DomainError):
    """The call took longer than its deadline (the server's default when the client set none)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(DomainError):
    """The server does not serve this kind of call."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Violations:
    """Collects field violations so one response names every bad field."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        """Records that field is wrong, and why."""
        self.items.append((field, description))

    def raise_if_any(self) -> None:
        """Raises InvalidArgument if anything was recorded."""
        if self.items:
            raise InvalidArgument(self.items)
