"""The activity log's decisions without I/O: summaries of every event type, the entry hash, checking a chain."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from audit_svc import domain
from audit_svc.domain import ZERO_HASH, ChainCheck, ChainHead, Draft, Entry
from audit_svc.settings import AuditSettings
from todo_contracts import envelope, topics
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.chat.v1 import events_pb2 as chat_events
from todo_contracts.common.v1 import common_pb2
from todo_contracts.notify.v1 import events_pb2 as notify_events
from todo_contracts.notify.v1 import notify_pb2
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2
from todo_contracts.testing import populate
from todo_kit.config import ConfigError

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
TASK_ID = "6f1c1f9e-2b1a-4a57-9d7e-3c0c8a1e5b10"
PARIS_DUE = common_pb2.ZonedDateTime(local_time="2026-12-01T09:00:00", time_zone="Europe/Paris")


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


def rent(**fields: object) -> task_pb2.Task:
    return task_pb2.Task(task_id=TASK_ID, user_id="alice", title="Pay rent", **fields)  # type: ignore[arg-type]


def monthly() -> task_pb2.Recurrence:
    return task_pb2.Recurrence(rrule="FREQ=MONTHLY;BYMONTHDAY=1", series_id="s1", occurrence_index=1)


def reminder(**fields: object) -> reminder_pb2.Reminder:
    return reminder_pb2.Reminder(
        reminder_id=f"{TASK_ID}/r1/1", user_id="alice", task_id=TASK_ID, task_title="Pay rent", task_due=PARIS_DUE,
        fire_time=stamp(datetime(2026, 12, 1, 7, 30, tzinfo=UTC)), **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def notification(**fields: object) -> notify_pb2.Notification:
    return notify_pb2.Notification(
        notification_id="n1",
        user_id="alice",
        title="Reminder: Pay rent",
        task_id=TASK_ID,
        **fields,  # type: ignore[arg-type]
    )


# --- summaries -------------------------------------------------------------------------


def every_event_type() -> list[type[Message]]:
    return [cls for topic in topics.ALL_TOPICS for cls in topic.event_types]


@pytest.mark.parametrize("event_type", every_event_type(), ids=topics.event_type_name)
def test_every_event_type_of_every_topic_has_a_summary_of_its_own(event_type: type[Message]) -> None:
    assert domain.has_summary(event_type), f"{topics.event_type_name(event_type)} has no summary written for it"
    sample = populate(event_type())
    summary = domain.summarize(sample)
    assert summary and "\n" not in summary and len(summary) <= domain.SUMMARY_MAX
    assert summary != f"{topics.event_type_name(event_type)} recorded"  # not the fallback


def test_a_type_without_words_of_its_own_gets_the_fallback_summary() -> None:
    # What the test above rules out for every registered type.
    assert not domain.has_summary(task_pb2.Task)
    assert domain.summarize(task_pb2.Task()) == "todo.task.v1.Task recorded"


@pytest.mark.parametrize(
    ("event", "summary"),
    [
        (
            task_events.TaskCreated(user_id="alice", task=rent(due=PARIS_DUE)),
            "Created “Pay rent” (due Tue 1 Dec 2026 09:00 Europe/Paris)",
        ),
        (
            task_events.TaskCreated(user_id="alice", task=rent(due=PARIS_DUE, recurrence=monthly())),
            "Created “Pay rent” (due Tue 1 Dec 2026 09:00 Europe/Paris; repeats FREQ=MONTHLY;BYMONTHDAY=1)",
        ),
        (
            task_events.TaskCreated(
                user_id="alice",
                task=rent(
                    due=common_pb2.ZonedDateTime(local_time="2027-01-01T09:00", time_zone="Europe/Paris"),
                    recurrence=task_pb2.Recurrence(rrule="FREQ=MONTHLY", occurrence_index=2),
                ),
            ),
            "Created occurrence 2 of “Pay rent” (due Fri 1 Jan 2027 09:00 Europe/Paris)",
        ),
        (
            task_events.TaskUpdated(
                user_id="alice",
                task=rent(due=PARIS_DUE, priority=task_pb2.PRIORITY_HIGH, description="landlord: IBAN DE89 3704"),
                previous=task_pb2.Task(title="Pay rnet"),
                changed_fields=["title", "due", "priority", "description"],
            ),
            "Changed “Pay rent”: renamed from “Pay rnet”; due Tue 1 Dec 2026 09:00 Europe/Paris; priority high; "
            "description changed",
        ),
        (task_events.TaskCompleted(user_id="alice", task=rent()), "Completed “Pay rent”"),
        (
            task_events.TaskCompleted(user_id="alice", task=rent(recurrence=monthly())),
            "Completed “Pay rent” (occurrence 1 of a repeating task; the next one follows)",
        ),
        (task_events.TaskReopened(user_id="alice", task=rent()), "Reopened “Pay rent”"),
        (
            task_events.TaskDeleted(user_id="alice", task=rent(), end_series=True),
            "Deleted “Pay rent” and ended its series",
        ),
        (
            task_events.OccurrenceRequested(
                user_id="alice",
                series_id="s1",
                occurrence_index=2,
                due=common_pb2.ZonedDateTime(local_time="2027-01-01T09:00:00", time_zone="Europe/Paris"),
                template=rent(),
                previous_task_id=TASK_ID,
            ),
            "Next occurrence of “Pay rent”: number 2 due Fri 1 Jan 2027 09:00 Europe/Paris",
        ),
        (
            reminder_events.ReminderScheduled(user_id="alice", reminder=reminder()),
            "Reminder for “Pay rent” set for Tue 1 Dec 2026 08:30 Europe/Paris",
        ),
        (
            reminder_events.ReminderScheduled(user_id="alice", reminder=reminder(snoozed_from_reminder_id="r0")),
            "Snoozed the reminder for “Pay rent” until Tue 1 Dec 2026 08:30 Europe/Paris",
        ),
        (
            reminder_events.ReminderDue(
                user_id="alice", reminder=reminder(late=True, lateness=duration_pb2.Duration(seconds=190))
            ),
            "Reminder for “Pay rent” fired (due Tue 1 Dec 2026 09:00 Europe/Paris), 3 min late",
        ),
        (
            reminder_events.ReminderCancelled(
                user_id="alice", reminder=reminder(), reason=reminder_events.CANCEL_REASON_TASK_COMPLETED
            ),
            "Reminder for “Pay rent” at Tue 1 Dec 2026 08:30 Europe/Paris cancelled: the task was completed",
        ),
        (
            notify_events.NotificationSent(
                user_id="alice", notification=notification(), channel=notify_pb2.CHANNEL_EMAIL, attempt=1
            ),
            "Notification “Reminder: Pay rent” sent by e-mail",
        ),
        (
            notify_events.NotificationFailed(
                user_id="alice",
                notification=notification(),
                channel=notify_pb2.CHANNEL_WEBHOOK,
                attempt=6,
                error="HTTP 503 from https://bob:hunter2@hooks.example.com/todo?token=s3cr3t",
                will_retry=False,
            ),
            "Notification “Reminder: Pay rent” could not be sent by webhook (attempt 6, gave up): "
            "HTTP 503 from https://hooks.example.com",
        ),
        (
            chat_events.ChatMessageHandled(
                user_id="alice",
                text="remind me to pay rent on the 1st",
                reply="Done.",
                actions=[chat_pb2.ChatAction(summary="Created “Pay rent”", task=rent())],
            ),
            "Chat: “remind me to pay rent on the 1st” → Created “Pay rent”",
        ),
        (
            chat_events.ChatMessageHandled(
                user_id="alice", text="pay it", intent=chat_pb2.Intent(clarifying_question="Which task?")
            ),
            "Chat: “pay it” → asked “Which task?”",
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Message) else "",
)
def test_a_summary_says_what_happened_in_words(event: Message, summary: str) -> None:
    assert domain.summarize(event) == summary


def test_a_long_title_is_cut_with_an_ellipsis_and_a_summary_stays_on_one_line() -> None:
    title = "Pay\nthe\trent " + "x" * 500
    summary = domain.summarize(task_events.TaskCompleted(user_id="alice", task=task_pb2.Task(title=title)))
    quoted = summary.removeprefix("Completed ")
    assert quoted.startswith("“Pay the rent xxx") and quoted.endswith("…”")
    assert len(quoted) == domain.TITLE_MAX + 2
    assert "\n" not in summary and "\t" not in summary


def test_a_summary_is_bounded_whatever_the_event_carries() -> None:
    event = chat_events.ChatMessageHandled(
        user_id="alice", text="y" * 4000, actions=[chat_pb2.ChatAction(summary="z" * 4000) for _ in range(50)]
    )
    summary = domain.summarize(event)
    assert len(summary) <= domain.SUMMARY_MAX
    assert summary.count("z" * (domain.TITLE_MAX - 1) + "…") == domain.ACTIONS_SHOWN


def test_a_summary_never_repeats_a_description_or_what_a_url_carries_besides_its_host() -> None:
    updated = task_events.TaskUpdated(
        user_id="alice", task=rent(description="door code 4711"), previous=rent(), changed_fields=["description"]
    )
    failed = notify_events.NotificationFailed(
        user_id="alice", notification=notification(), channel=notify_pb2.CHANNEL_WEBHOOK, attempt=1,
        error="POST http://user:pa55@10.0.0.7:8080/inbox?sig=abc#frag refused; retry at ftp://x@y/z", will_retry=True,
    )  # fmt: skip
    assert "4711" not in domain.summarize(updated)
    summary = domain.summarize(failed)
    assert "http://10.0.0.7" in summary and "ftp://y" in summary
    for secret in ("user", "pa55", "8080", "inbox", "sig=abc", "frag", "x@"):
        assert secret not in summary


def _reachable(descriptor: Descriptor, seen: set[str]) -> set[str]:
    if descriptor.full_name in seen:
        return seen
    seen.add(descriptor.full_name)
    for field in descriptor.fields:
        if field.message_type is not None:
            _reachable(field.message_type, seen)
    return seen


def test_a_webhook_secret_an_event_carries_is_never_recorded() -> None:
    """Write-only (INPUT_ONLY) fields are left out of the recorded payload, at any depth.

    A chat message that changes channel settings carries them in its intent;
    the secret a user typed must not reach the log, which can never be changed.
    """
    secret = "whsec_" + "A" * 32
    settings = notify_pb2.ChannelSettings(webhook=notify_pb2.WebhookSettings(enabled=True, signing_secret=secret))
    intent = chat_pb2.Intent(
        kind=chat_pb2.INTENT_KIND_UPDATE_CHANNELS,
        channels_request=notify_pb2.UpdateChannelSettingsRequest(settings=settings),
    )
    handled = chat_events.ChatMessageHandled(user_id="alice", text="turn on my webhook", intent=intent)
    recorded = domain.payload_json(handled)
    assert secret not in recorded and "signingSecret" not in recorded
    assert '"enabled":true' in recorded  # the rest of the change is kept
    assert handled.intent.channels_request.settings.webhook.signing_secret == secret  # the event itself is untouched
    messages: set[str] = set()
    for event_type in every_event_type():
        _reachable(event_type.DESCRIPTOR, messages)
    assert messages >= {task_pb2.Task.DESCRIPTOR.full_name, notify_pb2.Notification.DESCRIPTOR.full_name}


# --- what an event becomes -------------------------------------------------------------


def decoded(message: Message, *, time: datetime | None = T0, partition_key: str | None = None) -> envelope.DecodedEvent:
    return envelope.decode(envelope.encode(message, source="/todo/task_svc", time=time, partition_key=partition_key))


@pytest.mark.parametrize(
    ("event", "task_id"),
    [
        (task_events.TaskCreated(user_id="alice", task=rent()), TASK_ID),
        (task_events.OccurrenceRequested(user_id="alice", previous_task_id=TASK_ID, template=rent()), TASK_ID),
        (reminder_events.ReminderDue(user_id="alice", reminder=reminder()), TASK_ID),
        (notify_events.NotificationSent(user_id="alice", notification=notification()), TASK_ID),
        (chat_events.ChatMessageHandled(user_id="alice", actions=[chat_pb2.ChatAction(task=rent())]), TASK_ID),
        (chat_events.ChatMessageHandled(user_id="alice", text="help"), ""),
        (task_events.TaskCreated(user_id="alice", task=task_pb2.Task(task_id="t" * 200)), ""),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Message) else "",
)
def test_an_entry_names_the_task_its_event_is_about(event: Message, task_id: str) -> None:
    assert domain.draft_of(decoded(event)).task_id == task_id


def test_a_draft_takes_user_type_source_and_time_from_the_event() -> None:
    event = decoded(task_events.TaskCompleted(user_id="alice", task=rent()))
    draft = domain.draft_of(event)
    assert (draft.user_id, draft.event_id, draft.event_type, draft.source) == (
        "alice", event.id, "todo.task.v1.TaskCompleted", "/todo/task_svc",
    )  # fmt: skip
    assert draft.occur_time == T0 and draft.summary == "Completed “Pay rent”"


def test_an_event_without_a_user_id_belongs_to_its_partition_key_and_without_either_is_unrecordable() -> None:
    keyed = decoded(task_events.TaskCompleted(task=rent()), partition_key="bob")
    assert domain.draft_of(keyed).user_id == "bob"
    ownerless = envelope.wrap(task_events.TaskCompleted(task=rent()), source="/todo/task_svc", partition_key="bob")
    del ownerless.attributes[envelope.ATTR_PARTITION_KEY]  # what no publisher of ours sends
    with pytest.raises(domain.Unrecordable, match="names no user"):
        domain.draft_of(envelope.unwrap(ownerless))
    with pytest.raises(domain.Unrecordable, match="not a user id"):
        domain.draft_of(decoded(task_events.TaskCompleted(user_id="al ice\x00", task=rent())))


def test_an_event_without_a_time_happened_when_it_was_recorded() -> None:
    event = dataclasses.replace(decoded(task_events.TaskReopened(user_id="alice", task=rent())), time=None)
    draft = domain.draft_of(event)
    assert draft.occur_time is None
    entry = domain.chained(draft, ChainHead("alice"), T0 + timedelta(minutes=5))
    assert entry.occur_time == entry.record_time == T0 + timedelta(minutes=5)


def test_the_payload_is_canonical_json_that_reads_back_as_the_event() -> None:
    event = populate(task_events.TaskUpdated())
    text = domain.payload_json(event)
    assert ": " not in text and ", " not in text.replace('", "', "")
    parsed = json.loads(text)
    assert list(parsed) == sorted(parsed)
    assert json_format.Parse(text, task_events.TaskUpdated()) == event
    assert domain.payload_json(task_events.TaskUpdated.FromString(event.SerializeToString())) == text


def test_a_payload_too_large_for_a_response_is_recorded_by_its_size_and_hash() -> None:
    tasks = [task_pb2.Task(title="Pay rent", description="d" * 10_000) for _ in range(120)]
    huge = chat_events.ChatMessageHandled(user_id="alice", text="list", actions=[chat_pb2.ChatAction(tasks=tasks)])
    full = domain.payload_json(huge).encode()
    assert len(full) > domain.PAYLOAD_JSON_MAX
    recorded = json.loads(domain.draft_of(decoded(huge)).payload_json)
    assert recorded == {"payloadOmitted": {"bytes": len(full), "sha256": hashlib.sha256(full).hexdigest()}}
    small = task_events.TaskCompleted(user_id="alice", task=rent())
    assert domain.draft_of(decoded(small)).payload_json == domain.payload_json(small)


# --- the chain -----------------------------------------------------------------------------


def draft(number: int, user: str = "alice") -> Draft:
    return Draft(
        user_id=user, event_id=f"event-{number}", event_type="todo.task.v1.TaskUpdated", source="/todo/task_svc",
        task_id=TASK_ID, summary=f"Changed “Pay rent” ({number})", payload_json=f'{{"n":{number}}}',
        occur_time=T0 + timedelta(seconds=number),
    )  # fmt: skip


def chain(length: int, head: ChainHead | None = None) -> tuple[list[Entry], ChainHead]:
    head = head or ChainHead("alice")
    entries = []
    for number in range(head.last_sequence + 1, head.last_sequence + length + 1):
        entry = domain.chained(draft(number), head, T0 + timedelta(minutes=number))
        entries.append(entry)
        head = dataclasses.replace(head, last_sequence=entry.sequence, last_hash=entry.entry_hash)
    return entries, head


def test_the_first_entry_follows_32_zero_bytes_and_each_next_follows_its_predecessor() -> None:
    entries, head = chain(3)
    assert [e.sequence for e in entries] == [1, 2, 3]
    assert entries[0].previous_hash == ZERO_HASH == bytes(32)
    assert entries[1].previous_hash == entries[0].entry_hash and entries[2].previous_hash == entries[1].entry_hash
    assert head.last_hash == entries[2].entry_hash and len(head.last_hash) == 32


def test_the_entry_hash_is_deterministic_and_covers_every_field() -> None:
    entry = chain(1)[0][0]
    assert domain.entry_hash(entry) == domain.entry_hash(dataclasses.replace(entry)) == entry.entry_hash
    changes: dict[str, object] = {
        "user_id": "bob", "sequence": 2, "event_id": "event-x", "event_type": "todo.task.v1.TaskCreated",
        "source": "/todo/other", "task_id": "", "summary": "Changed “Pay rent!”", "payload_json": '{"n":2}',
        "occur_time": entry.occur_time + timedelta(microseconds=1),
        "record_time": entry.record_time + timedelta(microseconds=1), "previous_hash": b"\x01" * 32,
    }  # fmt: skip
    assert set(changes) == {f.name for f in dataclasses.fields(Entry)} - {"entry_hash"}
    hashes = {name: domain.entry_hash(dataclasses.replace(entry, **{name: value})) for name, value in changes.items()}  # type: ignore[arg-type]
    assert entry.entry_hash not in hashes.values()
    assert len(set(hashes.values())) == len(changes)


def test_the_hash_input_is_unambiguous_when_text_moves_between_fields() -> None:
    entry = chain(1)[0][0]
    moved = dataclasses.replace(entry, event_id=entry.event_id + "t", event_type=entry.event_type[1:])
    assert moved.event_id + moved.event_type == entry.event_id + entry.event_type
    assert domain.entry_hash(moved) != domain.entry_hash(entry)


def test_times_of_another_zone_hash_as_the_same_instant() -> None:
    entry = chain(1)[0][0]
    paris = entry.occur_time.astimezone(datetime(2026, 1, 1, tzinfo=UTC).astimezone().tzinfo)
    assert domain.entry_hash(dataclasses.replace(entry, occur_time=paris)) == entry.entry_hash


def checked(entries: list[Entry], head: ChainHead, page: int = 3) -> ChainCheck:
    check = ChainCheck.from_anchor(head)
    for start in range(0, len(entries), page):
        domain.check_page(check, entries[start : start + page])
    return check.finish(head)


def test_an_untouched_chain_checks_out_in_pages() -> None:
    entries, head = chain(10)
    check = checked(entries, head)
    assert check.broken is None and check.checked == 10 and check.newest_hash == head.last_hash


def test_a_chain_check_finds_an_entry_changed_in_place() -> None:
    entries, head = chain(10)
    entries[3] = dataclasses.replace(entries[3], summary="Completed “Pay rent”")
    check = checked(entries, head)
    assert check.broken is not None and check.broken.sequence == 4 and check.checked == 3
    assert "changed after it was recorded" in check.broken.problem


def test_a_chain_check_finds_an_entry_rehashed_after_a_change_at_its_successor() -> None:
    entries, head = chain(10)
    changed = dataclasses.replace(entries[3], summary="Completed “Pay rent”")
    entries[3] = dataclasses.replace(changed, entry_hash=domain.entry_hash(changed))
    check = checked(entries, head)
    assert check.broken is not None and check.broken.sequence == 5
    assert "does not follow entry 4" in check.broken.problem


def test_a_chain_check_finds_a_removed_entry_and_removed_newest_entries() -> None:
    entries, head = chain(10)
    gap = checked(entries[:6] + entries[7:], head)
    assert (
        gap.broken is not None and gap.broken.sequence == 7 and "entry 7 of the log are missing" in gap.broken.problem
    )
    cut = checked(entries[:8], head)
    assert cut.broken is not None and cut.broken.sequence == 9 and "entries 9 to 10" in cut.broken.problem


def test_a_chain_check_finds_an_entry_added_behind_the_logs_back() -> None:
    entries, head = chain(10)
    extra, _ = chain(1, head)
    check = checked(entries + extra, head)
    assert check.broken is not None and check.broken.sequence == 11 and "added behind" in check.broken.problem


def test_a_check_after_pruning_starts_from_the_anchor() -> None:
    entries, head = chain(10)
    pruned = dataclasses.replace(head, pruned_through_sequence=4, anchor_hash=entries[3].entry_hash)
    check = checked(entries[4:], pruned)
    assert check.broken is None and check.checked == 6
    wrong_anchor = dataclasses.replace(pruned, anchor_hash=entries[2].entry_hash)
    broken = checked(entries[4:], wrong_anchor).broken
    assert broken is not None and broken.sequence == 5


def test_only_a_prefix_of_old_entries_that_checks_out_may_be_pruned() -> None:
    entries, head = chain(10)  # entry n recorded at T0 + n minutes
    assert domain.prunable_through(head, entries, T0 + timedelta(minutes=4, seconds=30)) == (4, None)
    assert domain.prunable_through(head, entries, T0) == (0, None)
    assert domain.prunable_through(head, entries, T0 + timedelta(days=1)) == (10, None)
    tampered = list(entries)
    tampered[2] = dataclasses.replace(tampered[2], summary="x")
    through, broken = domain.prunable_through(head, tampered, T0 + timedelta(days=1))
    assert through == 0 and broken is not None and broken.sequence == 3


# --- settings --------------------------------------------------------------------------------


def test_retention_is_forever_unless_set_in_days() -> None:
    assert AuditSettings.from_env({}).retention is None
    assert AuditSettings.from_env({"TODO_AUDIT_RETENTION_DAYS": "0"}).retention is None
    assert AuditSettings.from_env({"TODO_AUDIT_RETENTION_DAYS": "30"}).retention == timedelta(days=30)
    for bad in ("-1", "x", "36501"):
        with pytest.raises(ConfigError, match="TODO_AUDIT_RETENTION_DAYS"):
            AuditSettings.from_env({"TODO_AUDIT_RETENTION_DAYS": bad})
