"""The rules interpreter, area by area: dates, repetition, priorities and tags, commands, clarifications, and that
it never fails and stays linear on any text."""

from __future__ import annotations

import time as clock
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule as dateutil_rrule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_svc.interpret import LAST_CHOICE, MAX_TEXT_CHARS, Interpreter, RulesInterpreter
from todo_contracts.chat.v1 import chat_pb2
from todo_contracts.task.v1 import task_pb2
from todo_kit import rrules, zoned

BERLIN = "Europe/Berlin"
WEDNESDAY_4PM_BERLIN = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # Wed 4 March 2026, 16:00 in Berlin
RULES = RulesInterpreter()


def read(text: str, zone: str = BERLIN, now: datetime = WEDNESDAY_4PM_BERLIN) -> chat_pb2.Intent:
    return RULES.interpret(text, zone, now)


def due_of(text: str, zone: str = BERLIN, now: datetime = WEDNESDAY_4PM_BERLIN) -> str:
    intent = read(text, zone, now)
    assert intent.kind == chat_pb2.INTENT_KIND_CREATE_TASK, intent
    assert not intent.clarifying_question, intent
    return intent.task.due.local_time


def test_rules_interpreter_is_an_interpreter_named_rules() -> None:
    interpreter: Interpreter = RULES
    assert interpreter.name == "rules"
    assert read("buy milk").interpreter == "rules"


# --- dates -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "due"),
    [
        ("call mom at 5pm", "2026-03-04T17:00:00"),  # still ahead today
        ("call mom at 3pm", "2026-03-05T15:00:00"),  # passed: tomorrow
        ("call mom at 16:00", "2026-03-05T16:00:00"),  # exactly now is not ahead
        ("buy milk tomorrow", "2026-03-05T09:00:00"),  # a date alone is due at 09:00
        ("buy milk tomorrow evening", "2026-03-05T19:00:00"),
        ("buy milk on friday", "2026-03-06T09:00:00"),
        ("yoga on wednesday", "2026-03-11T09:00:00"),  # today's 09:00 has passed: next week
        ("yoga on wednesday at 6pm", "2026-03-04T18:00:00"),  # today, still ahead
        ("yoga next wednesday at 6pm", "2026-03-11T18:00:00"),  # the Wednesday of next week
        ("check the oven in 45 minutes", "2026-03-04T16:45:00"),
        ("submit the report in 10 days", "2026-03-14T09:00:00"),
        ("file taxes by may 2", "2026-05-02T09:00:00"),
        ("file taxes by march 1", "2027-03-01T09:00:00"),  # never in the past
        ("book flights 2026-07-04", "2026-07-04T09:00:00"),
        ("lock the door at midnight", "2026-03-05T00:00:00"),
        ("lunch at noon", "2026-03-05T12:00:00"),
        ("run at 07:45", "2026-03-05T07:45:00"),
        ("pay the bill on the 3rd", "2026-04-03T09:00:00"),
        ("pay the bill on the 31st", "2026-03-31T09:00:00"),
        ("send invoices end of month", "2026-03-31T09:00:00"),
        ("standup at 11am", "2026-03-05T11:00:00"),
        ("call the bank at 7:30pm", "2026-03-04T19:30:00"),
        ("meet at 5", "2026-03-04T17:00:00"),  # a bare hour up to 6 is afternoon
    ],
)
def test_dates_and_times_resolve_in_the_users_zone(text: str, due: str) -> None:
    assert due_of(text) == due


def test_next_weekday_on_a_sunday_is_in_the_coming_week() -> None:
    sunday_evening_la = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)  # Sun 14 June 20:00 in Los Angeles
    assert due_of("call the landlord next wednesday", "America/Los_Angeles", sunday_evening_la) == "2026-06-17T09:00:00"


def test_tomorrow_is_the_users_tomorrow_where_it_is_already_tomorrow() -> None:
    # 15:00 UTC on Wednesday is 04:00 on Thursday in Auckland.
    assert due_of("buy coffee tomorrow", "Pacific/Auckland") == "2026-03-06T09:00:00"
    assert due_of("buy coffee today", "Pacific/Auckland") == "2026-03-05T09:00:00"


def test_a_skipped_local_time_moves_forward_like_the_task_service() -> None:
    saturday_berlin = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)  # clocks go forward on Sunday at 02:00
    due = due_of("start the dishwasher tomorrow at 2:30", BERLIN, saturday_berlin)
    assert due == "2026-03-29T03:30:00"
    assert zoned.resolve(datetime(2026, 3, 29, 2, 30), BERLIN).local == datetime.fromisoformat(due)


