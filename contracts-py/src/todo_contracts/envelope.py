"""The event envelope: event messages as CloudEvents in protobuf format.

Every event crosses a service boundary as the bytes of an io.cloudevents.v1
CloudEvent (media type application/cloudevents+protobuf) whose proto_data is
the event message packed in an Any, and whose attributes say what it is:

- type: the message's full protobuf name, e.g. "todo.task.v1.TaskCreated";
- dataschema: the Any type URL of the message;
- partitionkey: the owning user, so one user's events keep their order;
- time, subject (usually the task id), traceparent when there is a trace.

decode() is strict: anything that is not a well-formed CloudEvent 1.0 carrying
a registered event type raises an EnvelopeError subclass that says what is
wrong, so a consumer can route it to a dead-letter topic instead of retrying.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from todo_contracts import topics
from todo_contracts.cloudevents.v1.cloudevents_pb2 import CloudEvent
from todo_contracts.ids import new_id

CONTENT_TYPE = "application/cloudevents+protobuf"
"""Media type of the encoded envelope (the CloudEvents protobuf format)."""
DATA_CONTENT_TYPE = "application/protobuf"
"""Media type of the payload inside the envelope."""
SPEC_VERSION = "1.0"
TYPE_URL_PREFIX = "type.googleapis.com/"

# Attribute names (CloudEvents context attributes and extensions).
ATTR_TIME = "time"
ATTR_SUBJECT = "subject"
ATTR_DATASCHEMA = "dataschema"
ATTR_DATACONTENTTYPE = "datacontenttype"
ATTR_PARTITION_KEY = "partitionkey"
ATTR_TRACEPARENT = "traceparent"


class EnvelopeError(ValueError):
    """Bytes or a CloudEvent that cannot be turned into a known event."""


class NotACloudEventError(EnvelopeError):
    """The bytes are not a protobuf CloudEvent, or required attributes are missing."""


class UnsupportedSpecVersionError(EnvelopeError):
    """The CloudEvent is of a spec version other than 1.0."""


class UnknownEventTypeError(EnvelopeError):
    """The CloudEvent's type is not a registered event type."""


class PayloadMismatchError(EnvelopeError):
    """The payload is missing, of another type than `type` says, or corrupt."""


@dataclass(frozen=True)
class DecodedEvent:
    """An event taken out of its envelope."""

    id: str
    source: str
    type: str
    time: datetime | None
    subject: str
    partition_key: str
    traceparent: str
    message: Message
    cloud_event: CloudEvent


def type_url(event: Message | type[Message]) -> str:
    """The Any type URL of an event message (also its CloudEvent dataschema)."""
    return TYPE_URL_PREFIX + event.DESCRIPTOR.full_name


