"""Next occurrences: daylight-saving changes, month ends, repeat modes, and the failure modes other systems had."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2

from recurrence_svc import domain
from todo_contracts.task.v1 import task_pb2
from todo_kit import rrules, zoned


def local_times(rule: str, start: str, zone: str, n: int) -> list[str]:
    begin = zoned.parse_local(start)
    found = []
    for occurrence in rrules.occurrences(rule, begin, zone):
        found.append(occurrence.local.strftime("%Y-%m-%dT%H:%M"))
        if len(found) == n:
            break
    return found


def instants(rule: str, start: str, zone: str, n: int) -> list[str]:
    begin = zoned.parse_local(start)
    out = []
    for occurrence in rrules.occurrences(rule, begin, zone):
        out.append(occurrence.instant.strftime("%Y-%m-%dT%H:%MZ"))
        if len(out) == n:
            break
    return out


def recurring(
    rule: str, due: str, zone: str, index: int = 1, start: str | None = None, **options: object
) -> task_pb2.Task:
    first = zoned.resolve(zoned.parse_local(start or due), zone)
    current = zoned.resolve(zoned.parse_local(due), zone)
    rec = task_pb2.Recurrence(rrule=rule, series_id="s-1", occurrence_index=index, **options)  # type: ignore[arg-type]
    rec.series_start.CopyFrom(first.to_proto())
    return task_pb2.Task(task_id="t", title="t", due=current.to_proto(), recurrence=rec)


def next_local(task: task_pb2.Task, completed_local: str, zone: str) -> str:
    completed = zoned.resolve(zoned.parse_local(completed_local), zone).instant
    outcome = domain.next_occurrence(task, completed)
    assert isinstance(outcome, domain.NextOccurrence), outcome
    return outcome.due.local.strftime("%Y-%m-%dT%H:%M")


# --- daylight saving -------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "start", "expected_utc"),
    [
        ("America/New_York", "2026-03-07T09:00", ["2026-03-07T14:00Z", "2026-03-08T13:00Z", "2026-03-09T13:00Z"]),
        ("America/New_York", "2026-10-31T09:00", ["2026-10-31T13:00Z", "2026-11-01T14:00Z", "2026-11-02T14:00Z"]),
        ("Europe/Berlin", "2026-03-28T09:00", ["2026-03-28T08:00Z", "2026-03-29T07:00Z", "2026-03-30T07:00Z"]),
        ("Europe/Berlin", "2026-10-24T09:00", ["2026-10-24T07:00Z", "2026-10-25T08:00Z", "2026-10-26T08:00Z"]),
    ],
)
def test_daily_0900_stays_0900_across_both_transitions(zone: str, start: str, expected_utc: list[str]) -> None:
    assert [t[-5:] for t in local_times("FREQ=DAILY", start, zone, 3)] == ["09:00"] * 3
    assert instants("FREQ=DAILY", start, zone, 3) == expected_utc


def test_0230_on_the_spring_forward_day_is_skipped_and_not_counted() -> None:
    found = local_times("FREQ=DAILY;COUNT=4", "2026-03-06T02:30", "America/New_York", 10)
    assert found == ["2026-03-06T02:30", "2026-03-07T02:30", "2026-03-09T02:30", "2026-03-10T02:30"]


def test_0130_on_the_fall_back_day_is_its_first_occurrence() -> None:
    found = instants("FREQ=DAILY;COUNT=3", "2026-10-31T01:30", "America/New_York", 3)
    assert found[1] == "2026-11-01T05:30Z"  # 01:30 EDT, the first of the two 01:30s


@pytest.mark.parametrize("repeat_from", [task_pb2.REPEAT_FROM_DUE_DATE, task_pb2.REPEAT_FROM_COMPLETION])
def test_completing_a_daily_2330_task_on_a_dst_day_makes_the_next_day(repeat_from: int) -> None:
    zone = "America/New_York"
    task = recurring("FREQ=DAILY", "2026-03-08T23:30", zone, index=3, start="2026-03-06T23:30", repeat_from=repeat_from)
    assert next_local(task, "2026-03-08T23:30", zone) == "2026-03-09T23:30"
    assert next_local(task, "2026-03-08T23:20", zone) == "2026-03-09T23:30"  # completed a little early
    fall = recurring("FREQ=DAILY", "2026-11-01T23:30", zone, index=2, start="2026-10-31T23:30", repeat_from=repeat_from)
    assert next_local(fall, "2026-11-01T23:31", zone) == "2026-11-02T23:30"


# --- month ends -------------------------------------------------------------


def test_monthly_on_the_31st_skips_short_months() -> None:
    found = local_times("FREQ=MONTHLY", "2026-01-31T09:00", "UTC", 5)
    assert found == ["2026-01-31T09:00", "2026-03-31T09:00", "2026-05-31T09:00", "2026-07-31T09:00",
                     "2026-08-31T09:00"]  # fmt: skip


def test_last_day_of_every_month() -> None:
    found = local_times("FREQ=MONTHLY;BYMONTHDAY=-1", "2028-01-31T09:00", "UTC", 4)
    assert found == ["2028-01-31T09:00", "2028-02-29T09:00", "2028-03-31T09:00", "2028-04-30T09:00"]


def test_february_29_yearly_only_in_leap_years() -> None:
    found = local_times("FREQ=YEARLY", "2024-02-29T09:00", "UTC", 3)
    assert found == ["2024-02-29T09:00", "2028-02-29T09:00", "2032-02-29T09:00"]


# --- the failure modes users suffered elsewhere ---------------------------------


def test_failure_mode_3_a_0900_task_does_not_move_to_1000_after_dst() -> None:
    zone = "Europe/Berlin"
    task = recurring("FREQ=WEEKLY;BYDAY=MO", "2026-03-23T09:00", zone)
    assert next_local(task, "2026-03-23T09:05", zone) == "2026-03-30T09:00"  # the week after the change


def test_failure_mode_4_completing_a_daily_task_near_dst_does_not_recreate_it_for_the_same_day() -> None:
    test_completing_a_daily_2330_task_on_a_dst_day_makes_the_next_day(task_pb2.REPEAT_FROM_COMPLETION)


def test_failure_mode_5_no_month_end_drift() -> None:
    zone = "UTC"
    task = recurring("FREQ=MONTHLY", "2026-01-31T09:00", zone)
    second = next_local(task, "2026-01-31T10:00", zone)
    assert second == "2026-03-31T09:00"  # never Feb 28 -> Mar 28, never Mar 3
    task = recurring("FREQ=MONTHLY", "2026-03-31T09:00", zone, index=2, start="2026-01-31T09:00")
    assert next_local(task, "2026-03-31T10:00", zone) == "2026-05-31T09:00"


def test_failure_mode_6_a_month_is_a_calendar_month_not_seconds() -> None:
    found = local_times("FREQ=MONTHLY;BYMONTHDAY=1", "2026-01-01T09:00", "UTC", 4)
    assert found == ["2026-01-01T09:00", "2026-02-01T09:00", "2026-03-01T09:00", "2026-04-01T09:00"]


def test_failure_mode_7_from_due_date_and_from_completion_differ_and_nothing_piles_up() -> None:
    zone = "UTC"
    weekly = "FREQ=DAILY;INTERVAL=7"
    from_due = recurring(weekly, "2026-12-07T09:00", zone)
    from_completion = recurring(weekly, "2026-12-07T09:00", zone, repeat_from=task_pb2.REPEAT_FROM_COMPLETION)
    assert next_local(from_due, "2026-12-10T12:00", zone) == "2026-12-14T09:00"
    assert next_local(from_completion, "2026-12-10T12:00", zone) == "2026-12-17T09:00"
    # Completed three weeks late: from the due date the next is the overdue one after it,
    # unless skip_missed asks for the first one still ahead.
    late = "2026-12-29T12:00"
    assert next_local(from_due, late, zone) == "2026-12-14T09:00"
    skipping = recurring(weekly, "2026-12-07T09:00", zone, skip_missed=True)
    assert next_local(skipping, late, zone) == "2027-01-04T09:00"
    outcome = domain.next_occurrence(skipping, zoned.resolve(zoned.parse_local(late), zone).instant)
    assert isinstance(outcome, domain.NextOccurrence) and outcome.index == 5


def test_failure_mode_10_the_servers_time_zone_is_never_used() -> None:
    def compute() -> list[str]:
        return instants("FREQ=DAILY", "2026-03-07T09:00", "America/New_York", 3)

    expected = compute()
    for server_zone in ("Asia/Kolkata", "Pacific/Chatham", "UTC"):
        with server_tz(server_zone):
            assert compute() == expected


class server_tz:
    """Runs a block as if the server's local zone were another one."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.old = os.environ.get("TZ")

    def __enter__(self) -> None:
        os.environ["TZ"] = self.zone
        time.tzset()

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = self.old
        time.tzset()


