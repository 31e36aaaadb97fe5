"""The examples of RFC 5545 section 3.8.5.3, through RecurrenceService.PreviewOccurrences.

Each case is the RFC's DTSTART (America/New_York, as in the RFC), its RRULE and
the instances the RFC lists, written out from the RFC text. Local times are
compared, so the examples that cross the October 1997 change from EDT to EST
also show that 09:00 stays 09:00.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import grpc
import pytest

from recurrence_svc.unit import unit as recurrence_unit
from todo_contracts.common.v1 import common_pb2
from todo_contracts.recurrence.v1 import recurrence_pb2, recurrence_pb2_grpc
from todo_kit.config import Settings
from todo_kit.testing import bearer, running_host

NY = "America/New_York"


def days(*items: tuple[int, int, int]) -> list[str]:
    return [f"{y:04d}-{m:02d}-{d:02d}T09:00:00" for y, m, d in items]


def span(first: date, last: date, step: int = 1) -> list[str]:
    out, day = [], first
    while day <= last:
        out.append(f"{day.isoformat()}T09:00:00")
        day += timedelta(days=step)
    return out


def weekdays_in(first: date, last: date, weekdays: set[int], every_other_week_from: date | None = None) -> list[str]:
    out = []
    day = first
    while day <= last:
        week_ok = True
        if every_other_week_from is not None:
            week_ok = ((day - every_other_week_from).days // 7) % 2 == 0
        if day.weekday() in weekdays and week_ok:
            out.append(f"{day.isoformat()}T09:00:00")
        day += timedelta(days=1)
    return out


SEP_2_1997 = "1997-09-02T09:00"

# (name, DTSTART local, RRULE, expected local times; for unbounded rules, the first ones the RFC lists)
CASES: list[tuple[str, str, str, list[str], bool]] = [
    ("daily for 10", SEP_2_1997, "FREQ=DAILY;COUNT=10", span(date(1997, 9, 2), date(1997, 9, 11)), True),
    ("daily until Dec 24 1997", SEP_2_1997, "FREQ=DAILY;UNTIL=19971224T000000Z",
     span(date(1997, 9, 2), date(1997, 12, 23)), True),
    ("every other day", SEP_2_1997, "FREQ=DAILY;INTERVAL=2", span(date(1997, 9, 2), date(1997, 12, 31), 2), False),
    ("every 10 days, 5 times", SEP_2_1997, "FREQ=DAILY;INTERVAL=10;COUNT=5",
     days((1997, 9, 2), (1997, 9, 12), (1997, 9, 22), (1997, 10, 2), (1997, 10, 12)), True),
    ("every day in January for 3 years", "1998-01-01T09:00",
     "FREQ=YEARLY;UNTIL=20000131T140000Z;BYMONTH=1;BYDAY=SU,MO,TU,WE,TH,FR,SA",
     span(date(1998, 1, 1), date(1998, 1, 31)) + span(date(1999, 1, 1), date(1999, 1, 31))
     + span(date(2000, 1, 1), date(2000, 1, 31)), True),
    ("same, with FREQ=DAILY", "1998-01-01T09:00", "FREQ=DAILY;UNTIL=20000131T140000Z;BYMONTH=1",
     span(date(1998, 1, 1), date(1998, 1, 31)) + span(date(1999, 1, 1), date(1999, 1, 31))
     + span(date(2000, 1, 1), date(2000, 1, 31)), True),
    ("weekly for 10", SEP_2_1997, "FREQ=WEEKLY;COUNT=10", span(date(1997, 9, 2), date(1997, 11, 4), 7), True),
    ("weekly until Dec 24 1997", SEP_2_1997, "FREQ=WEEKLY;UNTIL=19971224T000000Z",
     span(date(1997, 9, 2), date(1997, 12, 23), 7), True),
    ("every other week", SEP_2_1997, "FREQ=WEEKLY;INTERVAL=2;WKST=SU",
     span(date(1997, 9, 2), date(1998, 2, 17), 14), False),
    ("Tuesday and Thursday for five weeks (UNTIL)", SEP_2_1997,
     "FREQ=WEEKLY;UNTIL=19971007T000000Z;WKST=SU;BYDAY=TU,TH",
     weekdays_in(date(1997, 9, 2), date(1997, 10, 6), {1, 3}), True),
    ("Tuesday and Thursday for five weeks (COUNT)", SEP_2_1997, "FREQ=WEEKLY;COUNT=10;WKST=SU;BYDAY=TU,TH",
     weekdays_in(date(1997, 9, 2), date(1997, 10, 6), {1, 3}), True),
    ("every other week on Monday, Wednesday, Friday until Dec 24", "1997-09-01T09:00",
     "FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;WKST=SU;BYDAY=MO,WE,FR",
     days((1997, 9, 1), (1997, 9, 3), (1997, 9, 5), (1997, 9, 15), (1997, 9, 17), (1997, 9, 19), (1997, 9, 29),
          (1997, 10, 1), (1997, 10, 3), (1997, 10, 13), (1997, 10, 15), (1997, 10, 17), (1997, 10, 27),
          (1997, 10, 29), (1997, 10, 31), (1997, 11, 10), (1997, 11, 12), (1997, 11, 14), (1997, 11, 24),
          (1997, 11, 26), (1997, 11, 28), (1997, 12, 8), (1997, 12, 10), (1997, 12, 12), (1997, 12, 22)), True),
    ("every other week on Tuesday and Thursday, 8 times", SEP_2_1997,
     "FREQ=WEEKLY;INTERVAL=2;COUNT=8;WKST=SU;BYDAY=TU,TH",
     days((1997, 9, 2), (1997, 9, 4), (1997, 9, 16), (1997, 9, 18), (1997, 9, 30), (1997, 10, 2), (1997, 10, 14),
          (1997, 10, 16)), True),
    ("first Friday, 10 times", "1997-09-05T09:00", "FREQ=MONTHLY;COUNT=10;BYDAY=1FR",
     days((1997, 9, 5), (1997, 10, 3), (1997, 11, 7), (1997, 12, 5), (1998, 1, 2), (1998, 2, 6), (1998, 3, 6),
          (1998, 4, 3), (1998, 5, 1), (1998, 6, 5)), True),
    ("first Friday until Dec 24", "1997-09-05T09:00", "FREQ=MONTHLY;UNTIL=19971224T000000Z;BYDAY=1FR",
     days((1997, 9, 5), (1997, 10, 3), (1997, 11, 7), (1997, 12, 5)), True),
    ("every other month on the first and last Sunday, 10 times", "1997-09-07T09:00",
     "FREQ=MONTHLY;INTERVAL=2;COUNT=10;BYDAY=1SU,-1SU",
     days((1997, 9, 7), (1997, 9, 28), (1997, 11, 2), (1997, 11, 30), (1998, 1, 4), (1998, 1, 25), (1998, 3, 1),
          (1998, 3, 29), (1998, 5, 3), (1998, 5, 31)), True),
    ("second-to-last Monday, 6 times", "1997-09-22T09:00", "FREQ=MONTHLY;COUNT=6;BYDAY=-2MO",
     days((1997, 9, 22), (1997, 10, 20), (1997, 11, 17), (1997, 12, 22), (1998, 1, 19), (1998, 2, 16)), True),
    ("third-to-last day of the month", "1997-09-28T09:00", "FREQ=MONTHLY;BYMONTHDAY=-3",
     days((1997, 9, 28), (1997, 10, 29), (1997, 11, 28), (1997, 12, 29), (1998, 1, 29), (1998, 2, 26)), False),
    ("2nd and 15th, 10 times", SEP_2_1997, "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=2,15",
     days((1997, 9, 2), (1997, 9, 15), (1997, 10, 2), (1997, 10, 15), (1997, 11, 2), (1997, 11, 15), (1997, 12, 2),
          (1997, 12, 15), (1998, 1, 2), (1998, 1, 15)), True),
    ("first and last day, 10 times", "1997-09-30T09:00", "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=1,-1",
     days((1997, 9, 30), (1997, 10, 1), (1997, 10, 31), (1997, 11, 1), (1997, 11, 30), (1997, 12, 1),
          (1997, 12, 31), (1998, 1, 1), (1998, 1, 31), (1998, 2, 1)), True),
    ("every 18 months, 10th to 15th, 10 times", "1997-09-10T09:00",
     "FREQ=MONTHLY;INTERVAL=18;COUNT=10;BYMONTHDAY=10,11,12,13,14,15",
     days((1997, 9, 10), (1997, 9, 11), (1997, 9, 12), (1997, 9, 13), (1997, 9, 14), (1997, 9, 15), (1999, 3, 10),
          (1999, 3, 11), (1999, 3, 12), (1999, 3, 13)), True),
    ("every Tuesday, every other month", SEP_2_1997, "FREQ=MONTHLY;INTERVAL=2;BYDAY=TU",
     days((1997, 9, 2), (1997, 9, 9), (1997, 9, 16), (1997, 9, 23), (1997, 9, 30), (1997, 11, 4), (1997, 11, 11),
          (1997, 11, 18), (1997, 11, 25), (1998, 1, 6), (1998, 1, 13), (1998, 1, 20), (1998, 1, 27), (1998, 3, 3),
          (1998, 3, 10), (1998, 3, 17), (1998, 3, 24), (1998, 3, 31)), False),
    ("June and July, 10 times", "1997-06-10T09:00", "FREQ=YEARLY;COUNT=10;BYMONTH=6,7",
     days(*[(y, m, 10) for y in range(1997, 2002) for m in (6, 7)]), True),
    ("every other year in January, February, March, 10 times", "1997-03-10T09:00",
     "FREQ=YEARLY;INTERVAL=2;COUNT=10;BYMONTH=1,2,3",
     days((1997, 3, 10), (1999, 1, 10), (1999, 2, 10), (1999, 3, 10), (2001, 1, 10), (2001, 2, 10), (2001, 3, 10),
          (2003, 1, 10), (2003, 2, 10), (2003, 3, 10)), True),
    ("every third year on days 1, 100 and 200, 10 times", "1997-01-01T09:00",
     "FREQ=YEARLY;INTERVAL=3;COUNT=10;BYYEARDAY=1,100,200",
     days((1997, 1, 1), (1997, 4, 10), (1997, 7, 19), (2000, 1, 1), (2000, 4, 9), (2000, 7, 18), (2003, 1, 1),
          (2003, 4, 10), (2003, 7, 19), (2006, 1, 1)), True),
    ("20th Monday of the year", "1997-05-19T09:00", "FREQ=YEARLY;BYDAY=20MO",
     days((1997, 5, 19), (1998, 5, 18), (1999, 5, 17)), False),
    ("Monday of week 20", "1997-05-12T09:00", "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO",
     days((1997, 5, 12), (1998, 5, 11), (1999, 5, 17)), False),
    ("every Thursday in March", "1997-03-13T09:00", "FREQ=YEARLY;BYMONTH=3;BYDAY=TH",
     days((1997, 3, 13), (1997, 3, 20), (1997, 3, 27), (1998, 3, 5), (1998, 3, 12), (1998, 3, 19), (1998, 3, 26),
          (1999, 3, 4), (1999, 3, 11), (1999, 3, 18), (1999, 3, 25)), False),
    ("every Thursday in June, July and August", "1997-06-05T09:00", "FREQ=YEARLY;BYDAY=TH;BYMONTH=6,7,8",
     days((1997, 6, 5), (1997, 6, 12), (1997, 6, 19), (1997, 6, 26), (1997, 7, 3), (1997, 7, 10), (1997, 7, 17),
          (1997, 7, 24), (1997, 7, 31), (1997, 8, 7), (1997, 8, 14), (1997, 8, 21), (1997, 8, 28), (1998, 6, 4)),
     False),
    ("the first Saturday after the first Sunday", "1997-09-13T09:00",
     "FREQ=MONTHLY;BYDAY=SA;BYMONTHDAY=7,8,9,10,11,12,13",
     days((1997, 9, 13), (1997, 10, 11), (1997, 11, 8), (1997, 12, 13), (1998, 1, 10), (1998, 2, 7), (1998, 3, 7),
          (1998, 4, 11), (1998, 5, 9), (1998, 6, 13)), False),
    ("U.S. presidential election day", "1996-11-05T09:00",
     "FREQ=YEARLY;INTERVAL=4;BYMONTH=11;BYDAY=TU;BYMONTHDAY=2,3,4,5,6,7,8",
     days((1996, 11, 5), (2000, 11, 7), (2004, 11, 2)), False),
    ("third Tuesday, Wednesday or Thursday, 3 times", "1997-09-04T09:00",
     "FREQ=MONTHLY;COUNT=3;BYDAY=TU,WE,TH;BYSETPOS=3",
     days((1997, 9, 4), (1997, 10, 7), (1997, 11, 6)), True),
    ("second-to-last weekday", "1997-09-29T09:00", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-2",
     days((1997, 9, 29), (1997, 10, 30), (1997, 11, 27), (1997, 12, 30), (1998, 1, 29), (1998, 2, 26),
          (1998, 3, 30)), False),
    ("every 15 minutes, 6 times", SEP_2_1997, "FREQ=MINUTELY;INTERVAL=15;COUNT=6",
     [f"1997-09-02T{h:02d}:{m:02d}:00" for h, m in ((9, 0), (9, 15), (9, 30), (9, 45), (10, 0), (10, 15))], True),
    ("every hour and a half, 4 times", SEP_2_1997, "FREQ=MINUTELY;INTERVAL=90;COUNT=4",
     [f"1997-09-02T{t}:00" for t in ("09:00", "10:30", "12:00", "13:30")], True),
    ("every 20 minutes from 9:00 to 16:40", SEP_2_1997, "FREQ=DAILY;BYHOUR=9,10,11,12,13,14,15,16;BYMINUTE=0,20,40",
     [f"1997-09-0{d}T{h:02d}:{m:02d}:00" for d in (2, 3) for h in range(9, 17) for m in (0, 20, 40)], False),
    ("WKST=MO", "1997-08-05T09:00", "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO",
     days((1997, 8, 5), (1997, 8, 10), (1997, 8, 19), (1997, 8, 24)), True),
    ("WKST=SU", "1997-08-05T09:00", "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU",
     days((1997, 8, 5), (1997, 8, 17), (1997, 8, 19), (1997, 8, 31)), True),
    ("invalid dates are skipped", "2007-01-15T09:00", "FREQ=MONTHLY;BYMONTHDAY=15,30;COUNT=5",
     days((2007, 1, 15), (2007, 1, 30), (2007, 2, 15), (2007, 3, 15), (2007, 3, 30)), True),
]  # fmt: skip


@pytest.fixture
async def recurrence(
    kit_settings: Settings,
) -> AsyncIterator[tuple[recurrence_pb2_grpc.RecurrenceServiceStub, list[tuple[str, str]]]]:
    async with (
        running_host(kit_settings, [recurrence_unit]) as host,
        grpc.aio.insecure_channel(host.address) as channel,
    ):
        yield recurrence_pb2_grpc.RecurrenceServiceStub(channel), bearer(kit_settings, "alice")


async def test_rfc5545_examples(
    recurrence: tuple[recurrence_pb2_grpc.RecurrenceServiceStub, list[tuple[str, str]]],
) -> None:
    stub, md = recurrence
    failures = []
    for name, start, rule, expected, bounded in CASES:
        request = recurrence_pb2.PreviewOccurrencesRequest(
            rrule=rule,
            start=common_pb2.ZonedDateTime(local_time=start, time_zone=NY),
            count=len(expected) + 1 if bounded else len(expected),
        )
        response = await stub.PreviewOccurrences(request, metadata=md)
        got = [o.time.local_time for o in response.occurrences]
        if got != expected or (bounded and not response.rule_ended):
            failures.append(f"{name}: expected {expected[:6]}..., got {got[:6]}... (ended={response.rule_ended})")
        assert [o.index for o in response.occurrences] == list(range(1, len(got) + 1))
    assert failures == []


async def test_instants_follow_the_zone(
    recurrence: tuple[recurrence_pb2_grpc.RecurrenceServiceStub, list[tuple[str, str]]],
) -> None:
    stub, md = recurrence
    request = recurrence_pb2.PreviewOccurrencesRequest(
        rrule="FREQ=WEEKLY;COUNT=10", start=common_pb2.ZonedDateTime(local_time=SEP_2_1997, time_zone=NY), count=10
    )
    response = await stub.PreviewOccurrences(request, metadata=md)
    instants = [o.time.instant.ToJsonString() for o in response.occurrences]
    assert instants[0] == "1997-09-02T13:00:00Z"  # EDT
    assert instants[-1] == "1997-11-04T14:00:00Z"  # EST: same 09:00 on the wall
    assert datetime.fromisoformat(instants[-1].replace("Z", "+00:00")).hour == 14
