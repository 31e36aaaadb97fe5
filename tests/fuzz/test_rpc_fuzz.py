"""Every RPC the embedded host serves, fed generated requests: bad input is a clear status, never INTERNAL or UNKNOWN.

The RPCs are found from the descriptors of the services the installed units
serve, and requests are generated from their message descriptors (strings with
NUL, odd unicode, huge and empty values, integers at the edges, timestamps and
durations at and beyond their limits, unknown enum numbers, nested and repeated
fields, random field masks, ids that look valid, rules built from random parts),
plus raw frames that are not valid protobuf or carry invalid UTF-8. After each
RPC's examples the server must still answer a health check within a second.

Bounded and repeatable: TODO_FUZZ_EXAMPLES examples per RPC (300 by default;
the whole file takes well under a minute), derandomized; set TODO_FUZZ_SEED to
explore other examples, and TODO_FUZZ_EXAMPLES to run more.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from todo_kit.auth import issue_token, signing_key_for
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost, installed_units

NOW = int(datetime.now(UTC).timestamp())  # fixed for the run: generation must not depend on the clock
EXAMPLES = int(os.environ.get("TODO_FUZZ_EXAMPLES", "300"))
SEED = os.environ.get("TODO_FUZZ_SEED", "")
CALL_TIMEOUT = 20.0
"""Longer than any of these calls needs even on a loaded machine; the server's own default deadline is 30 s, so a call
the client gives up on first is one that froze the server (CPU-bound work on its event loop)."""
FAILING = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)

TIMESTAMP_MIN = -62_135_596_800  # 0001-01-01T00:00:00Z
TIMESTAMP_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z
DURATION_MAX = 315_576_000_000  # 10,000 years
TIMESTAMP_EDGES = [TIMESTAMP_MIN, TIMESTAMP_MIN - 1, TIMESTAMP_MAX, TIMESTAMP_MAX + 1, 0, -1, -(2**63), 2**63 - 1]
NANOS_EDGES = [0, 1, 999_999_999, 10**9, -1, -999_999_999, -(2**31), 2**31 - 1]
DURATION_EDGES = [0, 1, 59, 60, 3600, 86400, 366 * 86400, 366 * 86400 + 1, -1, DURATION_MAX, DURATION_MAX + 1,
                  -DURATION_MAX, -DURATION_MAX - 1, 2**63 - 1, -(2**63)]  # fmt: skip
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata",
         "Etc/GMT+12", "Etc/GMT-14", "Australia/Lord_Howe"]  # fmt: skip
ODD_ZONES = ["localtime", "Factory", "posixrules", "posix/Europe/Berlin", "right/UTC", "../../etc/passwd",
             "/etc/localtime", "Europe/Nowhere", "europe/berlin", "", "UTC\x00", "Europe/Berlin\n"]  # fmt: skip
GOOD_RULES = ["FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,WE", "FREQ=MONTHLY;BYMONTHDAY=1", "FREQ=MONTHLY;BYDAY=-1FR;COUNT=4",
              "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "FREQ=HOURLY;INTERVAL=6",
              "FREQ=DAILY;UNTIL=20300101T000000Z"]  # fmt: skip
RULE_PARTS = {
    "FREQ": ["YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY", "FORTNIGHTLY", ""],
    "INTERVAL": ["1", "2", "0", "-1", "1000000", "99999999999999999999", "x"],
    "COUNT": ["1", "3", "0", "-1", "100000", "99999999999999999999"],
    "UNTIL": ["20261231T000000Z", "20261231", "99991231T235959Z", "00010101T000000Z", "2026", "20261301T000000Z"],
    "BYDAY": ["MO", "-1FR", "+99MO", "53MO", "-53SU", "+1TU,2WE", "XX", "MO,MO"],
    "BYMONTHDAY": ["1", "-1", "31", "30", "0", "32", "-32", "1,15"],
    "BYMONTH": ["1", "2", "12", "0", "13", "2,3"],
    "BYYEARDAY": ["1", "-1", "366", "0", "367"],
    "BYWEEKNO": ["1", "-1", "53", "0", "54"],
    "BYHOUR": ["0", "9", "23", "24", "-1"],
    "BYMINUTE": ["0", "59", "60"],
    "BYSECOND": ["0", "59", "60", "61"],
    "BYSETPOS": ["1", "-1", "366", "0", "367"],
    "WKST": ["MO", "SU", "XX"],
    "X-NAME": ["1"],
}
ODD_IDS = ["x/1/snooze", "../x", "r1", "-", "a" * 65, "a" * 100_000, "00000000-0000-0000-0000-000000000000"]
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80", b"\xc0\xaf"]
ODD_TEXT = ["", " ", "\x00", "a\x00b", "alice\n", "\t\r\n", "\u202e\u0000", "😀" * 10, "'; DROP TABLE tasks; --",
            "%s%n{0}", "x" * 100_000, "é" * 5_000, "\ufeff", "\U0010ffff"]  # fmt: skip


# --- the host, in a thread of its own (hypothesis drives calls synchronously) -----------------------------------


class HostThread:
    """An EmbeddedHost running on an event loop in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-host", daemon=True)
        self.host = EmbeddedHost(settings, installed_units())

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.host.start(), self.loop).result(timeout=180)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.host.stop(grace=0.5), self.loop).result(timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


class Target:
    """What the tests call: the host, a channel, alice's token and ids of real objects."""

    def __init__(self, host: HostThread, channel: grpc.Channel, metadata: list[tuple[str, str]]) -> None:
        self.host = host
        self.channel = channel
        self.metadata = metadata
        self.known_ids: list[str] = []

    def call(self, method: MethodDescriptor, payload: bytes) -> tuple[grpc.StatusCode, str]:
        """Sends payload as the request of method; returns the status code and message."""
        path = f"/{method.containing_service.full_name}/{method.name}"
        try:
            if method.server_streaming:
                # A stream may stay open for as long as the client wants (a live feed): its first
                # message, or its end, is the answer.
                stream = self.channel.unary_stream(path)(payload, metadata=self.metadata, timeout=CALL_TIMEOUT)
                next(stream, None)
                stream.cancel()
            else:
                self.channel.unary_unary(path)(payload, metadata=self.metadata, timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            code, details = error.code(), error.details() or ""
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and "default deadline" not in details:
                return grpc.StatusCode.UNKNOWN, f"no answer within {CALL_TIMEOUT:g} s: the server froze"
            return code, details
        return grpc.StatusCode.OK, ""

    def check_healthy(self) -> None:
        """The server answers a health check within a second, and is SERVING."""
        reply = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def served_methods() -> list[MethodDescriptor]:
    """Every RPC of every service the installed units serve, from the descriptor pool."""
    pool = descriptor_pool.Default()
    return [
        method
        for unit in installed_units()
        for name in unit.service_names
        for method in pool.FindServiceByName(name).methods
        if not method.client_streaming  # the kit refuses client streaming; see the kit's server tests
    ]


METHODS = served_methods()


@pytest.fixture(scope="module")
def target(postgres_url_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data: Path = tmp_path_factory.mktemp("fuzz") / "data"
    settings = Settings.from_env(
        {
            "TODO_DATA_DIR": str(data),
            "TODO_DATABASE_URL": postgres_url_template,
            "TODO_DATABASE_PREFIX": f"fz{os.getpid()}_",
            "TODO_GRPC_PORT": "0",
            "TODO_LOG_LEVEL": "WARNING",
        }
    )
    host = HostThread(settings)
    host.start()
    try:
        metadata = [("authorization", f"Bearer {issue_token(signing_key_for(settings), 'alice')}")]
        with grpc.insecure_channel(host.host.address) as channel:
            running = Target(host, channel, metadata)
            running.known_ids = seed_objects(running)
            yield running
    finally:
        host.stop()


def seed_objects(target: Target) -> list[str]:
    """Creates a few of alice's objects (a recurring task with a reminder that has fired) and returns their ids."""
    from todo_contracts.common.v1 import common_pb2
    from todo_contracts.reminder.v1 import reminder_pb2
    from todo_contracts.task.v1 import task_pb2, task_service_pb2

    past = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    due = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    task = task_pb2.Task(
        title="Pay rent",
        due=common_pb2.ZonedDateTime(local_time=due, time_zone="UTC"),
        reminders=[task_pb2.ReminderRule(rule_id="r1", at=common_pb2.ZonedDateTime(local_time=past, time_zone="UTC"))],
        recurrence=task_pb2.Recurrence(rrule="FREQ=MONTHLY;BYMONTHDAY=1"),
    )
    create = target.channel.unary_unary(
        "/todo.task.v1.TaskService/CreateTask",
        request_serializer=task_service_pb2.CreateTaskRequest.SerializeToString,
        response_deserializer=task_service_pb2.CreateTaskResponse.FromString,
    )
    created = create(task_service_pb2.CreateTaskRequest(task=task), metadata=target.metadata).task
    ids = [created.task_id, created.recurrence.series_id, "r1"]
    list_reminders = target.channel.unary_unary(
        "/todo.reminder.v1.ReminderService/ListReminders",
        request_serializer=reminder_pb2.ListRemindersRequest.SerializeToString,
        response_deserializer=reminder_pb2.ListRemindersResponse.FromString,
    )
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while datetime.now(UTC) < deadline:  # the past reminder fires at once; snoozing needs a fired one
        found = list_reminders(reminder_pb2.ListRemindersRequest(task_id=created.task_id), metadata=target.metadata)
        if any(r.state == reminder_pb2.REMINDER_STATE_FIRED for r in found.reminders):
            ids += [r.reminder_id for r in found.reminders]
            break
    return ids


# --- strategies from descriptors ------------------------------------------------------------------------------
#
# Each example draws how wild it is (the share of fields given awkward values); the other fields get plausible
# values, so that one bad field at a time reaches deep into a handler instead of being refused with the rest.


@dataclass(frozen=True)
class Draws:
    """What every strategy of one example needs: real ids, and how often a field is awkward (percent)."""

    known: list[str]
    wild: int


def text() -> st.SearchStrategy[str]:
    """Any text a client can send (valid UTF-8), weighted towards the awkward."""
    return st.one_of(
        st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40),
        st.sampled_from(ODD_TEXT),
        st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=3).map(lambda s: s * 2000),
    )


def words() -> st.SearchStrategy[str]:
    return st.text(alphabet="abcdefghijklmnopqrstuvwxyz -_", min_size=1, max_size=20)


def ids(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), st.uuids().map(str))