def test_hours_from_now_count_real_time_across_a_daylight_saving_change() -> None:
    saturday_new_york = datetime(2026, 3, 7, 20, 0, tzinfo=UTC)
    due = due_of("call the vet in 24 hours", "America/New_York", saturday_new_york)
    instant = datetime.fromisoformat(due).replace(tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
    assert instant == saturday_new_york + timedelta(hours=24)


@settings(max_examples=60, deadline=None)
@given(
    now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    zone=st.sampled_from([BERLIN, "Pacific/Auckland", "America/New_York", "Asia/Kolkata", "UTC"]),
    day=st.sampled_from(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]),
    prefix=st.sampled_from(["on", "next", "this", ""]),
    at=st.sampled_from(["", " at 7am", " at 11:30pm", " at noon"]),
)
def test_weekdays_are_never_in_the_past(now: datetime, zone: str, day: str, prefix: str, at: str) -> None:
    intent = read(f"water the plants {prefix} {day}{at}", zone, now)
    local = datetime.fromisoformat(intent.task.due.local_time)
    assert local.strftime("%A").lower() == day or zoned.resolve(local, zone).local != local
    assert zoned.resolve(local, zone).instant > now
    assert zoned.resolve(local, zone).instant <= now + timedelta(days=14)


# --- repetition --------------------------------------------------------------------------------------------------

REPEAT_PHRASES = [
    ("every day at 8am", "FREQ=DAILY"),
    ("every weekday", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    ("every weekend", "FREQ=WEEKLY;BYDAY=SA,SU"),
    ("every week", "FREQ=WEEKLY"),
    ("every month", "FREQ=MONTHLY"),
    ("every year", "FREQ=YEARLY"),
    ("every tuesday and friday", "FREQ=WEEKLY;BYDAY=TU,FR"),
    ("every other week", "FREQ=WEEKLY;INTERVAL=2"),
    ("every third week", "FREQ=WEEKLY;INTERVAL=3"),
    ("every 6 months", "FREQ=MONTHLY;INTERVAL=6"),
    ("the second tuesday of each month", "FREQ=MONTHLY;BYDAY=2TU"),
    ("the last friday of every month", "FREQ=MONTHLY;BYDAY=-1FR"),
    ("every year on the 3rd of march", "FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=3"),
    ("on the 3rd of every month", "FREQ=MONTHLY;BYMONTHDAY=3"),
    ("every other monday", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO"),
    ("every monday for 6 times", "FREQ=WEEKLY;BYDAY=MO;COUNT=6"),
    ("every day until march 31", "FREQ=DAILY;UNTIL=20260331T235959"),
    ("on the last day of every month", "FREQ=MONTHLY;BYMONTHDAY=-1"),
    ("every 29th", "FREQ=MONTHLY;BYMONTHDAY=29"),
]


@pytest.mark.parametrize(("words", "rule"), REPEAT_PHRASES)
def test_repetition_in_words_becomes_a_valid_rule(words: str, rule: str) -> None:
    intent = read(f"water the plants {words}")
    assert intent.task.title == "Water the plants"
    assert set(intent.task.recurrence.rrule.split(";")) == set(rule.split(";"))
    rrules.check_rule(intent.task.recurrence.rrule)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    now=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    zone=st.sampled_from([BERLIN, "Pacific/Auckland", "America/New_York", "Australia/Lord_Howe"]),
    phrase=st.sampled_from([words for words, _ in REPEAT_PHRASES if "until" not in words]),
    at=st.sampled_from(["", " at 2:30", " at 9pm"]),
)
def test_a_repeating_tasks_due_time_is_the_rules_first_occurrence_after_now(
    now: datetime, zone: str, phrase: str, at: str
) -> None:
    intent = read(f"water the plants {phrase}{at}", zone, now)
    if intent.clarifying_question:
        return
    local = datetime.fromisoformat(intent.task.due.local_time)
    rule = rrules.parse(intent.task.recurrence.rrule)
    assert zoned.resolve(local, zone).instant > now
    # Evaluated from the due time, the rule's first occurrences are the due time and then later ones.
    first_two = list(zip(range(2), rrules.occurrences(rule, local, zone), strict=False))
    assert first_two[0][1].local == local
    if (rule.byday or rule.bymonthday) and zoned.resolve(local, zone).local == local:
        # dateutil, independently: the first date after now that matches the rule's days (every other week
        # counting from that first date), at the due time of day.
        anchor = ";".join(p for p in intent.task.recurrence.rrule.split(";") if not p.startswith(("INTERVAL", "COUNT")))
        now_local = now.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        start = datetime.combine(now_local.date() - timedelta(days=1), local.time())
        expected = dateutil_rrule.rrulestr(anchor, dtstart=start).after(now_local)
        assert expected == local


def test_twice_a_week_asks_which_days() -> None:
    intent = read("exercise twice a week")
    assert intent.kind == chat_pb2.INTENT_KIND_CREATE_TASK
    assert "which days" in intent.clarifying_question.lower()


# --- priorities, tags, reminders ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "priority"),
    [
        ("fix the leak p1", task_pb2.PRIORITY_URGENT),  # Todoist's p1 is the highest
        ("fix the leak p2", task_pb2.PRIORITY_HIGH),
        ("fix the leak p3", task_pb2.PRIORITY_MEDIUM),
        ("fix the leak p4", task_pb2.PRIORITY_LOW),
        ("fix the leak !urgent", task_pb2.PRIORITY_URGENT),
        ("fix the leak !!", task_pb2.PRIORITY_HIGH),
        ("fix the leak !!!", task_pb2.PRIORITY_URGENT),
        ("urgent: fix the leak", task_pb2.PRIORITY_URGENT),
        ("fix the leak, high priority", task_pb2.PRIORITY_HIGH),
        ("fix the leak priority low", task_pb2.PRIORITY_LOW),
        ("fix the leak", task_pb2.PRIORITY_UNSPECIFIED),
    ],
)
def test_priorities_are_read_from_words_and_marks(text: str, priority: int) -> None:
    intent = read(text)
    assert intent.task.title == "Fix the leak"
    assert intent.task.priority == priority


