"""The assistant's wording: short, plain, in the user's zone, never a secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from google.protobuf import duration_pb2

from chat_svc import replies
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.notify.v1 import notify_pb2
from todo_contracts.task.v1 import task_pb2
from todo_kit import zoned

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def _task(title: str, local: str = "", zone: str = "Europe/Berlin", **fields: object) -> task_pb2.Task:
    task = task_pb2.Task(title=title, **fields)  # type: ignore[arg-type]
    if local:
        task.due.CopyFrom(zoned.resolve(zoned.parse_local(local), zone).to_proto())
    return task


def _before(minutes: int) -> task_pb2.ReminderRule:
    value = duration_pb2.Duration()
    value.FromTimedelta(timedelta(minutes=minutes))
    return task_pb2.ReminderRule(before_due=value)


def test_a_created_task_is_told_with_its_due_time_rule_and_reminder_in_the_users_zone() -> None:
    task = _task(
        "Pay rent", "2026-04-01T09:00", recurrence=task_pb2.Recurrence(rrule="FREQ=MONTHLY"), reminders=[_before(30)]
    )
    assert replies.created(task, BERLIN, NOW) == (
        "Added 'Pay rent', due Wed 1 Apr 09:00, repeats monthly; I'll remind you at 08:30."
    )


def test_times_are_shown_in_the_zone_of_the_message_not_of_the_task() -> None:
    task = _task("Call Tokyo", "2026-04-01T09:00", zone="Asia/Tokyo")
    assert replies.created(task, BERLIN, NOW) == "Added 'Call Tokyo', due Wed 1 Apr 02:00."


def test_a_reminder_on_another_day_gives_its_date_and_other_years_are_named() -> None:
    task = _task("Visa", "2027-01-08T10:00", reminders=[_before(7 * 24 * 60)])
    assert (
        replies.created(task, BERLIN, NOW)
        == "Added 'Visa', due Fri 8 Jan 2027 10:00; I'll remind you at Fri 1 Jan 2027 10:00."
    )


def test_rules_in_words() -> None:
    assert replies.repeats("FREQ=WEEKLY;BYDAY=TU,FR") == "repeats weekly on Tue and Fri"
    assert replies.repeats("FREQ=WEEKLY;INTERVAL=3") == "repeats every 3 weeks"
    assert replies.repeats("FREQ=MONTHLY;BYDAY=-1FR") == "repeats monthly"
    assert replies.repeats("FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=3") == "repeats yearly"
    assert replies.repeats("garbage") == "repeats"


def test_which_one_numbers_at_most_the_shown_tasks_and_counts_the_rest() -> None:
    tasks = [_task("Pay rent", "2026-12-01T09:00"), _task("Pay rent deposit")]
    assert replies.which_one(tasks, 4, BERLIN, NOW) == (
        "Which one?\n1. Pay rent (due Tue 1 Dec 09:00)\n2. Pay rent deposit\n"
        "(and 2 more: say more of the name to narrow it down)"
    )


def test_a_listing_says_how_many_more_there_are() -> None:
    tasks = [_task(f"T{n}") for n in range(10)]
    text = replies.listing(tasks, 13, BERLIN, NOW, searched=False)
    assert text.startswith("You have 13 tasks:\n1. T0\n") and text.endswith("\n10. T9\nand 3 more.")
    assert replies.listing([], 0, BERLIN, NOW, searched=True) == "Nothing matches that."


def test_long_and_multi_line_titles_are_cut_to_one_line() -> None:
    text = replies.done(chat_pb2.INTENT_KIND_COMPLETE_TASK, _task("a\nb " + "x" * 200))
    assert "\n" not in text and len(text) < 120 and text.startswith("Completed 'a b x")


def test_refusals_name_the_field_in_plain_words() -> None:
    assert (
        replies.cannot(chat_pb2.INTENT_KIND_CREATE_TASK, [("task.title", "must not be empty")], "")
        == "I couldn't add that: the title must not be empty."
    )
    assert replies.cannot(chat_pb2.INTENT_KIND_UPDATE_TASK, [("task.tags[2]", "a tag is 1 to 64 letters")], "") == (
        "I couldn't change that: a tag: a tag is 1 to 64 letters."
    )
    assert replies.cannot(chat_pb2.INTENT_KIND_SNOOZE_REMINDER, [], "the reminder has not fired.") == (
        "I couldn't snooze that: the reminder has not fired."
    )


def test_channel_changes_never_show_a_secret_or_the_webhooks_path() -> None:
    settings = notify_pb2.ChannelSettings(
        webhook=notify_pb2.WebhookSettings(
            enabled=True, url="https://hooks.example.com/abc/TOKEN?sig=s3cr3t", signing_secret="whsec_AAAA"
        ),
        email=notify_pb2.EmailSettings(enabled=False, address="a@example.com"),
    )
    text = replies.channels(settings, ["webhook.url", "webhook.enabled", "email"], generated_secret=True)
    assert text.startswith("Done: webhook on to hooks.example.com; e-mail off.")
    assert "TOKEN" not in text and "s3cr3t" not in text and "whsec_" not in text


def test_confirmations_count_what_they_apply_to() -> None:
    delete, complete = chat_pb2.INTENT_KIND_DELETE_TASK, chat_pb2.INTENT_KIND_COMPLETE_TASK
    assert replies.confirm_all(delete, 12, 12) == "Delete all 12 open tasks? (yes/no)"
    assert replies.confirm_all(complete, 100, 150) == "Complete the first 100 of your 150 open tasks? (yes/no)"
    assert replies.all_done(delete, 11, 1) == "Deleted 11 tasks. 1 had already changed or gone, so I left it."