# --- series ends and lead time ------------------------------------------------


def test_series_ends_at_count_and_until() -> None:
    task = recurring("FREQ=DAILY;COUNT=3", "2026-12-09T09:00", "UTC", index=3, start="2026-12-07T09:00")
    assert domain.next_occurrence(task, datetime(2026, 12, 9, 10, tzinfo=UTC)) == domain.SeriesEnded("count")
    task = recurring("FREQ=DAILY;UNTIL=20261209T090000Z", "2026-12-09T09:00", "UTC", index=3, start="2026-12-07T09:00")
    assert isinstance(domain.next_occurrence(task, datetime(2026, 12, 9, 10, tzinfo=UTC)), domain.SeriesEnded)
    task = recurring("FREQ=DAILY;UNTIL=20261209T090000Z", "2026-12-08T09:00", "UTC", index=2, start="2026-12-07T09:00")
    assert next_local(task, "2026-12-08T10:00", "UTC") == "2026-12-09T09:00"  # UNTIL is inclusive


def test_lead_time_delays_the_next_occurrence() -> None:
    task = recurring("FREQ=WEEKLY", "2026-12-07T09:00", "UTC", create_lead_time=duration_pb2.Duration(seconds=86400))
    due = zoned.resolve(datetime(2026, 12, 14, 9), "UTC")
    now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert domain.publish_time(task, due, now) == datetime(2026, 12, 13, 9, tzinfo=UTC)
    assert domain.publish_time(task, due, due.instant) == due.instant  # never in the past
    plain = recurring("FREQ=WEEKLY", "2026-12-07T09:00", "UTC")
    assert domain.publish_time(plain, due, now) == now