def test_tags_are_read_from_hashes_and_words_and_a_hashed_urgent_is_a_tag() -> None:
    intent = read("draft the proposal #work tagged home and kids #urgent")
    assert intent.task.title == "Draft the proposal"
    assert list(intent.task.tags) == ["work", "urgent", "home", "kids"]
    assert intent.task.priority == task_pb2.PRIORITY_UNSPECIFIED


def test_a_bare_reminder_is_at_the_due_time_and_offsets_are_before_it() -> None:
    bare = read("remind me to water the roses at 5pm")
    assert bare.task.due.local_time == "2026-03-04T17:00:00"
    assert [r.before_due.seconds for r in bare.task.reminders] == [0]
    assert bare.task.reminders[0].HasField("before_due")
    before = read("dentist on friday at 9:30am, remind me 30 minutes before")
    assert [r.before_due.seconds for r in before.task.reminders] == [1800]
    plain = read("dentist on friday at 9:30am")
    assert not plain.task.reminders


def test_the_car_insurance_example_of_the_issue() -> None:
    intent = read("remind me to renew the car insurance on the 3rd of every month at 8am, urgent, tag car")
    task = intent.task
    assert (task.title, task.due.local_time, task.due.time_zone) == (
        "Renew the car insurance",
        "2026-04-03T08:00:00",
        BERLIN,
    )
    assert task.priority == task_pb2.PRIORITY_URGENT
    assert list(task.tags) == ["car"]
    assert task.recurrence.rrule == "FREQ=MONTHLY;BYMONTHDAY=3"
    assert not intent.clarifying_question


# --- commands ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("I called the plumber", chat_pb2.INTENT_KIND_COMPLETE_TASK, "plumber"),
        ("watered the roses", chat_pb2.INTENT_KIND_COMPLETE_TASK, "roses"),
        ("finished the slides", chat_pb2.INTENT_KIND_COMPLETE_TASK, "slides"),
        ("complete call mom", chat_pb2.INTENT_KIND_COMPLETE_TASK, "call mom"),
        ("reopen the tax return", chat_pb2.INTENT_KIND_REOPEN_TASK, "tax return"),
        ("drop the yoga class", chat_pb2.INTENT_KIND_DELETE_TASK, "yoga class"),
        ("delete the task about the car insurance", chat_pb2.INTENT_KIND_DELETE_TASK, "car insurance"),
        ('delete "Call the bank"', chat_pb2.INTENT_KIND_DELETE_TASK, "call the bank"),
    ],
)
def test_commands_name_the_task_without_the_command_words(text: str, kind: int, target: str) -> None:
    intent = read(text)
    assert (intent.kind, intent.target_query) == (kind, target)
    assert not intent.clarifying_question


