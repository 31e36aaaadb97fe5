"""Input hygiene every service shares: text without NUL characters and of a bounded length, and Timestamps and
Durations that protobuf and Python's datetime can represent.

The server checks every request with request_problems before its handler runs,
so no handler sees a NUL character (PostgreSQL refuses it in text) or a
Timestamp that cannot become a datetime. Handlers use text_problem,
timestamp_problem and duration_problem for their own fields and limits.
"""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

TIMESTAMP_MIN_SECONDS = -62_135_596_800
"""0001-01-01T00:00:00Z, the earliest instant a google.protobuf.Timestamp (and a Python datetime) holds."""
TIMESTAMP_MAX_SECONDS = 253_402_300_799
"""9999-12-31T23:59:59Z, the latest."""
DURATION_MAX_SECONDS = 315_576_000_000
"""About 10,000 years, the longest google.protobuf.Duration."""
NANOS_MAX = 999_999_999
PROBLEMS_MAX = 20
"""request_problems stops after this many: enough to show what is wrong, little to send back."""

_TIMESTAMP = timestamp_pb2.Timestamp.DESCRIPTOR.full_name
_DURATION = duration_pb2.Duration.DESCRIPTOR.full_name


def text_problem(value: str, max_length: int, *, required: bool = False) -> str | None:
    """What is wrong with a text value (NUL characters, more than max_length characters, empty when required)."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if len(value) > max_length:
        return f"at most {max_length} characters, got {len(value)}"
    if required and not value.strip():
        return "must not be empty"
    return None


def timestamp_problem(value: timestamp_pb2.Timestamp) -> str | None:
    """What makes a Timestamp invalid (outside years 1 to 9999, or nanos outside 0 to 999,999,999); None if valid."""
    if not TIMESTAMP_MIN_SECONDS <= value.seconds <= TIMESTAMP_MAX_SECONDS:
        return "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
    if not 0 <= value.nanos <= NANOS_MAX:
        return f"nanos must be between 0 and {NANOS_MAX}"
    return None


def duration_problem(value: duration_pb2.Duration) -> str | None:
    """What makes a Duration invalid (over 10,000 years, nanos out of range or of the other sign); None if valid."""
    if abs(value.seconds) > DURATION_MAX_SECONDS:
        return f"seconds must be between -{DURATION_MAX_SECONDS} and {DURATION_MAX_SECONDS}"
    if abs(value.nanos) > NANOS_MAX:
        return f"nanos must be between -{NANOS_MAX} and {NANOS_MAX}"
    if (value.seconds > 0 and value.nanos < 0) or (value.seconds < 0 and value.nanos > 0):
        return "seconds and nanos must have the same sign"
    return None


def request_problems(message: Message, path: str = "") -> list[tuple[str, str]]:
    """(field path, problem) for each NUL character in a string and each invalid Timestamp or Duration in message.

    Nested and repeated fields are included ("task.reminders[2].before_due");
    at most PROBLEMS_MAX are returned.
    """
    problems: list[tuple[str, str]] = []
    _walk(message, path, problems)
    return problems[:PROBLEMS_MAX]


def _walk(message: Message, path: str, problems: list[tuple[str, str]]) -> None:
    if len(problems) >= PROBLEMS_MAX:
        return
    kind = message.DESCRIPTOR.full_name
    if kind == _TIMESTAMP:
        _note(problems, path, timestamp_problem(message))  # type: ignore[arg-type]
        return
    if kind == _DURATION:
        _note(problems, path, duration_problem(message))  # type: ignore[arg-type]
        return
    for field, value in message.ListFields():
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                if isinstance(key, str) and "\x00" in key:
                    _note(problems, where, "keys must not contain NUL characters")
                _check(value_field, item, f"{where}[{key!r}]", problems)
        elif field.is_repeated:
            for index, item in enumerate(value):
                _check(field, item, f"{where}[{index}]", problems)
        else:
            _check(field, value, where, problems)


def _check(field: FieldDescriptor, value: object, where: str, problems: list[tuple[str, str]]) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        if "\x00" in value:  # type: ignore[operator]
            _note(problems, where, "must not contain NUL characters")
    elif field.message_type is not None:
        _walk(value, where, problems)  # type: ignore[arg-type]


def _note(problems: list[tuple[str, str]], where: str, problem: str | None) -> None:
    if problem is not None and len(problems) < PROBLEMS_MAX:
        problems.append((where or "request", problem))
