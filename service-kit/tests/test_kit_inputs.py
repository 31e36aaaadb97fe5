"""Input hygiene: NUL characters, Timestamps and Durations out of range, zones that are no place, years out of range."""

from __future__ import annotations

from datetime import datetime

import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from todo_contracts.common.v1 import common_pb2
from todo_contracts.task.v1 import task_pb2, task_service_pb2
from todo_kit import zoned
from todo_kit.errors import InvalidArgument, shown
from todo_kit.inputs import duration_problem, request_problems, text_problem, timestamp_problem


def test_request_problems_name_every_nul_and_out_of_range_time_by_its_path() -> None:
    request = task_service_pb2.UpdateTaskRequest(
        task=task_pb2.Task(
            title="a\x00b",
            tags=["ok", "b\x00"],
            reminders=[
                task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=60)),
                task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=60, nanos=2_000_000_000)),
            ],
            create_time=timestamp_pb2.Timestamp(seconds=253_402_300_800),
        ),
        update_mask=field_mask_pb2.FieldMask(paths=["title\x00"]),
    )
    assert dict(request_problems(request)) == {
        "task.title": "must not contain NUL characters",
        "task.tags[1]": "must not contain NUL characters",
        "task.reminders[1].before_due": "nanos must be between -999999999 and 999999999",
        "task.create_time": "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        "update_mask.paths[0]": "must not contain NUL characters",
    }
    assert request_problems(task_service_pb2.CreateTaskRequest(task=task_pb2.Task(title="Pay rent"))) == []


def test_request_problems_are_bounded() -> None:
    request = task_service_pb2.ListTasksRequest(tags_any=["\x00"] * 500)
    assert len(request_problems(request)) == 20


@pytest.mark.parametrize(
    ("seconds", "nanos", "valid"),
    [
        (-62_135_596_800, 0, True),
        (253_402_300_799, 999_999_999, True),
        (-62_135_596_801, 0, False),
        (253_402_300_800, 0, False),
        (0, -1, False),
        (0, 1_000_000_000, False),
    ],
)
def test_timestamps_outside_what_protobuf_and_datetime_hold_are_problems(seconds: int, nanos: int, valid: bool) -> None:
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    assert (timestamp_problem(stamp) is None) == valid
    if valid:
        stamp.ToDatetime()  # what a handler does next must work


@pytest.mark.parametrize(
    ("seconds", "nanos", "valid"),
    [
        (315_576_000_000, 999_999_999, True),
        (-315_576_000_000, -999_999_999, True),
        (315_576_000_001, 0, False),
        (60, 2_000_000_000, False),
        (60, -1, False),
        (-60, 1, False),
    ],
)
def test_durations_out_of_range_or_of_mixed_sign_are_problems(seconds: int, nanos: int, valid: bool) -> None:
    assert (duration_problem(duration_pb2.Duration(seconds=seconds, nanos=nanos)) is None) == valid


def test_text_problems() -> None:
    assert text_problem("Pay rent", 10) is None
    assert text_problem("a\x00", 10) == "must not contain NUL characters"
    assert text_problem("x" * 11, 10) == "at most 10 characters, got 11"
    assert text_problem("  ", 10, required=True) == "must not be empty"


@pytest.mark.parametrize("name", ["localtime", "Factory", "posixrules", "posix/Europe/Berlin", "right/UTC", "UTC\n"])
def test_zones_that_are_no_place_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        zoned.zone_named(name)


@pytest.mark.parametrize("name", ["Europe/Berlin", "UTC", "America/New_York", "Etc/GMT+12"])
def test_real_zones_are_accepted(name: str) -> None:
    assert zoned.zone_named(name).key == name


@pytest.mark.parametrize(
    ("local", "zone"),
    [
        ("9999-12-31T23:00", "Pacific/Pago_Pago"),  # UTC-11: the instant is in the year 10000
        ("1000-01-01T00:30", "Asia/Tokyo"),  # UTC+9:19 then: the instant is in the year 999
        ("0999-12-31T00:00", "UTC"),
        ("0001-01-01T00:00", "Europe/Berlin"),
    ],
)
def test_local_times_whose_year_leaves_1000_to_9999_are_value_errors(local: str, zone: str) -> None:
    with pytest.raises(ValueError, match="year"):
        zoned.from_proto(common_pb2.ZonedDateTime(local_time=local, time_zone=zone))


def test_the_edges_of_the_year_range_resolve() -> None:
    last = zoned.resolve(datetime(9999, 12, 31, 9, 0), "Europe/Berlin")
    assert last.instant.year == 9999
    first = zoned.resolve(datetime(1000, 1, 2, 0, 0), "UTC")
    assert first.instant.year == 1000


def test_huge_values_are_cut_in_error_messages() -> None:
    assert len(shown("x" * 100_000)) < 120
    assert shown("r1") == "'r1'"
    error = InvalidArgument([("task_id", "y" * 100_000)] * 100)
    assert len(error.violations) == 20 and len(error.message) <= 2000
