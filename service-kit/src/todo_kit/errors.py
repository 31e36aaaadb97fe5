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


class DomainError(Exception):
    """An error a client caused or can act on."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
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
        self.violations = list(violations)
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
