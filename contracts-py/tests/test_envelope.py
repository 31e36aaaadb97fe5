"""The event envelope: every event type round-trips; bad bytes are rejected clearly."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from google.protobuf.message import Message

from todo_contracts import envelope, topics
from todo_contracts.cloudevents.v1.cloudevents_pb2 import CloudEvent
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2
from todo_contracts.testing import populate

ALL_EVENT_TYPES = sorted(topics.event_types().items())
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def sample_event() -> task_events.TaskCreated:
    return task_events.TaskCreated(user_id="alice", task=task_pb2.Task(task_id="t-1", title="Pay rent"))


def sample_bytes() -> bytes:
    return envelope.encode(sample_event(), source="/todo/task_svc", subject="t-1")


@pytest.mark.parametrize(("type_name", "cls"), ALL_EVENT_TYPES, ids=[n for n, _ in ALL_EVENT_TYPES])
def test_every_event_type_round_trips(type_name: str, cls: type[Message]) -> None:
    event = populate(cls())
    when = datetime(2026, 3, 8, 7, 0, 0, 250_000, tzinfo=UTC)
    data = envelope.encode(
        event, source="/todo/test", subject="subject-1", traceparent=TRACEPARENT, event_id="e-1", time=when
    )

    decoded = envelope.decode(data)

    assert decoded.message == event
    assert type(decoded.message) is cls
    assert decoded.type == type_name
    assert decoded.id == "e-1"
    assert decoded.source == "/todo/test"
    assert decoded.subject == "subject-1"
    assert decoded.time == when
    assert decoded.traceparent == TRACEPARENT
    assert decoded.partition_key == event.user_id  # type: ignore[attr-defined]
    ce = decoded.cloud_event
    assert ce.spec_version == "1.0"
    assert ce.attributes["dataschema"].ce_uri == f"type.googleapis.com/{type_name}"
    assert ce.proto_data.type_url == f"type.googleapis.com/{type_name}"


def test_defaults_give_unique_time_ordered_ids_and_current_time() -> None:
    before = datetime.now(UTC)
    first = envelope.decode(sample_bytes())
    second = envelope.decode(sample_bytes())
    assert first.id != second.id
    assert first.id < second.id
    assert first.time is not None and before <= first.time <= datetime.now(UTC)
    assert first.traceparent == ""
    assert "traceparent" not in first.cloud_event.attributes


def test_partition_key_is_the_owning_user_unless_given() -> None:
    assert envelope.decode(sample_bytes()).partition_key == "alice"
    data = envelope.encode(sample_event(), source="/todo/task_svc", partition_key="bob")
    assert envelope.decode(data).partition_key == "bob"


def test_event_without_owner_is_refused() -> None:
    with pytest.raises(ValueError, match="no user_id"):
        envelope.wrap(task_events.TaskCreated(), source="/todo/task_svc")


def test_only_registered_event_types_can_be_wrapped() -> None:
    with pytest.raises(envelope.UnknownEventTypeError, match=r"todo\.task\.v1\.Task "):
        envelope.wrap(task_pb2.Task(user_id="alice"), source="/todo/task_svc")


def test_empty_source_is_refused() -> None:
    with pytest.raises(ValueError, match="source"):
        envelope.wrap(sample_event(), source="")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, I am not protobuf",
        b'{"specversion": "1.0", "type": "todo.task.v1.TaskCreated"}',
        b"\xff\xff\xff\xff",
        b"\x0a\x05ab",  # a length-delimited field cut short
    ],
    ids=["empty", "text", "json", "invalid-tag", "short-string"],
)
def test_bytes_that_are_not_a_cloud_event_are_rejected(data: bytes) -> None:
    with pytest.raises(envelope.NotACloudEventError, match="CloudEvent"):
        envelope.decode(data)


def test_every_truncation_is_rejected() -> None:
    data = sample_bytes()
    for cut in range(len(data)):
        with pytest.raises(envelope.EnvelopeError):
            envelope.decode(data[:cut])


def test_other_protobuf_message_is_not_taken_for_a_cloud_event() -> None:
    other = task_pb2.Task(task_id="t-1", title="Pay rent", version=3, priority=task_pb2.PRIORITY_HIGH)
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode(other.SerializeToString())


def test_another_spec_version_is_rejected() -> None:
    ce = envelope.wrap(sample_event(), source="/todo/task_svc")
    ce.spec_version = "0.3"
    with pytest.raises(envelope.UnsupportedSpecVersionError, match=r"'0\.3'"):
        envelope.decode(ce.SerializeToString())


def test_unknown_event_type_is_rejected() -> None:
    ce = envelope.wrap(sample_event(), source="/todo/task_svc")
    ce.type = "todo.task.v1.TaskExploded"
    with pytest.raises(envelope.UnknownEventTypeError, match="TaskExploded"):
        envelope.decode(ce.SerializeToString())


def test_payload_of_another_type_is_rejected() -> None:
    ce = envelope.wrap(sample_event(), source="/todo/task_svc")
    ce.proto_data.Pack(reminder_events.ReminderDue(user_id="alice"))
    with pytest.raises(envelope.PayloadMismatchError, match="ReminderDue"):
        envelope.decode(ce.SerializeToString())


def test_type_attribute_that_lies_about_the_payload_is_rejected() -> None:
    ce = envelope.wrap(sample_event(), source="/todo/task_svc")
    ce.type = "todo.task.v1.TaskDeleted"
    with pytest.raises(envelope.PayloadMismatchError, match="TaskCreated"):
        envelope.decode(ce.SerializeToString())


def test_corrupt_payload_is_rejected() -> None:
    ce = envelope.wrap(sample_event(), source="/todo/task_svc")
    ce.proto_data.value = b"\x0a\xff\xff"
    with pytest.raises(envelope.PayloadMismatchError, match="does not parse"):
        envelope.decode(ce.SerializeToString())


def test_missing_or_non_protobuf_payload_is_rejected() -> None:
    ce = envelope.wrap(sample_event(), source="/todo/task_svc")
    ce.text_data = "pay rent"
    with pytest.raises(envelope.PayloadMismatchError, match="no protobuf payload"):
        envelope.decode(ce.SerializeToString())
    ce.ClearField("text_data")
    with pytest.raises(envelope.PayloadMismatchError):
        envelope.decode(ce.SerializeToString())


def test_wrong_dataschema_is_rejected() -> None:
    ce = envelope.wrap(sample_event(), source="/todo/task_svc")
    ce.attributes["dataschema"].ce_uri = "type.googleapis.com/todo.task.v1.TaskDeleted"
    with pytest.raises(envelope.PayloadMismatchError, match="dataschema"):
        envelope.decode(ce.SerializeToString())


@pytest.mark.parametrize("attribute", ["id", "source", "type"])
def test_missing_required_attribute_is_rejected(attribute: str) -> None:
    ce = envelope.wrap(sample_event(), source="/todo/task_svc")
    ce.ClearField(attribute)  # type: ignore[arg-type]
    with pytest.raises(envelope.NotACloudEventError, match=attribute):
        envelope.decode(ce.SerializeToString())


def test_random_bytes_never_escape_as_anything_but_envelope_errors() -> None:
    rng = random.Random(20261126)
    good = sample_bytes()
    for _ in range(3000):
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            mutated = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            data = bytes(mutated)
        try:
            decoded = envelope.decode(data)
        except envelope.EnvelopeError:
            continue
        # A mutation that still decodes must still be a well-formed event.
        assert decoded.type in topics.event_types()
        assert isinstance(decoded.message, topics.event_types()[decoded.type])


def test_content_type_is_the_cloudevents_protobuf_media_type() -> None:
    assert envelope.CONTENT_TYPE == "application/cloudevents+protobuf"


def test_encoding_is_deterministic_for_equal_input() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    first = envelope.encode(sample_event(), source="/s", event_id="e", time=when)
    second = envelope.encode(sample_event(), source="/s", event_id="e", time=when)
    assert first == second
    assert CloudEvent.FromString(first).id == "e"