def odd_ids(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.uuids().map(lambda u: u.hex),
        st.uuids().map(lambda u: f"{{{u}}}"),
        st.sampled_from(known).map(lambda i: f"{i}/snooze/1"),
        st.sampled_from(known).map(lambda i: i + "\x00"),
        st.sampled_from(ODD_IDS),
        text(),
    )


@st.composite
def rules(draw: st.DrawFn, wild: bool) -> str:
    if not wild:
        return draw(st.sampled_from(GOOD_RULES))
    names = draw(st.lists(st.sampled_from(sorted(RULE_PARTS)), max_size=5, unique=True))
    rule = ";".join(f"{name}={draw(st.sampled_from(RULE_PARTS[name]))}" for name in names)
    return draw(st.sampled_from([rule, rule.lower(), f"RRULE:{rule}", f" {rule} ", rule + ";", rule + "\n"]))


@st.composite
def local_times(draw: st.DrawFn, wild: bool) -> str:
    if not wild:
        moment = datetime.fromtimestamp(NOW, UTC) + timedelta(minutes=draw(st.integers(-60 * 24 * 400, 60 * 24 * 400)))
        return moment.strftime(draw(st.sampled_from(["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])))
    year = draw(st.sampled_from([1, 999, 1000, 1969, 1970, 2026, 2038, 9998, 9999]))
    month = draw(st.sampled_from([1, 2, 3, 10, 12, 13, 0]))
    day = draw(st.sampled_from([1, 28, 29, 30, 31, 32, 0]))
    hour = draw(st.sampled_from([0, 2, 9, 23, 24]))
    minute = draw(st.sampled_from([0, 30, 59, 60]))
    second = draw(st.sampled_from(["", ":00", ":59", ":60", ".5"]))
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}{second}"


def page_tokens() -> st.SearchStrategy[str]:
    payloads = st.one_of(
        st.builds(lambda o, f: json.dumps({"o": o, "f": f}), st.integers(-(2**70), 2**70), text()),
        st.sampled_from(["[" * 100_000, '{"o":' * 50_000, "null", "1e999", '{"o": 1.5, "f": "x"}', "\xff"]),
    )
    return st.one_of(payloads.map(lambda p: base64.urlsafe_b64encode(p.encode()).decode().rstrip("=")), text())


def strings_for(field: FieldDescriptor, draws: Draws, wild: bool) -> st.SearchStrategy[str]:
    name = field.name
    if name.endswith("_id"):
        return st.one_of(odd_ids(draws.known), text()) if wild else ids(draws.known)
    if name == "rrule":
        return st.one_of(rules(wild), text()) if wild else rules(wild)
    if name == "local_time":
        return st.one_of(local_times(wild), text()) if wild else local_times(wild)
    if name == "time_zone":
        return st.one_of(st.sampled_from(ODD_ZONES), text()) if wild else st.sampled_from(ZONES)
    if name == "page_token":
        return page_tokens() if wild else st.just("")
    if name.startswith("tags"):
        return st.one_of(st.sampled_from(["-", "x" * 65, "a b", "Finance "]), text()) if wild else words()
    return text() if wild else words()


def integers(field: FieldDescriptor, wild: bool) -> st.SearchStrategy[int]:
    if not wild:
        return st.integers(0, 20)
    lo, hi = INT_RANGES[field.type]
    return st.one_of(st.sampled_from([lo, hi, 0, 1000, 1001, 10_000_000, max(lo, -1)]), st.integers(lo, hi))


def enums(field: FieldDescriptor, wild: bool) -> st.SearchStrategy[int]:
    numbers = [value.number for value in field.enum_type.values]
    return st.integers(-(2**31), 2**31 - 1) if wild else st.sampled_from(numbers)


@st.composite
def timestamps(draw: st.DrawFn, cls: Any, wild: bool) -> Message:
    now = NOW
    seconds = draw(
        st.one_of(st.sampled_from(TIMESTAMP_EDGES), st.integers(TIMESTAMP_MIN - 10**9, TIMESTAMP_MAX + 10**9))
        if wild
        else st.integers(now - 86400 * 30, now + 86400 * 400)
    )
    nanos = draw(st.sampled_from(NANOS_EDGES) if wild else st.integers(0, 999_999_999))
    message: Message = cls(seconds=seconds, nanos=nanos)
    return message


@st.composite
def durations(draw: st.DrawFn, cls: Any, wild: bool) -> Message:
    seconds = draw(st.sampled_from(DURATION_EDGES) if wild else st.integers(0, 86400 * 7))
    nanos = draw(st.sampled_from(NANOS_EDGES) if wild else st.just(0))
    if wild and draw(st.booleans()):
        nanos = -abs(nanos)
    message: Message = cls(seconds=seconds, nanos=nanos)
    return message


def field_paths(desc: Descriptor, depth: int = 0) -> list[str]:
    paths = []
    for field in desc.fields:
        paths.append(field.name)
        if field.message_type is not None and depth < 2 and not field.message_type.full_name.startswith("google."):
            paths += [f"{field.name}.{sub}" for sub in field_paths(field.message_type, depth + 1)]
    return paths


@st.composite
def requests(draw: st.DrawFn, desc: Descriptor, known: list[str]) -> Message:
    """A request of type desc: plausible values, with a drawn share of awkward ones."""
    wild = draw(st.sampled_from([0, 5, 10, 20, 50, 100]))
    return draw(messages(desc, Draws(known, wild)))


@st.composite
def messages(draw: st.DrawFn, desc: Descriptor, draws: Draws, depth: int = 0) -> Message:
    """A message of type desc with a random choice of its fields set."""
    cls: Any = message_factory.GetMessageClass(desc)
    if desc.full_name == "google.protobuf.Timestamp":
        return draw(timestamps(cls, draw(st.integers(0, 99)) < draws.wild))
    if desc.full_name == "google.protobuf.Duration":
        return draw(durations(cls, draw(st.integers(0, 99)) < draws.wild))
    message = cls()
    chosen = {oneof.full_name: draw(st.sampled_from([None, *oneof.fields])) for oneof in desc.oneofs}
    for field in desc.fields:
        oneof = field.containing_oneof
        if oneof is not None:
            if chosen[oneof.full_name] is not field:
                continue
        elif not draw(st.booleans()):
            continue
        if field.message_type is not None and depth >= 4:
            continue
        wild = draw(st.integers(0, 99)) < draws.wild
        if field.message_type is not None and field.message_type.full_name == "google.protobuf.FieldMask":
            # Paths into the request's other message fields (UpdateTask's task), real or made up.
            made_up = ["*", "", "task.due.instant", "task.user_id"]
            paths = st.one_of(st.sampled_from(made_up), text()) if wild else st.sampled_from(field_paths(desc))
            getattr(message, field.name).paths.extend(draw(st.lists(paths, max_size=5)))
            continue
        value = values_for(field, draws, depth, wild)
        if field.is_repeated:
            items = draw(st.lists(value, max_size=25 if wild else 3))
            if field.message_type is not None:
                for item in items:
                    getattr(message, field.name).add().CopyFrom(item)
            else:
                getattr(message, field.name).extend(items)
        elif field.message_type is not None:
            getattr(message, field.name).CopyFrom(draw(value))
        else:
            setattr(message, field.name, draw(value))
    return message  # type: ignore[no-any-return]


def values_for(field: FieldDescriptor, draws: Draws, depth: int, wild: bool) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return messages(field.message_type, draws, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        return strings_for(field, draws, wild)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enums(field, wild)
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    return integers(field, wild)


# --- raw frames: not protobuf, or protobuf with invalid UTF-8 in a string field ---------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def string_paths(desc: Descriptor, depth: int = 0) -> list[list[FieldDescriptor]]:
    """Paths from desc to each string field it holds (through nested messages)."""
    found: list[list[FieldDescriptor]] = []
    for field in desc.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            found.append([field])
        elif field.message_type is not None and depth < 3:
            found += [[field, *rest] for rest in string_paths(field.message_type, depth + 1)]
    return found


@st.composite
def raw_frames(draw: st.DrawFn, desc: Descriptor) -> tuple[str, bytes]:
    """(kind, frame): "utf8" frames hold invalid UTF-8 in a string field; "binary" and "truncated" are garbage."""
    bad_utf8 = draw(st.sampled_from(BAD_UTF8))
    paths = string_paths(desc)
    kind = draw(st.sampled_from(["utf8", "utf8", "utf8", "binary", "truncated"] if paths else ["binary", "truncated"]))
    if kind == "binary":
        return kind, draw(st.binary(max_size=200))
    if kind == "truncated":
        return kind, length_delimited(draw(st.integers(1, 20)), b"abc")[:-1]
    path = draw(st.sampled_from(paths))
    frame = length_delimited(path[-1].number, bad_utf8)
    for field in reversed(path[:-1]):
        frame = length_delimited(field.number, frame)
    return kind, frame


# --- the tests ------------------------------------------------------------------------------------------------


def fuzzed(test: Callable[..., None]) -> Callable[..., None]:
    """Bounded and repeatable; no shrinking: a request that froze the server would make every later one look bad,
    and the failure message shows the request as sent."""
    configured = settings(
        max_examples=EXAMPLES,
        derandomize=not SEED,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )(test)
    return seed(int(SEED))(configured) if SEED else configured


@pytest.mark.parametrize("method", METHODS, ids=[m.full_name for m in METHODS])
def test_generated_requests_never_get_internal_or_unknown(target: Target, method: MethodDescriptor) -> None:
    @fuzzed
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        request = data.draw(requests(method.input_type, target.known_ids), label="request")
        code, details = target.call(method, request.SerializeToString())
        shown = text_format.MessageToString(request, as_one_line=True)[:3000]
        assert code not in FAILING, f"{method.full_name} answered {code.name} ({details[:500]}) to {shown}"

    run()
    target.check_healthy()


@pytest.mark.parametrize("method", METHODS, ids=[m.full_name for m in METHODS])
def test_undecodable_requests_get_invalid_argument(target: Target, method: MethodDescriptor) -> None:
    @fuzzed
    @given(raw=raw_frames(method.input_type))
    def run(raw: tuple[str, bytes]) -> None:
        kind, frame = raw
        code, details = target.call(method, frame)
        assert code not in FAILING, f"{method.full_name} answered {code.name} ({details[:500]}) to {frame!r}"
        if kind != "binary":  # binary garbage may happen to be a valid message
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{method.full_name} answered {code.name} to {frame!r}"

    run()
    target.check_healthy()


def test_every_service_of_the_installed_units_is_fuzzed() -> None:
    services = {m.containing_service.full_name for m in METHODS}
    assert {
        "todo.task.v1.TaskService",
        "todo.reminder.v1.ReminderService",
        "todo.recurrence.v1.RecurrenceService",
        "todo.notify.v1.NotificationService",
    } <= services