def wrap(
    event: Message,
    *,
    source: str,
    subject: str = "",
    partition_key: str | None = None,
    traceparent: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent:
    """Wraps an event message into a CloudEvent.

    source: the publishing service as a URI reference, e.g. "/todo/task_svc".
    partition_key: defaults to the event's user_id; an event without an owner
    is refused. event_id defaults to a new UUIDv7 (unique and time-sortable),
    time to now.
    """
    name = topics.event_type_name(event)
    if topics.event_class(name) is None:
        raise UnknownEventTypeError(f"{name} is not a registered event type")
    if not source:
        raise ValueError("source must not be empty")
    if partition_key is None:
        partition_key = getattr(event, "user_id", "")
    if not partition_key:
        raise ValueError(f"{name} has no user_id and no partition_key was given")
    ce = CloudEvent(id=event_id or new_id(), source=source, spec_version=SPEC_VERSION, type=name)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(time or datetime.now(UTC))
    ce.attributes[ATTR_TIME].ce_timestamp.CopyFrom(stamp)
    ce.attributes[ATTR_DATASCHEMA].ce_uri = type_url(event)
    ce.attributes[ATTR_DATACONTENTTYPE].ce_string = DATA_CONTENT_TYPE
    ce.attributes[ATTR_PARTITION_KEY].ce_string = partition_key
    if subject:
        ce.attributes[ATTR_SUBJECT].ce_string = subject
    if traceparent:
        ce.attributes[ATTR_TRACEPARENT].ce_string = traceparent
    ce.proto_data.Pack(event)
    return ce


def encode(
    event: Message,
    *,
    source: str,
    subject: str = "",
    partition_key: str | None = None,
    traceparent: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> bytes:
    """Wraps an event (see wrap) and serializes it: application/cloudevents+protobuf bytes."""
    ce = wrap(
        event,
        source=source,
        subject=subject,
        partition_key=partition_key,
        traceparent=traceparent,
        event_id=event_id,
        time=time,
    )
    return ce.SerializeToString(deterministic=True)


def decode(data: bytes) -> DecodedEvent:
    """Parses envelope bytes and returns the typed event; raises EnvelopeError."""
    ce = CloudEvent()
    try:
        ce.ParseFromString(data)
    except (DecodeError, RuntimeError) as exc:
        raise NotACloudEventError(f"bytes are not a protobuf CloudEvent: {exc}") from None
    if len(UnknownFieldSet(ce)):
        raise NotACloudEventError("bytes are not a protobuf CloudEvent: they hold fields a CloudEvent does not have")
    return unwrap(ce)


def unwrap(ce: CloudEvent) -> DecodedEvent:
    """Checks a parsed CloudEvent and returns the typed event; raises EnvelopeError."""
    missing = [name for name in ("id", "source", "spec_version", "type") if not getattr(ce, name)]
    if missing:
        raise NotACloudEventError(f"not a CloudEvent: required attribute(s) {', '.join(missing)} missing")
    if ce.spec_version != SPEC_VERSION:
        raise UnsupportedSpecVersionError(
            f"CloudEvent spec version {ce.spec_version!r} is not supported (only {SPEC_VERSION!r})"
        )
    cls = topics.event_class(ce.type)
    if cls is None:
        raise UnknownEventTypeError(f"event type {ce.type!r} is not a registered event type")
    if ce.WhichOneof("data") != "proto_data":
        raise PayloadMismatchError(f"{ce.type} event {ce.id} carries no protobuf payload (proto_data)")
    expected_url = type_url(cls)
    if ce.proto_data.type_url != expected_url:
        raise PayloadMismatchError(
            f"{ce.type} event {ce.id} carries a payload of type {ce.proto_data.type_url!r}, expected {expected_url!r}"
        )
    schema = _string_attr(ce, ATTR_DATASCHEMA)
    if schema and schema != expected_url:
        raise PayloadMismatchError(f"{ce.type} event {ce.id} has dataschema {schema!r}, expected {expected_url!r}")
    message = cls()
    try:
        message.ParseFromString(ce.proto_data.value)
    except (DecodeError, RuntimeError) as exc:
        raise PayloadMismatchError(f"{ce.type} event {ce.id} payload does not parse as {ce.type}: {exc}") from None
    time = _time_attr(ce)
    return DecodedEvent(
        id=ce.id,
        source=ce.source,
        type=ce.type,
        time=time,
        subject=_string_attr(ce, ATTR_SUBJECT),
        partition_key=_string_attr(ce, ATTR_PARTITION_KEY),
        traceparent=_string_attr(ce, ATTR_TRACEPARENT),
        message=message,
        cloud_event=ce,
    )


def _time_attr(ce: CloudEvent) -> datetime | None:
    value = ce.attributes.get(ATTR_TIME)
    if value is None:
        return None
    if value.WhichOneof("attr") != "ce_timestamp":
        raise NotACloudEventError(f"event {ce.id}: the time attribute is not a timestamp")
    try:
        return value.ce_timestamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise NotACloudEventError(f"event {ce.id}: the time attribute is not a valid timestamp: {exc}") from None


def _string_attr(ce: CloudEvent, name: str) -> str:
    """An attribute's value as text, whatever string-like type it was sent as."""
    value = ce.attributes.get(name)
    if value is None:
        return ""
    kind = value.WhichOneof("attr")
    if kind in ("ce_string", "ce_uri", "ce_uri_ref"):
        return str(getattr(value, kind))
    return ""


__all__ = [
    "CONTENT_TYPE",
    "DATA_CONTENT_TYPE",
    "SPEC_VERSION",
    "DecodedEvent",
    "EnvelopeError",
    "NotACloudEventError",
    "PayloadMismatchError",
    "UnknownEventTypeError",
    "UnsupportedSpecVersionError",
    "decode",
    "encode",
    "type_url",
    "unwrap",
    "wrap",
]