def test_a_task_to_do_is_not_mistaken_for_one_done() -> None:
    assert read("feed the cat").kind == chat_pb2.INTENT_KIND_CREATE_TASK
    assert read("need to call the school").kind == chat_pb2.INTENT_KIND_CREATE_TASK
    assert read("read the novel").kind == chat_pb2.INTENT_KIND_CREATE_TASK
    assert read("I read the novel").kind == chat_pb2.INTENT_KIND_COMPLETE_TASK


def test_it_and_everything_refer_to_previous_or_all_tasks() -> None:
    assert read("delete it").refers_to_previous
    assert read("mark that as done").refers_to_previous
    everything = read("delete all my tasks")
    assert everything.kind == chat_pb2.INTENT_KIND_DELETE_TASK and everything.all_tasks


def test_adding_a_tag_is_marked_as_an_addition() -> None:
    intent = read("add the tag kids to soccer practice")
    assert intent.kind == chat_pb2.INTENT_KIND_UPDATE_TASK
    assert (intent.target_query, list(intent.changed_fields), list(intent.task.tags)) == (
        "soccer practice",
        ["tags+"],
        ["kids"],
    )


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("shift the vet appointment to monday at 10", ["due"]),
        ("change groceries to weekly groceries", ["title"]),
        ("set the invoice task to high priority", ["priority"]),
        ("remind me about the visa a week before", ["reminders+"]),
        ("make the standup repeat every weekday", ["recurrence"]),
        ("remove the tag work from the report", ["tags-"]),
    ],
)
def test_updates_name_the_fields_they_change(text: str, fields: list[str]) -> None:
    intent = read(text)
    assert intent.kind == chat_pb2.INTENT_KIND_UPDATE_TASK
    assert list(intent.changed_fields) == fields
    assert intent.target_query


def test_this_week_lists_from_today_to_the_end_of_sunday_in_the_users_zone() -> None:
    listing = read("anything due this week?").list_request
    start = listing.due_range.start_time.ToDatetime(tzinfo=UTC).astimezone(ZoneInfo(BERLIN))
    end = listing.due_range.end_time.ToDatetime(tzinfo=UTC).astimezone(ZoneInfo(BERLIN))
    assert (start.isoformat(), end.isoformat()) == ("2026-03-04T00:00:00+01:00", "2026-03-09T00:00:00+01:00")


def test_answers_carry_choice_and_confirmation() -> None:
    assert read("the second one").choice == 2
    assert read("number 3").choice == 3
    last = read("the last one")
    assert (last.kind, last.choice, last.target_query) == (chat_pb2.INTENT_KIND_ANSWER, 0, LAST_CHOICE)
    assert read("go ahead").confirmation == chat_pb2.CONFIRMATION_YES
    assert read("cancel").confirmation == chat_pb2.CONFIRMATION_NO


def test_snooze_and_channels_and_activity() -> None:
    snooze = read("snooze it 5 minutes")
    assert snooze.refers_to_previous and snooze.snooze_request.snooze_for.seconds == 300
    channels = read("send my reminders to bob@example.com").channels_request
    assert channels.settings.email.address == "bob@example.com" and channels.settings.email.enabled
    assert sorted(channels.update_mask.paths) == ["email.address", "email.enabled"]
    activity = read("what happened lately").activity_request
    assert activity.occur_range.start_time.ToDatetime(tzinfo=UTC) == WEDNESDAY_4PM_BERLIN - timedelta(days=7)


# --- clarifications ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "question"),
    [
        ("add", chat_pb2.INTENT_KIND_CREATE_TASK, "What should I add?"),
        ("delete", chat_pb2.INTENT_KIND_DELETE_TASK, "Which task should I delete?"),
        ("remind me tomorrow", chat_pb2.INTENT_KIND_CREATE_TASK, "What should I remind you about?"),
        ("snooze", chat_pb2.INTENT_KIND_SNOOZE_REMINDER, "For how long"),
        ("move the dentist", chat_pb2.INTENT_KIND_UPDATE_TASK, "To when"),
        ("buy milk on 2020-01-01", chat_pb2.INTENT_KIND_CREATE_TASK, "already passed"),
        ("what is the meaning of life?", chat_pb2.INTENT_KIND_UNSPECIFIED, "didn't understand"),
    ],
)
def test_unclear_messages_get_a_question_instead_of_a_guess(text: str, kind: int, question: str) -> None:
    intent = read(text)
    assert intent.kind == kind
    assert question in intent.clarifying_question


# --- robustness --------------------------------------------------------------------------------------------------

