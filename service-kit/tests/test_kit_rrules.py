"""Recurrence rules: strict RFC 5545 checks, never-occurring rules, exact indexes with bounded work."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrule, rrulestr

from todo_kit import rrules, zoned

NY = "America/New_York"


# --- every part checked as RFC 5545 says ------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "part"),
    [
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL"),
        ("FREQ=DAILY;INTERVAL=-1", "INTERVAL"),
        ("FREQ=DAILY;INTERVAL=1001", "INTERVAL"),
        ("FREQ=DAILY;INTERVAL=two", "INTERVAL"),
        ("FREQ=DAILY;COUNT=0", "COUNT"),
        ("FREQ=DAILY;COUNT=10001", "COUNT"),
        ("FREQ=MONTHLY;BYDAY=+99MO", "BYDAY"),
        ("FREQ=MONTHLY;BYDAY=0MO", "BYDAY"),
        ("FREQ=MONTHLY;BYDAY=+MO", "BYDAY"),
        ("FREQ=MONTHLY;BYDAY=MO,,TU", "BYDAY"),
        ("FREQ=WEEKLY;BYDAY=1MO", "BYDAY"),
        ("FREQ=DAILY;BYDAY=-1FR", "BYDAY"),
        ("FREQ=YEARLY;BYWEEKNO=20;BYDAY=1MO", "BYDAY"),
        ("FREQ=WEEKLY;BYDAY=MO,MO", "BYDAY"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY"),
        ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY"),
        ("FREQ=MONTHLY;BYMONTHDAY=-32", "BYMONTHDAY"),
        ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY"),
        ("FREQ=YEARLY;BYYEARDAY=0", "BYYEARDAY"),
        ("FREQ=YEARLY;BYYEARDAY=367", "BYYEARDAY"),
        ("FREQ=MONTHLY;BYYEARDAY=1", "BYYEARDAY"),
        ("FREQ=DAILY;BYYEARDAY=1", "BYYEARDAY"),
        ("FREQ=YEARLY;BYWEEKNO=54", "BYWEEKNO"),
        ("FREQ=MONTHLY;BYWEEKNO=1", "BYWEEKNO"),
        ("FREQ=YEARLY;BYMONTH=13", "BYMONTH"),
        ("FREQ=YEARLY;BYMONTH=-1", "BYMONTH"),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=0", "BYSETPOS"),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=367", "BYSETPOS"),
        ("FREQ=MONTHLY;BYSETPOS=1", "BYSETPOS"),
        ("FREQ=MINUTELY;BYSECOND=61", "BYSECOND"),
        ("FREQ=HOURLY;BYMINUTE=60", "BYMINUTE"),
        ("FREQ=DAILY;BYHOUR=24", "BYHOUR"),
        ("FREQ=DAILY;BYHOUR=9,9", "BYHOUR"),
        ("FREQ=WEEKLY;WKST=XX", "WKST"),
        ("FREQ=YEARLY;BYEASTER=0", "BYEASTER"),
        ("FREQ=DAILY;X-COLOUR=red", "X-COLOUR"),
        ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20270101T000000Z", "UNTIL"),
        ("FREQ=FORTNIGHTLY", "FREQ"),
        ("INTERVAL=2", "FREQ"),
        ("FREQ=DAILY;DTSTART=20270101T090000", "DTSTART"),
    ],
)
def test_every_rule_part_is_checked_as_rfc5545_says(rule: str, part: str) -> None:
    problems = rrules.rule_problems(rule)
    assert problems and problems[0][0] == part, problems
    with pytest.raises(ValueError, match=part):
        rrules.parse(rule)


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=MONTHLY;BYDAY=+1MO,-1FR",
        "FREQ=MONTHLY;BYDAY=01MO",
        "freq=monthly;byday=2mo",
        "FREQ=YEARLY;BYDAY=53MO",
        "FREQ=YEARLY;BYYEARDAY=-366,366",
        "FREQ=YEARLY;BYWEEKNO=-53,53;BYDAY=MO",
        "FREQ=HOURLY;BYYEARDAY=100",
        "FREQ=MINUTELY;BYSECOND=0,60",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        f"FREQ=DAILY;INTERVAL={rrules.MAX_INTERVAL};COUNT={rrules.MAX_COUNT}",
        "FREQ=DAILY;UNTIL=20271231",
        "FREQ=DAILY;UNTIL=20271231T235959",
    ],
)
def test_rules_within_the_rfc_are_accepted(rule: str) -> None:
    assert rrules.rule_problems(rule) == []


# --- never occurring -------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=MONTHLY;BYMONTH=4,6,9,11;BYMONTHDAY=31",
        "FREQ=YEARLY;BYYEARDAY=366;BYMONTH=1,2,3",
        "FREQ=HOURLY;BYYEARDAY=-366;BYMONTH=12",
        "FREQ=YEARLY;BYWEEKNO=53;BYMONTH=6",
        "FREQ=MONTHLY;BYDAY=6MO",
        "FREQ=MONTHLY;BYDAY=-1MO;BYMONTHDAY=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21",
        "FREQ=WEEKLY;BYDAY=MO,TU;BYSETPOS=3",
        "FREQ=DAILY;BYHOUR=9;BYSETPOS=2",
        "FREQ=SECONDLY;BYSECOND=60",
    ],
)
def test_rules_that_never_occur_are_refused_with_bounded_work(rule: str) -> None:
    problems = rrules.rule_problems(rule)
    assert problems and problems[0][0] == "" and "never occurs" in problems[0][1]
    budget = rrules.Budget()
    assert rrules.never_occurs(rule, budget=budget)
    # Decided over month and year shapes (at most 168 months or 21 years), not by scanning centuries.
    assert budget.spent <= 2000


@pytest.mark.parametrize(
    ("rule", "start", "within_years"),
    [
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "2025-03-01T09:00", 4),
        ("FREQ=MONTHLY;BYDAY=5MO;BYMONTH=2", "2025-03-01T09:00", 30),
        ("FREQ=YEARLY;BYWEEKNO=53;BYDAY=TH", "2021-01-10T09:00", 10),
        ("FREQ=YEARLY;BYYEARDAY=366", "2025-01-01T09:00", 4),
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO", "2025-01-01T09:00", 30),
    ],
)
def test_rare_rules_are_accepted_and_occur(rule: str, start: str, within_years: int) -> None:
    assert rrules.rule_problems(rule) == []
    begin = zoned.parse_local(start)
    second = list(itertools.islice(rrules.occurrences(rule, begin, "UTC"), 2))[-1]
    assert second.index == 2 and begin < second.local < begin.replace(year=begin.year + within_years)


def test_rules_that_occur_for_no_start_of_theirs_end_without_running_long() -> None:
    # INTERVAL=4 from 2025 never meets a leap year: valid in general, but this series has only its start.
    budget = rrules.Budget()
    found = list(rrules.occurrences("FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29", datetime(2025, 2, 1, 9), "UTC",
                                    budget=budget))  # fmt: skip
    assert [o.index for o in found] == [1]
    assert budget.spent < 1000


# --- exact positions with bounded work ----------------------------------------------------


def _nonexistent_hours(zone: str, first: datetime, last: datetime) -> int:
    tz = ZoneInfo(zone)
    hours, moment = 0, first
    while moment < last:
        if moment.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != moment:
            hours += 1
        moment += timedelta(hours=1)
    return hours


@pytest.mark.parametrize("years", [1, 10])
def test_minutely_series_started_years_ago_gets_its_exact_index_with_bounded_work(years: int) -> None:
    start = datetime(2026 - years, 3, 1, 9, 0)
    completed = datetime(2026, 3, 1, 14, 0, 30, tzinfo=UTC)  # 09:00:30 in New York
    budget = rrules.Budget()
    found = rrules.first_after("FREQ=MINUTELY", start, NY, completed, budget=budget)
    assert found is not None and found.local == datetime(2026, 3, 1, 9, 1)
    minutes = (found.local - start) // timedelta(minutes=1)
    assert found.index == 1 + minutes - 60 * _nonexistent_hours(NY, start, found.local)
    # Years of minutes (5 million for ten years) are counted, not walked through.
    assert budget.spent < 1000 * years


def _every_minute_from(start: datetime, zone: str) -> Iterator[tuple[int, datetime]]:
    """The brute force: every existing minute after the start, numbered from 2."""
    tz = ZoneInfo(zone)
    index, moment = 1, start
    while True:
        moment += timedelta(minutes=1)
        if moment.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == moment:
            index += 1
            yield index, moment


def test_minutely_index_matches_a_brute_force_count_across_a_dst_gap() -> None:
    start = datetime(2026, 3, 6, 22, 17)
    tz = ZoneInfo(NY)
    expected = dict((moment, index) for index, moment in itertools.islice(_every_minute_from(start, NY), 6 * 1440))
    probes = [datetime(2026, 3, 8, 1, 59), datetime(2026, 3, 8, 3, 0), datetime(2026, 3, 9, 12, 5, 59),
              datetime(2026, 3, 10, 23, 0), datetime(2026, 3, 7, 0, 0, 1)]  # fmt: skip
    for probe in probes:
        instant = probe.replace(tzinfo=tz).astimezone(UTC)
        found = rrules.first_after("FREQ=MINUTELY", start, NY, instant)
        assert found is not None
        assert found.index == expected[found.local], probe
        assert found.local == min(m for m in expected if m.replace(tzinfo=tz).astimezone(UTC) > instant)


def test_first_after_reaches_a_far_min_index_by_counting() -> None:
    # A series whose start moved (its rule changed) keeps its position: the next one has a far index.
    budget = rrules.Budget()
    found = rrules.first_after("FREQ=MINUTELY", datetime(2026, 1, 1), "UTC", datetime(2026, 1, 1, tzinfo=UTC),
                               min_index=1_000_001, budget=budget)  # fmt: skip
    assert found is not None and found.index == 1_000_001
    assert found.local == datetime(2026, 1, 1) + timedelta(minutes=1_000_000)
    assert budget.spent < 1000


def test_evaluation_stops_cleanly_when_its_budget_runs_out() -> None:
    with pytest.raises(rrules.EvaluationLimit):
        rrules.first_after("FREQ=DAILY;BYMONTH=1", datetime(1990, 1, 1, 9), "UTC", datetime(2026, 1, 1, tzinfo=UTC),
                           budget=rrules.Budget(steps=100))  # fmt: skip
    occurrences = rrules.occurrences("FREQ=SECONDLY", datetime(2026, 1, 1), "UTC", budget=rrules.Budget(steps=500))
    with pytest.raises(rrules.EvaluationLimit):
        for _ in occurrences:
            pass


def test_count_bounds_the_occurrences() -> None:
    found = list(rrules.occurrences(f"FREQ=SECONDLY;COUNT={rrules.MAX_COUNT}", datetime(2026, 1, 1), "UTC"))
    assert len(found) == rrules.MAX_COUNT and found[-1].local == datetime(2026, 1, 1) + timedelta(seconds=9999)
    late = datetime(2027, 1, 1, tzinfo=UTC)
    assert rrules.first_after(f"FREQ=SECONDLY;COUNT={rrules.MAX_COUNT}", datetime(2026, 1, 1), "UTC", late) is None


# --- what dateutil got wrong -------------------------------------------------------------


def test_plain_and_numbered_weekdays_together_mean_either() -> None:
    found = [o.local.date() for o in rrules.occurrences("FREQ=MONTHLY;BYDAY=MO,1TU;COUNT=7", datetime(2026, 6, 1, 9),
                                                        "UTC")]  # fmt: skip
    # June 2026: Mondays 1, 8, 15, 22, 29 and the first Tuesday, the 2nd; then July's first Tuesday comes first.
    assert found == [date(2026, 6, d) for d in (1, 2, 8, 15, 22, 29)] + [date(2026, 7, 6)]


def test_week_numbers_are_iso_weeks_with_monday_starts() -> None:
    start = datetime(2019, 12, 1, 9)
    every_day = "MO,TU,WE,TH,FR,SA,SU"
    for week in (1, 52, 53):
        rule = f"FREQ=YEARLY;BYWEEKNO={week};BYDAY={every_day}"
        found = [o.local.date() for o in rrules.occurrences(rule, start, "UTC") if o.index > 1]
        found = [d for d in found if d < date(2030, 1, 1)]
        expected = [start.date() + timedelta(days=i) for i in range(1, 3700)]
        expected = [d for d in expected if d.isocalendar().week == week and d < date(2030, 1, 1)]
        assert found == expected, week


# --- agreement with python-dateutil where it follows the RFC ------------------------------------


def _dateutil_occurrences(rule: str, start: datetime, zone: str) -> Iterator[tuple[int, datetime]]:
    """The previous implementation: dateutil, corrected for DTSTART, nonexistent times, COUNT and the horizon."""
    tz = ZoneInfo(zone)
    horizon = datetime(start.year + rrules.HORIZON_YEARS, 1, 1)
    parts = dict(p.split("=") for p in rule.split(";"))
    count = int(parts.pop("COUNT")) if "COUNT" in parts else None
    engine = rrulestr(";".join(f"{k}={v}" for k, v in parts.items()), dtstart=start)
    assert isinstance(engine, rrule)
    index = 1
    yield 1, start
    for local in engine:
        if (count is not None and index >= count) or local >= horizon:
            return
        if local <= start or local.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != local:
            continue
        index += 1
        yield index, local


def _random_rule(rng: random.Random) -> str:
    freq = rng.choice(rrules.FREQUENCIES)
    coarse = freq in ("YEARLY", "MONTHLY", "WEEKLY", "DAILY")

    def some(n: int, low: int, high: int, signed: bool = False) -> str:
        values = {
            rng.randint(low, high) * (-1 if signed and rng.random() < 0.3 else 1) for _ in range(rng.randint(1, n))
        }
        return ",".join(map(str, sorted(values)))

    parts = [f"FREQ={freq}"]
    if rng.random() < 0.4:
        parts.append(f"INTERVAL={rng.randint(1, 5 if coarse else 40)}")
    if rng.random() < 0.3:
        parts.append(f"COUNT={rng.randint(1, 60)}")
    if rng.random() < 0.3:
        parts.append(f"BYMONTH={some(3, 1, 12)}")
    if freq != "WEEKLY" and rng.random() < 0.3:
        parts.append(f"BYMONTHDAY={some(3, 1, 31, True)}")
    if freq in ("YEARLY", "HOURLY", "MINUTELY", "SECONDLY") and rng.random() < 0.15:
        parts.append(f"BYYEARDAY={some(3, 1, 366, True)}")
    if rng.random() < 0.4:
        # One kind of weekday per rule: dateutil requires both kinds at once when they are mixed.
        numbered = freq in ("MONTHLY", "YEARLY") and rng.random() < 0.5
        days = {f"{rng.choice([1, 2, 3, 4, -1, -2, 5]) if numbered else ''}{rng.choice(rrules._WEEKDAY_CODES)}"
                for _ in range(rng.randint(1, 3))}  # fmt: skip
        parts.append("BYDAY=" + ",".join(sorted(days)))
    if freq != "SECONDLY" and rng.random() < 0.3:
        parts.append(f"BYHOUR={some(3, 0, 23)}")
    if freq != "SECONDLY" and rng.random() < 0.2:
        parts.append(f"BYMINUTE={some(2, 0, 59)}")
    if rng.random() < 0.1:
        parts.append(f"BYSECOND={some(2, 0, 59)}")
    # dateutil takes BYSETPOS in a rule's first week from the days after DTSTART only.
    if freq != "WEEKLY" and len(parts) > 1 and rng.random() < 0.15 and any(p.startswith("BY") for p in parts):
        parts.append(f"BYSETPOS={some(2, 1, 5, True)}")
    if rng.random() < 0.2:
        parts.append(f"WKST={rng.choice(rrules._WEEKDAY_CODES)}")
    return ";".join(parts)


def test_occurrences_agree_with_dateutil_on_random_rules() -> None:
    rng = random.Random(20261129)
    zones = ["UTC", NY, "Europe/Berlin", "Australia/Lord_Howe", "America/Sao_Paulo"]
    compared = 0
    while compared < 300:
        rule = _random_rule(rng)
        if rrules.rule_problems(rule):
            continue
        zone = rng.choice(zones)
        start = datetime(rng.randint(1995, 2030), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                         rng.choice([0, 15, 30, 59]), rng.choice([0, 30]))  # fmt: skip
        wanted = 30 if rule.split(";")[0] in ("FREQ=YEARLY", "FREQ=MONTHLY", "FREQ=WEEKLY", "FREQ=DAILY") else 200
        try:
            expected = list(itertools.islice(_dateutil_occurrences(rule, start, zone), wanted))
        except ValueError:
            continue  # dateutil refuses a BYHOUR/BYMINUTE/BYSECOND its INTERVAL never reaches from this start
        got = [(o.index, o.local) for o in itertools.islice(rrules.occurrences(rule, start, zone), wanted)]
        assert got == expected, (rule, start, zone)
        compared += 1


# --- in words ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("FREQ=MONTHLY;BYDAY=2MO;COUNT=10", "every month on the 2nd Monday, 10 times"),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR", "every 2 weeks on Monday and Friday"),
        ("freq=monthly;bymonthday=-1,1", "every month on the 1st and last day"),
        ("FREQ=MONTHLY;BYDAY=+1MO,-1FR", "every month on the 1st Monday and the last Friday"),
        (
            "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO;UNTIL=20301231T000000Z",
            "every year in week 20 on Monday, until 2030-12-31",
        ),
        ("FREQ=YEARLY;BYYEARDAY=100", "every year on the 100th day of the year"),
        ("FREQ=DAILY;BYHOUR=9,17;COUNT=1", "every day at hour 9 and 17, once"),
    ],
)
def test_describe_names_the_parts(rule: str, words: str) -> None:
    assert rrules.describe(rule) == words
