"""The topic registry covers every event message exactly once."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from google.protobuf.message import Message

import todo_contracts
from todo_contracts import topics


def event_messages_in_contract() -> set[str]:
    """Full names of every top-level message defined in an events.proto file."""
    names: set[str] = set()
    for module_info in pkgutil.walk_packages(todo_contracts.__path__, "todo_contracts."):
        if module_info.name.endswith(".events_pb2"):
            module = importlib.import_module(module_info.name)
            names.update(m.full_name for m in module.DESCRIPTOR.message_types_by_name.values())
    return names


def test_every_event_message_is_on_exactly_one_topic() -> None:
    in_contract = event_messages_in_contract()
    registered = [name for topic in topics.ALL_TOPICS for name in topic.type_names]
    assert len(registered) == len(set(registered))
    assert set(registered) == in_contract
    assert len(in_contract) >= 12


def test_topic_names_and_dead_letters() -> None:
    assert [t.name for t in topics.ALL_TOPICS] == [
        "task-events",
        "reminder-events",
        "notification-events",
        "audit-events",
    ]
    assert topics.TASK_EVENTS.dead_letter == "task-events-dlq"
    assert topics.topic_named("reminder-events") is topics.REMINDER_EVENTS


@pytest.mark.parametrize(
    ("type_name", "topic"),
    [
        ("todo.task.v1.TaskCreated", "task-events"),
        ("todo.task.v1.OccurrenceRequested", "task-events"),
        ("todo.reminder.v1.ReminderDue", "reminder-events"),
        ("todo.notify.v1.NotificationFailed", "notification-events"),
        ("todo.chat.v1.ChatMessageHandled", "audit-events"),
    ],
)
def test_topic_of_event(type_name: str, topic: str) -> None:
    cls = topics.event_class(type_name)
    assert cls is not None
    assert topics.topic_of(type_name).name == topic
    assert topics.topic_of(cls).name == topic
    assert topics.topic_of(cls()).name == topic


def test_unknown_names_are_reported() -> None:
    assert topics.event_class("todo.task.v1.Task") is None
    with pytest.raises(KeyError, match="not a registered event"):
        topics.topic_of("todo.task.v1.Task")
    with pytest.raises(KeyError, match="no topic"):
        topics.topic_named("tasks")


def test_every_event_has_an_owner_field() -> None:
    # The envelope's partition key (per-user ordering) comes from user_id.
    for name, cls in topics.event_types().items():
        assert issubclass(cls, Message)
        assert "user_id" in cls.DESCRIPTOR.fields_by_name, name
