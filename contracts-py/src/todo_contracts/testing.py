"""Helpers for tests of code that uses the contract: fully populated sample messages."""

from __future__ import annotations

from typing import Any, TypeVar

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"seconds": 1_790_000_000, "nanos": 123_000},
    "google.protobuf.Duration": {"seconds": 1800},
    "google.protobuf.FieldMask": {"paths": ["title"]},
}


def populate(message: M, depth: int = 0) -> M:
    """Fills every scalar, enum, repeated and (three levels deep) message field of message.

    A round trip of a fully populated message proves every field survives, not
    just the ones a hand-written example happens to set. One member of each
    oneof is set; map fields are left empty.
    """
    for field in message.DESCRIPTOR.fields:
        if field.containing_oneof is not None and message.WhichOneof(field.containing_oneof.name):
            continue
        value = _sample(field, depth)
        if value is None:
            continue
        target: Any = getattr(message, field.name)
        if field.message_type is not None:
            if field.is_repeated:
                target.add().CopyFrom(value)
            else:
                target.CopyFrom(value)
        elif field.is_repeated:
            target.append(value)
        else:
            setattr(message, field.name, value)
    return message


def _sample(field: Any, depth: int) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        if depth >= 3 or field.message_type.GetOptions().map_entry:
            return None
        cls = message_factory.GetMessageClass(field.message_type)
        known = _WELL_KNOWN.get(field.message_type.full_name)
        return cls(**known) if known is not None else populate(cls(), depth + 1)
    if kind == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values[-1].number
    if kind == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-välue"
    if kind == FieldDescriptor.TYPE_BYTES:
        return b"\x00\x01" + field.name.encode()
    if kind == FieldDescriptor.TYPE_BOOL:
        return True
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return 0.5
    return 7