FRAGMENTS = [
    "remind me to", "buy", "milk", "every", "other", "monday", "and", "the", "3rd", "of", "march", "at", "7:30pm",
    "tomorrow", "in", "45", "minutes", "#home", "p1", "!!", "tag", "urgent", "delete", "it", "all", "snooze",
    "until", "done", "email", "me", "quiet hours", "from", "10pm", "to", "7am", "what", "happened", "yes", "2",
    "the last one", "last", "friday", "of every month", "twice a week", "2:30", "noon", "midnight", "9999-12-31",
    "0000-01-01", "until december 31", "for 99999 times", "every 100000 days", "every 0 weeks", "@", "a@b.cc",
    "on the 31st of february", "every year on the 30th of february", "next", "weekend", "in 99999 years", "?",
    "remove the tag", "from", "rename", "move", "I", "called", "ü", "İstanbul", "\x00", "\u200b", "\x1f", ",", "'",
]  # fmt: skip


def check_valid(intent: chat_pb2.Intent, zone: str) -> None:
    assert intent.interpreter == "rules"
    assert intent.kind in chat_pb2.IntentKind.values()
    assert 0.0 <= intent.confidence <= 1.0
    task = intent.task
    if task.HasField("due"):
        zoned.resolve(zoned.parse_local(task.due.local_time), task.due.time_zone)
        assert task.due.time_zone == zone
    if task.recurrence.rrule:
        rrules.check_rule(task.recurrence.rrule)
        assert task.HasField("due") or intent.kind == chat_pb2.INTENT_KIND_UPDATE_TASK
    assert len(task.title) <= 500
    if intent.kind == chat_pb2.INTENT_KIND_CREATE_TASK and not intent.clarifying_question:
        assert task.title.strip() and task.title == task.title.strip()
    for tag in task.tags:
        assert 1 <= len(tag) <= 64
    if intent.kind == chat_pb2.INTENT_KIND_UNSPECIFIED:
        assert intent.clarifying_question
    if intent.snooze_request.HasField("snooze_for"):
        assert 60 <= intent.snooze_request.snooze_for.seconds <= 365 * 86400
    assert intent.choice >= 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(
        st.text(min_size=1, max_size=300),
        st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=25).map(" ".join),
    ),
    zone=st.sampled_from([BERLIN, "Pacific/Auckland", "America/New_York", "Pacific/Kiritimati", "UTC"]),
    now=st.datetimes(min_value=datetime(1001, 1, 1), max_value=datetime(9998, 12, 1), timezones=st.just(UTC)),
)
def test_any_text_gives_a_valid_intent_and_never_raises(text: str, zone: str, now: datetime) -> None:
    check_valid(RULES.interpret(text, zone, now), zone)


def test_the_same_message_always_means_the_same() -> None:
    text = "remind me to pay rent every month on the 1st at 9am #home p2"
    assert read(text) == read(text)


ADVERSARIAL = [
    "every " * 666, "a " * 2000, "1" * 4000, "remind me to " * 300, "the 3rd of " * 360, "@" * 4000, "a@" * 2000,
    "#a " * 1333, "monday and " * 360, "in 5 " * 800, "x " * 1999 + "?", ", " * 2000, "!" * 4000, "tag a, " * 570,
    "move " + "to " * 1300, "at 1" * 1000, "the " * 1000, "I called " * 440, "snooze " * 570, "1:1" * 1333,
    "every other week on monday and " * 130, " " * 3999 + "x", "\x1f" * 4000, "\x00 " * 2000,
    "9" * 2000 + ":" + "9" * 1999, "delete the tag " * 260 + " from x",
]  # fmt: skip


@pytest.mark.parametrize("unit", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_reading_time_grows_linearly_with_the_length_of_adversarial_text(unit: str) -> None:
    long_text = unit[:MAX_TEXT_CHARS]
    short_text = long_text[: MAX_TEXT_CHARS // 10]

    def best_of(text: str, runs: int) -> float:
        best = float("inf")
        for _ in range(runs):
            start = clock.perf_counter()
            RULES.interpret(text, BERLIN, WEDNESDAY_4PM_BERLIN)
            best = min(best, clock.perf_counter() - start)
        return best

    # Ten times the text may take ten times as long, give or take; a quadratic pattern would take a hundred
    # times. The short text's time has a floor so fixed costs do not make the ratio look large.
    ratio = best_of(long_text, 3) / max(best_of(short_text, 5), 0.0005)
    assert ratio < 40, f"{ratio:.0f}x for 10x the text"
