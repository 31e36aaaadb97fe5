"""Shared helpers for the contract package's tests."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def populate(message: Message, depth: int = 0) -> Message:
    """Fills every scalar, enum, repeated and (to a depth) message field.

    A round trip of a fully populated message proves every field survives,
    not just the ones a hand-written example happens to set.
    """
    for field in message.DESCRIPTOR.fields:
        if field.containing_oneof is not None and message.WhichOneof(field.containing_oneof.name):
            continue  # one member of a oneof is enough
        value = _sample(field, depth)
        if value is None:
            continue
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                continue
            target = getattr(message, field.name)
            if _is_repeated(field):
                target.add().CopyFrom(value)
            else:
                target.CopyFrom(value)
        elif _is_repeated(field):
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)
    return message


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _sample(field: FieldDescriptor, depth: int) -> object:
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        if depth >= 3:
            return None
        full = field.message_type.full_name
        cls = _message_class(field)
        if full == "google.protobuf.Timestamp":
            return cls(seconds=1_790_000_000, nanos=123_000)
        if full == "google.protobuf.Duration":
            return cls(seconds=1800)
        if full == "google.protobuf.FieldMask":
            return cls(paths=["title"])
        return populate(cls(), depth + 1)
    if t == FieldDescriptor.TYPE_ENUM:
        values = field.enum_type.values
        return values[-1].number
    if t == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-välue"
    if t == FieldDescriptor.TYPE_BYTES:
        return b"\x00\x01" + field.name.encode()
    if t == FieldDescriptor.TYPE_BOOL:
        return True
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return 0.5
    return 7


def _message_class(field: FieldDescriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(field.message_type)
