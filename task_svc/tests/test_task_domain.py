"""Task rules without I/O: validation, normalization, updates, page tokens."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from task_svc import domain
from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2, task_service_pb2
from todo_kit import paging
from todo_kit.errors import InvalidArgument, Violations
from todo_kit.paging import PageTokens


def zdt(local: str, zone: str = "Europe/Berlin") -> common_pb2.ZonedDateTime:
    return common_pb2.ZonedDateTime(local_time=local, time_zone=zone)


def check(task: task_pb2.Task) -> tuple[task_pb2.Task, list[tuple[str, str]]]:
    violations = Violations()
    out = domain.checked_task(task, violations)
    return out, violations.items


def fields(items: list[tuple[str, str]]) -> set[str]:
    return {f for f, _ in items}


def test_title_is_trimmed_and_required() -> None:
    out, problems = check(task_pb2.Task(title="  Pay rent  "))
    assert out.title == "Pay rent" and problems == []
    assert fields(check(task_pb2.Task(title="   "))[1]) == {"task.title"}
    assert fields(check(task_pb2.Task(title="x" * 10_000))[1]) == {"task.title"}


def test_tags_are_normalized_and_limited() -> None:
    out, problems = check(task_pb2.Task(title="t", tags=["Finance", "finance ", "home/garden"]))
    assert list(out.tags) == ["finance", "home/garden"] and problems == []
    assert fields(check(task_pb2.Task(title="t", tags=[f"t{i}" for i in range(1000)]))[1]) == {"task.tags"}
    assert fields(check(task_pb2.Task(title="t", tags=["has space"]))[1]) == {"task.tags[0]"}


def test_due_time_resolves_in_the_users_zone() -> None:
    out, problems = check(task_pb2.Task(title="t", due=zdt("2026-07-01T09:00", "America/New_York")))
    assert problems == []
    assert out.due.local_time == "2026-07-01T09:00:00"
    assert out.due.instant.ToJsonString() == "2026-07-01T13:00:00Z"  # EDT, not the server's zone


def test_nonexistent_local_time_moves_forward_by_the_gap() -> None:
    out, _ = check(task_pb2.Task(title="t", due=zdt("2026-03-08T02:30", "America/New_York")))
    assert out.due.local_time == "2026-03-08T03:30:00"
    assert out.due.instant.ToJsonString() == "2026-03-08T07:30:00Z"


@pytest.mark.parametrize(
    ("due", "bad"),
    [
        (zdt("2026-02-30T09:00"), "task.due.local_time"),
        (zdt("tomorrow"), "task.due.local_time"),
        (zdt("2026-12-01T09:00", "Mars/Olympus"), "task.due.time_zone"),
        (zdt("2026-12-01T09:00", "../../etc/passwd"), "task.due.time_zone"),
        (zdt("2026-12-01T09:00", ""), "task.due.time_zone"),
    ],
)
def test_bad_due_times_are_named(due: common_pb2.ZonedDateTime, bad: str) -> None:
    assert bad in fields(check(task_pb2.Task(title="t", due=due))[1])


def test_reminder_rules_get_ids_and_need_a_due_time_when_relative() -> None:
    rule = task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=1800))
    out, problems = check(task_pb2.Task(title="t", due=zdt("2026-12-01T09:00"), reminders=[rule]))
    assert problems == [] and len(out.reminders[0].rule_id) == 12
    assert fields(check(task_pb2.Task(title="t", reminders=[rule]))[1]) == {"task.reminders[0].before_due"}
    assert fields(check(task_pb2.Task(title="t", reminders=[task_pb2.ReminderRule()]))[1]) == {"task.reminders[0]"}
    negative = task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=-5))
    assert "task.reminders[0].before_due" in fields(
        check(task_pb2.Task(title="t", due=zdt("2026-12-01T09:00"), reminders=[negative]))[1]
    )


@pytest.mark.parametrize(
    "rule",
    ["", "FREQ=SOMETIMES", "FREQ=DAILY;COUNT=3;UNTIL=20261231T000000Z", "RRULE:FREQ=DAILY", "BYDAY=MO", "FREQ=DAILY;;"],
)
def test_invalid_rrules_are_rejected(rule: str) -> None:
    task = task_pb2.Task(title="t", due=zdt("2026-12-01T09:00"), recurrence=task_pb2.Recurrence(rrule=rule))
    assert "task.recurrence.rrule" in fields(check(task)[1])


def test_recurrence_needs_a_due_time_and_starts_the_series_there() -> None:
    rec = task_pb2.Recurrence(rrule="FREQ=WEEKLY;BYDAY=MO")
    assert "task.recurrence" in fields(check(task_pb2.Task(title="t", recurrence=rec))[1])
    out, problems = check(task_pb2.Task(title="t", due=zdt("2026-12-07T09:00"), recurrence=rec))
    assert problems == []
    assert out.recurrence.series_start.local_time == "2026-12-07T09:00:00"
    assert out.recurrence.repeat_from == task_pb2.REPEAT_FROM_DUE_DATE


def stored(**kwargs: object) -> task_pb2.Task:
    base = task_pb2.Task(
        task_id="t",
        user_id="alice",
        title="Pay rent",
        version=3,
        status=task_pb2.TASK_STATUS_OPEN,
        priority=task_pb2.PRIORITY_NONE,
    )
    base.MergeFrom(task_pb2.Task(**kwargs))  # type: ignore[arg-type]
    return base


def test_editing_the_date_keeps_the_time_zone() -> None:
    current, _ = check(task_pb2.Task(title="Pay rent", due=zdt("2026-12-01T09:00", "Asia/Tokyo")))
    patch = task_pb2.Task(due=common_pb2.ZonedDateTime(local_time="2026-12-02T09:00"))
    updated, changed = domain.apply_update(current, patch, ["due.local_time"])
    assert updated.due.time_zone == "Asia/Tokyo"
    assert updated.due.local_time == "2026-12-02T09:00:00"
    assert changed == ["due"]


def test_update_changes_only_masked_fields() -> None:
    current = stored(description="keep me", tags=["a"])
    updated, changed = domain.apply_update(current, task_pb2.Task(title="New", description="ignored"), ["title"])
    assert updated.title == "New" and updated.description == "keep me" and list(updated.tags) == ["a"]
    assert changed == ["title"]
    assert updated.version == 3 and updated.user_id == "alice"


@pytest.mark.parametrize("paths", [[], ["status"], ["user_id"], ["version"], ["due.instant"], ["nonsense"]])
def test_update_mask_must_name_updatable_fields(paths: list[str]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        domain.apply_update(stored(), task_pb2.Task(), paths)
    assert {f for f, _ in raised.value.violations} == {"update_mask"}


def test_update_result_is_validated() -> None:
    with pytest.raises(InvalidArgument) as raised:
        domain.apply_update(stored(), task_pb2.Task(title=""), ["title"])
    assert {f for f, _ in raised.value.violations} == {"task.title"}


@pytest.mark.parametrize("size", [-1, 1001, 1_000_000])
def test_page_size_out_of_range_is_rejected(size: int) -> None:
    with pytest.raises(InvalidArgument):
        domain.check_list_request(task_service_pb2.ListTasksRequest(page_size=size), PageTokens(bytes(32)), "alice")


def test_a_signed_page_token_is_still_checked_field_by_field() -> None:
    tokens = PageTokens(bytes(32))
    request = task_service_pb2.ListTasksRequest()
    fingerprint = paging.query_fingerprint(request, user="alice")
    good = tokens.issue(fingerprint, (None, "01234567-89ab-7def-8123-456789abcdef"))
    request.page_token = good
    assert domain.check_list_request(request, tokens, "alice").after == (None, "01234567-89ab-7def-8123-456789abcdef")
    for position in [(None, "not-a-task-id"), (7, "01234567-89ab-7def-8123-456789abcdef")]:
        request.page_token = tokens.issue(fingerprint, position)
        with pytest.raises(InvalidArgument) as raised:
            domain.check_list_request(request, tokens, "alice")
        assert {f for f, _ in raised.value.violations} == {"page_token"}
    request.page_token = good
    with pytest.raises(InvalidArgument):
        domain.check_list_request(request, tokens, "bob")