def test_a_start_that_does_not_match_the_rule_is_still_the_first_occurrence_and_counts() -> None:
    # 2026-12-09 is a Wednesday; the rule asks for Mondays. RFC 5545: DTSTART is the first instance.
    found = local_times("FREQ=WEEKLY;BYDAY=MO;COUNT=3", "2026-12-09T09:00", "UTC", 10)
    assert found == ["2026-12-09T09:00", "2026-12-14T09:00", "2026-12-21T09:00"]


# --- bounded work ------------------------------------------------------------------


@pytest.mark.parametrize("years", [1, 10])
def test_a_minutely_skip_missed_series_started_years_ago_gets_its_next_occurrence_with_bounded_work(
    years: int,
) -> None:
    zone = "America/New_York"
    start = f"{2026 - years}-03-01T09:00"
    task = recurring("FREQ=MINUTELY", start, zone, skip_missed=True)
    completed = zoned.resolve(datetime(2026, 3, 1, 9, 0, 30), zone).instant
    budget = rrules.Budget()
    outcome = domain.next_occurrence(task, completed, budget=budget)
    assert isinstance(outcome, domain.NextOccurrence)
    assert outcome.due.local == datetime(2026, 3, 1, 9, 1)
    # Every minute since the start is a position, except the hours skipped in spring (one a year).
    minutes = (outcome.due.local - zoned.parse_local(start)) // timedelta(minutes=1)
    assert outcome.index == 1 + minutes - 60 * years
    assert budget.spent < 1000 * years  # years of minutes are counted, not walked through


def test_skip_missed_positions_match_a_brute_force_count_across_a_dst_gap() -> None:
    zone = "America/New_York"
    start = zoned.parse_local("2026-03-06T23:50")
    expected, index, moment = {}, 1, start
    while moment < datetime(2026, 3, 10):
        moment += timedelta(minutes=1)
        if zoned.resolve(moment, zone).local == moment:  # exists: 02:00-02:59 on March 8 does not
            index += 1
            expected[moment] = index
    task = recurring("FREQ=MINUTELY", "2026-03-06T23:50", zone, skip_missed=True)
    for completed_local in ("2026-03-08T01:59:10", "2026-03-08T03:00:00", "2026-03-09T17:31:05"):
        completed = zoned.resolve(zoned.parse_local(completed_local), zone).instant
        outcome = domain.next_occurrence(task, completed)
        assert isinstance(outcome, domain.NextOccurrence)
        assert outcome.index == expected[outcome.due.local], completed_local
        previous = max(m for m in expected if m < outcome.due.local)
        assert outcome.due.instant > completed >= zoned.resolve(previous, zone).instant  # the first one ahead


@pytest.mark.parametrize("rule", ["FREQ=DAILY;INTERVAL=0", "FREQ=DAILY;INTERVAL=-1", "FREQ=MONTHLY;BYDAY=+99MO"])
def test_a_rule_stored_before_the_stricter_checks_is_refused_at_once(rule: str) -> None:
    task = recurring(rule, "2026-12-07T09:00", "UTC")
    budget = rrules.Budget()
    with pytest.raises(ValueError):
        domain.next_occurrence(task, datetime(2026, 12, 7, 10, tzinfo=UTC), budget=budget)
    assert budget.spent == 0
