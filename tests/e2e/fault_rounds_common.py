"""What both variants of the randomized fault rounds share: the load, the resolution of unknown outcomes, the checks
that do not depend on the runtime, the round loop and the report.

The embedded variant (fault_rounds.py, `make faults`) kills the one host process; the distributed one
(fault_rounds_distributed.py, `make faults-distributed`) kills service processes, the Kafka broker or the
PostgreSQL server of the distributed stack. Each supplies how to start the system, inject a fault, recover, tell
when it is quiet, and read the runtime's own view (event log or topics, inboxes, positions, dead letters); the load,
the resolution, the checks of tasks, series and reminders and the loop are here, written once.

What "acknowledged" means: a command is acknowledged when its call returned OK. A call that failed because
something died may or may not have taken effect; the client resolves it after the recovery the way a real client
would, with a command that cannot take effect twice:
- CreateTask: sent again with the same client_request_id; the task service returns the task of the first attempt
  if it had committed;
- CompleteTask: sent again; completing a completed task changes nothing;
- UpdateTask (sent with expected_version): not idempotent by itself, so the client reads the task first; at the
  version it was sent against, it sends the update again with the same expected_version; one version further with
  the update's values, the update had taken effect.
Every command ends acknowledged, so each must have taken effect exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
from google.protobuf import duration_pb2, field_mask_pb2, json_format
from host_process import utc_in

from todo_contracts import envelope
from todo_contracts.common.v1 import common_pb2
from todo_contracts.reminder.v1 import events_pb2 as reminder_events
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts

USERS = ("alice", "bob")
"""The users of the embedded variant (one run per data folder); the distributed one adds a run id."""
LATE_AFTER_SECONDS = 10
CALL_TIMEOUT = 10.0
SETTLE_GRACE = timedelta(seconds=1)
"""A reminder this long past its time must have fired once the host is quiet (its job fires within milliseconds)."""

TASK_TOPIC = "task-events"
REMINDER_TOPIC = "reminder-events"


# Errors that say for sure a command did not take effect: the load sends only valid commands, so any is a finding.
DEFINITE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS,
}


@dataclass(frozen=True)
class RoundsConfig:
    """How a run goes: rounds, seed, clients, and the time windows."""

    rounds: int = 100
    seed: int = 1
    workers: int = 6
    load_seconds: tuple[float, float] = (1.0, 4.0)
    reminder_ahead_seconds: tuple[float, float] = (2.0, 9.0)
    round_timeout: float = 300.0
    quiet_timeout: float = 120.0


# --- what the clients did ------------------------------------------------------


@dataclass
class Pending:
    """A command whose call failed: it may or may not have taken effect."""

    kind: str
    request: Any
    expected_version: int = 0


@dataclass
class TaskRecord:
    """A task the clients created, as their acknowledged commands left it."""

    key: str
    user: str
    kind: str  # "plain", "reminders" or "recurring"
    request: ts.CreateTaskRequest
    task_id: str = ""
    version: int = 0
    title: str = ""
    due_local: str = ""
    pending: Pending | None = None
    busy: bool = True


@dataclass
class SeriesRecord:
    """A recurring series: its open occurrence and how many completions were acknowledged."""

    series_id: str
    user: str
    key: str
    current_task_id: str
    current_index: int = 1
    completions: int = 0
    pending: Pending | None = None
    busy: bool = False


class HostGone(Exception):
    """A call failed without an answer: the host is down; the client stops until it is back."""


@dataclass
class Ledger:
    """Everything the clients sent and what was acknowledged, across rounds."""

    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    series: dict[str, SeriesRecord] = field(default_factory=dict)
    acknowledged: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    had_taken_effect: Counter[str] = field(default_factory=Counter)
    applied_by_retry: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    updatable: list[TaskRecord] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_key(self) -> str:
        return f"fr{next(self._numbers)}"

    def pending_tasks(self) -> list[TaskRecord]:
        return [r for r in self.tasks.values() if r.pending is not None]

    def pending_series(self) -> list[SeriesRecord]:
        return [s for s in self.series.values() if s.pending is not None]

    def created(self, record: TaskRecord, task: task_pb2.Task) -> None:
        record.task_id = task.task_id
        record.version = task.version
        record.title = task.title
        record.due_local = task.due.local_time if task.HasField("due") else ""
        record.pending = None
        record.busy = False
        self.acknowledged[f"create ({record.kind})"] += 1
        if record.kind == "recurring":
            sid = task.recurrence.series_id
            self.series[sid] = SeriesRecord(sid, record.user, record.key, task.task_id)
        else:
            self.updatable.append(record)

    def updated(self, record: TaskRecord, kind: str, task: task_pb2.Task) -> None:
        record.version = task.version
        record.title = task.title
        record.due_local = task.due.local_time if task.HasField("due") else ""
        record.pending = None
        record.busy = False
        self.acknowledged[kind] += 1

    def completed(self, series: SeriesRecord) -> None:
        series.completions += 1
        series.current_task_id = ""  # the next occurrence is on its way through the events
        series.current_index += 1
        series.pending = None
        series.busy = False
        self.acknowledged["complete (recurring occurrence)"] += 1


# --- the load ----------------------------------------------------------------------


class Clients:
    """Concurrent clients sending a random mix of commands until the host dies under them."""

    def __init__(
        self, ledger: Ledger, stub: task_service_pb2_grpc.TaskServiceStub, tokens: dict[str, list[tuple[str, str]]],
        rng: random.Random, config: RoundsConfig,
    ) -> None:  # fmt: skip
        self.ledger = ledger
        self.stub = stub
        self.tokens = tokens
        self.rng = rng
        self.config = config
        self.users = sorted(tokens)
        self.stopped = asyncio.Event()
        self.actions: list[tuple[Callable[[], Awaitable[None]], int]] = [
            (self.create_plain, 1),
            (self.create_with_reminders, 4),
            (self.create_recurring, 1),
            (self.update_title, 2),
            (self.update_due, 3),
            (self.complete_occurrence, 4),
        ]

    async def run(self) -> None:
        """One client: commands one after the other until the host is gone or the load ends."""
        actions, weights = zip(*self.actions, strict=True)
        while not self.stopped.is_set():
            action = self.rng.choices(actions, weights)[0]
            try:
                await action()
            except HostGone:
                return
            await asyncio.sleep(self.rng.uniform(0.0, 0.01))

    async def _call(self, method: Any, request: Any, user: str, what: str) -> Any:
        try:
            return await method(request, metadata=self.tokens[user], timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in DEFINITE:
                self.ledger.problems.append(f"{what} rejected: {exc.code().name} {exc.details()}")
                return None
            raise HostGone from exc

    # creates

    async def _create(self, kind: str, task: task_pb2.Task) -> None:
        key = self.ledger.new_key()
        task.title = f"{key}: {task.title}"
        user = self.rng.choice(self.users)
        request = ts.CreateTaskRequest(task=task, client_request_id=f"{key}-request")
        record = TaskRecord(key, user, kind, request)
        self.ledger.tasks[key] = record
        try:
            reply = await self._call(self.stub.CreateTask, request, user, f"create {key}")
        except HostGone:
            record.pending = Pending("create", request)
            self.ledger.unknown["create"] += 1
            raise
        if reply is not None:
            self.ledger.created(record, reply.task)

    async def create_plain(self) -> None:
        await self._create("plain", task_pb2.Task(title="plain task", priority=task_pb2.PRIORITY_LOW, tags=["load"]))

    def _reminder_rules(self) -> list[task_pb2.ReminderRule]:
        offsets = self.rng.sample([0, 1, 2, 3], self.rng.randint(1, 2))
        rules = [task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=s)) for s in offsets]
        if self.rng.random() < 0.3:
            ahead = timedelta(seconds=self.rng.uniform(*self.config.reminder_ahead_seconds))
            rules.append(task_pb2.ReminderRule(at=utc_in(ahead)))
        return rules

    async def create_with_reminders(self) -> None:
        ahead = timedelta(seconds=self.rng.uniform(*self.config.reminder_ahead_seconds) + 3)
        task = task_pb2.Task(title="reminded task", due=utc_in(ahead), reminders=self._reminder_rules())
        await self._create("reminders", task)

    async def create_recurring(self) -> None:
        shape = self.rng.random()
        if shape < 0.45:
            due = utc_in(-timedelta(minutes=self.rng.randint(60, 600)))
            recurrence = task_pb2.Recurrence(rrule="FREQ=MINUTELY")
        elif shape < 0.8:
            day = (datetime.now(UTC) - timedelta(days=self.rng.randint(5, 300))).strftime("%Y-%m-%d")
            due = common_pb2.ZonedDateTime(local_time=f"{day}T09:00:00", time_zone="Europe/Berlin")
            recurrence = task_pb2.Recurrence(rrule="FREQ=DAILY")
        else:
            due = utc_in(-timedelta(minutes=self.rng.randint(1, 30)))
            recurrence = task_pb2.Recurrence(
                rrule="FREQ=MINUTELY;INTERVAL=2", repeat_from=task_pb2.REPEAT_FROM_COMPLETION
            )
        task = task_pb2.Task(title="recurring task", due=due, recurrence=recurrence)
        if self.rng.random() < 0.3:
            # Every occurrence gets its own reminder; with the due time past, it is due at once.
            task.reminders.append(task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=60)))
        await self._create("recurring", task)

    # updates

    def _pick_updatable(self, kind: str | None = None) -> TaskRecord | None:
        recent = self.ledger.updatable[-200:]
        for _ in range(8):
            if not recent:
                return None
            record = self.rng.choice(recent)
            if not record.busy and (kind is None or record.kind == kind):
                return record
        return None

    async def _update(self, record: TaskRecord, kind: str, patch: task_pb2.Task, path: str) -> None:
        patch.task_id = record.task_id
        request = ts.UpdateTaskRequest(
            task=patch, update_mask=field_mask_pb2.FieldMask(paths=[path]), expected_version=record.version
        )
        record.busy = True
        try:
            reply = await self._call(self.stub.UpdateTask, request, record.user, f"{kind} of {record.key}")
        except HostGone:
            record.pending = Pending(kind, request, record.version)
            self.ledger.unknown["update"] += 1
            raise
        if reply is None:
            record.busy = False
            return
        self.ledger.updated(record, kind, reply.task)

    async def update_title(self) -> None:
        record = self._pick_updatable()
        if record is None:
            return await self.create_plain()
        title = f"{record.key}: renamed {self.rng.randint(1, 10**6)}"
        await self._update(record, "update (title)", task_pb2.Task(title=title), "title")

    async def update_due(self) -> None:
        record = self._pick_updatable("reminders")
        if record is None:
            return await self.create_with_reminders()
        # Moved later or earlier, sometimes into the past: the reminders are planned again either way.
        ahead = timedelta(seconds=self.rng.uniform(-3.0, self.config.reminder_ahead_seconds[1] + 3))
        await self._update(record, "update (due time)", task_pb2.Task(due=utc_in(ahead)), "due")

    # completions

    async def complete_occurrence(self) -> None:
        candidates = [s for s in list(self.ledger.series.values())[-50:] if not s.busy]
        if not candidates:
            return await self.create_recurring()
        series = self.rng.choice(candidates)
        series.busy = True
        try:
            if not series.current_task_id and not await self._find_next(series):
                series.busy = False
                return
            request = ts.CompleteTaskRequest(task_id=series.current_task_id)
            try:
                reply = await self._call(self.stub.CompleteTask, request, series.user, f"complete in {series.key}")
            except HostGone:
                series.pending = Pending("complete", request)
                self.ledger.unknown["complete"] += 1
                raise
        except HostGone:
            if series.pending is None:
                series.busy = False
            raise
        if reply is None:
            series.busy = False
            return
        self.ledger.completed(series)

    async def _find_next(self, series: SeriesRecord) -> bool:
        """Looks for the series' next occurrence (made from the last completion's events); True once it is there."""
        request = ts.ListTasksRequest(series_id=series.series_id, statuses=[task_pb2.TASK_STATUS_OPEN])
        reply = await self._call(self.stub.ListTasks, request, series.user, f"list {series.key}")
        found = [t for t in reply.tasks if t.recurrence.occurrence_index == series.current_index] if reply else []
        if found:
            series.current_task_id = found[0].task_id
        return bool(found)


# --- resolving unknown outcomes after the restart -------------------------------


async def resolve_unknown(ledger: Ledger, stub: task_service_pb2_grpc.TaskServiceStub,
                          tokens: dict[str, list[tuple[str, str]]], restarted: datetime) -> None:  # fmt: skip
    """Finds out what became of every command whose call failed, as described at the top."""

    async def call(method: Any, request: Any, user: str) -> Any:
        return await method(request, metadata=tokens[user], timeout=30, wait_for_ready=True)

    for record in ledger.pending_tasks():
        pending = record.pending
        assert pending is not None
        try:
            if pending.kind == "create":
                reply = await call(stub.CreateTask, pending.request, record.user)
                took = reply.task.create_time.ToDatetime(tzinfo=UTC) < restarted
                (ledger.had_taken_effect if took else ledger.applied_by_retry)["create"] += 1
                ledger.created(record, reply.task)
                continue
            current = (await call(stub.GetTask, ts.GetTaskRequest(task_id=record.task_id), record.user)).task
            if current.version == pending.expected_version + 1 and _has_update(current, pending.request):
                ledger.had_taken_effect["update"] += 1
                ledger.updated(record, pending.kind, current)
            elif current.version == pending.expected_version:
                reply = await call(stub.UpdateTask, pending.request, record.user)
                ledger.applied_by_retry["update"] += 1
                ledger.updated(record, pending.kind, reply.task)
            else:
                ledger.problems.append(
                    f"{pending.kind} of {record.key} sent at version {pending.expected_version}: "
                    f"the task is at version {current.version} with other values"
                )
                record.pending, record.busy = None, False
        except grpc.aio.AioRpcError as exc:
            ledger.problems.append(f"{pending.kind} of {record.key} could not be resolved: {exc.code().name}")
            record.pending, record.busy = None, False
    for series in ledger.pending_series():
        pending = series.pending
        assert pending is not None
        try:
            reply = await call(stub.CompleteTask, pending.request, series.user)
        except grpc.aio.AioRpcError as exc:
            ledger.problems.append(f"complete in {series.key} could not be resolved: {exc.code().name}")
            series.pending, series.busy = None, False
            continue
        if reply.task.status != task_pb2.TASK_STATUS_COMPLETED:
            ledger.problems.append(f"complete in {series.key} retried: the task is still open")
        took = reply.task.update_time.ToDatetime(tzinfo=UTC) < restarted
        (ledger.had_taken_effect if took else ledger.applied_by_retry)["complete"] += 1
        ledger.completed(series)


def _has_update(task: task_pb2.Task, request: ts.UpdateTaskRequest) -> bool:
    [path] = request.update_mask.paths
    if path == "title":
        return task.title == request.task.title
    return bool(task.due.local_time == request.task.due.local_time)


# --- reading the state ------------------------------------------------------------


@dataclass(frozen=True)
class LoggedEvent:
    """What the checks need of one event in the event log."""

    event_id: str
    type: str
    task_id: str = ""
    version: int = 0
    has_rules: bool = False
    recurring: bool = False
    series_id: str = ""
    index: int = 0
    reminder_id: str = ""


def logged_event(event: envelope.DecodedEvent) -> LoggedEvent:
    message = event.message
    if isinstance(message, task_events.OccurrenceRequested):
        return LoggedEvent(event.id, event.type, series_id=message.series_id, index=message.occurrence_index)
    if isinstance(message, reminder_events.ReminderScheduled | reminder_events.ReminderDue
                  | reminder_events.ReminderCancelled):  # fmt: skip
        return LoggedEvent(event.id, event.type, reminder_id=message.reminder.reminder_id)
    task: task_pb2.Task = message.task  # type: ignore[attr-defined]
    rec = task.recurrence
    recurring = bool(task.HasField("recurrence") and rec.series_id and rec.rrule and rec.HasField("series_start"))
    ends_series = isinstance(message, task_events.TaskDeleted) and message.end_series and bool(rec.series_id)
    return LoggedEvent(event.id, event.type, task_id=task.task_id, version=task.version,
                       has_rules=bool(task.reminders), recurring=recurring or ends_series,
                       series_id=rec.series_id)  # fmt: skip


def consumers_of(event: LoggedEvent) -> list[str]:
    """The consumers that act on a task event (and so record its id in their inbox)."""
    name = event.type.rsplit(".", 1)[-1]
    if name == "OccurrenceRequested":
        return ["task_svc"]
    found = []
    if name != "TaskCreated" or event.has_rules:  # a new task without rules has nothing to plan
        found.append("reminder_svc")
    if name in ("TaskCompleted", "TaskDeleted") and event.recurring:
        found.append("recurrence_svc")
    return found


# --- the checks --------------------------------------------------------------------


@dataclass
class Findings:
    """What the checks found: losses, doublings, other wrong things, and the figures of the state."""

    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.wrong)

    def details(self, limit: int = 20) -> list[str]:
        lines = []
        for name, items in (("LOST", self.lost), ("DOUBLED", self.doubled), ("WRONG", self.wrong)):
            lines += [f"  {name}: {item}" for item in items[:limit]]
            if len(items) > limit:
                lines.append(f"  {name}: ... and {len(items) - limit} more")
        return lines


def _expected_fire_time(rule: task_pb2.ReminderRule, due_at: datetime | None) -> datetime | None:
    if rule.WhichOneof("trigger") == "at":
        return datetime.fromisoformat(rule.at.local_time).replace(tzinfo=UTC)  # the load writes them in UTC
    if due_at is None:
        return None
    return due_at - rule.before_due.ToTimedelta()


@dataclass
class ServiceRows:
    """The task and reminder services' rows the checks read (the same tables whatever the runtime)."""

    tasks: dict[str, Any]
    requests: dict[tuple[str, str], str]
    plans: dict[str, Any]
    reminders: list[Any]


async def read_service_rows(
    task_db: asyncpg.Connection, reminder_db: asyncpg.Connection, users: Sequence[str] | None = None
) -> ServiceRows:
    """Reads tasks, create requests, reminder plans and reminders (of users only, when given)."""
    mine = "" if users is None else " WHERE user_id = ANY($1::text[])"
    args: list[Any] = [] if users is None else [list(users)]
    tasks = {str(r["task_id"]): r for r in await task_db.fetch(
        "SELECT task_id, user_id, title, status, version, due_local, due_at, reminders, series_id, occurrence_index"
        " FROM tasks" + mine, *args)}  # fmt: skip
    requests = {
        (r["user_id"], r["client_request_id"]): str(r["task_id"])
        for r in await task_db.fetch("SELECT user_id, client_request_id, task_id FROM create_requests" + mine, *args)
    }
    plans = {str(r["task_id"]): r for r in await reminder_db.fetch(
        "SELECT task_id, task_version, status, plan_version FROM task_plans" + mine, *args)}  # fmt: skip
    reminders = await reminder_db.fetch(
        "SELECT reminder_id, task_id, rule_id, fire_time, state, plan_version, fired_time, lateness_ms, late,"
        " snoozed_from FROM reminders" + mine, *args
    )  # fmt: skip
    return ServiceRows(tasks, requests, plans, list(reminders))


def distinct_events(events: Iterable[tuple[str, LoggedEvent]]) -> tuple[dict[str, tuple[str, LoggedEvent]], int]:
    """The events once per id, and how many were published again (a relay that died between publishing and
    marking its rows: the consumers' inboxes absorb the second copy)."""
    distinct: dict[str, tuple[str, LoggedEvent]] = {}
    again = 0
    for topic, event in events:
        if event.event_id in distinct:
            again += 1
        distinct[event.event_id] = (topic, event)
    return distinct, again


def check_service_state(
    ledger: Ledger, rows: ServiceRows, distinct: dict[str, tuple[str, LoggedEvent]], cut: datetime, found: Findings
) -> Counter[tuple[str, str, datetime]]:
    """The checks that do not depend on the runtime: commands, task events per version, series, reminders.

    Adds what it finds to found; returns how many times each (task, rule, moment) was reminded of, for the
    runtime's own checks of what follows a firing. Reminders due before cut must have fired (the system was quiet
    then); later ones are left to a later check.
    """
    tasks, plans, reminders = rows.tasks, rows.plans, rows.reminders
    requests = rows.requests
    by_type = Counter(e.type.rsplit(".", 1)[-1] for _, e in distinct.values())

    # Creates: one task per client request id, as the last acknowledged command left it.
    keys_of_tasks = Counter(
        (r["user_id"], r["title"].split(":", 1)[0]) for r in tasks.values() if (r["occurrence_index"] or 1) == 1
    )
    for record in ledger.tasks.values():
        if record.pending is not None or not record.task_id:
            found.wrong.append(f"create {record.key}: never acknowledged")
            continue
        row = tasks.get(record.task_id)
        if requests.get((record.user, record.request.client_request_id)) != record.task_id:
            found.lost.append(f"create {record.key}: its request id does not lead to task {record.task_id}")
        if row is None:
            found.lost.append(f"create {record.key}: task {record.task_id} is missing")
            continue
        if keys_of_tasks[(record.user, record.key)] > 1:
            found.doubled.append(f"create {record.key}: {keys_of_tasks[(record.user, record.key)]} tasks")
        if record.kind != "recurring":
            due_local = row["due_local"].isoformat() if row["due_local"] else ""
            if row["version"] < record.version:
                found.lost.append(f"task {record.key}: at version {row['version']}, acknowledged {record.version}")
            elif row["version"] > record.version:
                found.doubled.append(f"task {record.key}: at version {row['version']}, acknowledged {record.version}")
            elif row["title"] != record.title or due_local != record.due_local:
                found.lost.append(f"task {record.key}: {row['title']!r} due {due_local}, acknowledged "
                                  f"{record.title!r} due {record.due_local}")  # fmt: skip
            if row["status"] != task_pb2.TASK_STATUS_OPEN:
                found.wrong.append(f"task {record.key}: status {row['status']}, never completed")

    # Task events: one per task version, 1 to the current one.
    versions: dict[str, Counter[int]] = defaultdict(Counter)
    for topic, event in distinct.values():
        if topic == TASK_TOPIC and event.task_id and not event.type.endswith("TaskDeleted"):
            versions[event.task_id][event.version] += 1
    for task_id, row in tasks.items():
        seen = versions.get(task_id, Counter())
        missing = [v for v in range(1, row["version"] + 1) if v not in seen]
        if missing:
            found.lost.append(f"task {task_id}: no event for version(s) {missing}")
        twice = [v for v, n in seen.items() if n > 1]
        if twice:
            found.doubled.append(f"task {task_id}: two events for version(s) {twice}")

    # Series: each acknowledged completion made exactly one next occurrence.
    occurrences: dict[str, Counter[int]] = defaultdict(Counter)
    status_of: dict[tuple[str, int], int] = {}
    for row in tasks.values():
        if row["series_id"] is not None:
            occurrences[str(row["series_id"])][row["occurrence_index"]] += 1
            status_of[(str(row["series_id"]), row["occurrence_index"])] = row["status"]
    requested: dict[tuple[str, int], int] = Counter(
        (e.series_id, e.index) for t, e in distinct.values() if t == TASK_TOPIC and e.type.endswith("Requested")
    )
    for series in ledger.series.values():
        counts = occurrences.get(series.series_id, Counter())
        expected = series.completions + 1
        if any(n > 1 for n in counts.values()):
            found.doubled.append(f"series {series.key}: occurrences {sorted(i for i, n in counts.items() if n > 1)}"
                                 " exist twice")  # fmt: skip
        if sorted(counts) != list(range(1, expected + 1)):
            kind = found.lost if len(counts) < expected else found.doubled
            kind.append(f"series {series.key}: occurrences {sorted(counts)} after {series.completions} completions")
            continue
        closed = [
            i for i in range(1, expected + 1) if status_of[(series.series_id, i)] == task_pb2.TASK_STATUS_COMPLETED
        ]
        if closed != list(range(1, expected)):
            found.lost.append(f"series {series.key}: completed {closed} after {series.completions} completions")
        for index in range(2, expected + 1):
            if requested.get((series.series_id, index), 0) != 1:
                bucket = found.lost if not requested.get((series.series_id, index)) else found.doubled
                bucket.append(f"series {series.key}: {requested.get((series.series_id, index), 0)} "
                              f"OccurrenceRequested for occurrence {index}")  # fmt: skip

    # Reminders: planned for the task's current version, each fired once when its time came, never early.
    due_events: Counter[str] = Counter()
    scheduled_events: Counter[str] = Counter()
    for topic, event in distinct.values():
        if topic == REMINDER_TOPIC and event.type.endswith("ReminderDue"):
            due_events[event.reminder_id] += 1
        elif topic == REMINDER_TOPIC and event.type.endswith("ReminderScheduled"):
            scheduled_events[event.reminder_id] += 1
    by_id = {r["reminder_id"]: r for r in reminders}
    fired_per_time: Counter[tuple[str, str, datetime]] = Counter()
    late = 0
    for row in reminders:
        rid, fire_time, state = row["reminder_id"], row["fire_time"], row["state"]
        if scheduled_events[rid] != 1:
            (found.lost if not scheduled_events[rid] else found.doubled).append(
                f"reminder {rid}: {scheduled_events[rid]} ReminderScheduled events"
            )
        if due_events[rid] > 1:
            found.doubled.append(f"reminder {rid}: {due_events[rid]} ReminderDue events")
        if state == 2:  # fired
            fired_per_time[(str(row["task_id"]), row["rule_id"], fire_time)] += 1
            late += row["late"]
            if due_events[rid] == 0 and fire_time < cut:
                found.lost.append(f"reminder {rid}: fired without its ReminderDue event")
            if row["fired_time"] < fire_time:
                found.wrong.append(f"reminder {rid}: fired {row['fired_time']} before its time {fire_time}")
            late_ms = LATE_AFTER_SECONDS * 1000
            if (row["lateness_ms"] > late_ms + 1 and not row["late"]) or (
                row["lateness_ms"] < late_ms - 1 and row["late"]
            ):
                found.wrong.append(f"reminder {rid}: {row['lateness_ms']} ms late, flagged late={row['late']}")
        elif due_events[rid] and fire_time < cut:
            found.wrong.append(f"reminder {rid}: ReminderDue published, state {state}")
        elif state == 1 and fire_time < cut:
            found.lost.append(f"reminder {rid}: due {fire_time}, never fired")
    for (task_id, rule_id, fire_time), count in fired_per_time.items():
        if count > 1:
            found.doubled.append(f"task {task_id} rule {rule_id}: the reminder for {fire_time} fired {count} times")
    for task_id, row in tasks.items():
        rules = [json_format.ParseDict(r, task_pb2.ReminderRule()) for r in json.loads(row["reminders"])]
        if not rules:
            continue
        plan = plans.get(task_id)
        if plan is None or plan["task_version"] != row["version"]:
            found.lost.append(f"task {task_id}: version {row['version']}, reminders planned for "
                              f"{plan['task_version'] if plan else 'no version'}")  # fmt: skip
            continue
        if row["status"] != task_pb2.TASK_STATUS_OPEN:
            continue
        for rule in rules:
            reminder = by_id.get(f"{task_id}/{rule.rule_id}/{plan['plan_version']}")
            expected_time = _expected_fire_time(rule, row["due_at"])
            if reminder is None:
                # A moment already reminded of is not planned again (a re-plan that did not change its time).
                if expected_time is None or fired_per_time[(task_id, rule.rule_id, expected_time)] != 1:
                    found.lost.append(f"task {task_id}: rule {rule.rule_id} has no reminder in plan "
                                      f"{plan['plan_version']} and none fired for {expected_time}")  # fmt: skip
            elif expected_time is not None and abs(reminder["fire_time"] - expected_time) > timedelta(milliseconds=1):
                found.wrong.append(f"reminder {reminder['reminder_id']}: at {reminder['fire_time']}, "
                                   f"its rule says {expected_time}")  # fmt: skip

    found.wrong += ledger.problems
    states = Counter(r["state"] for r in reminders)
    found.figures = {
        "tasks": len(tasks),
        "occurrences made by completions": sum(1 for r in tasks.values() if (r["occurrence_index"] or 1) > 1),
        "events": len(distinct),
        **{f"events {name}": n for name, n in sorted(by_type.items())},
        "reminders planned": len(reminders),
        "reminders fired": states[2],
        "reminders fired late": late,
        "reminders cancelled": states[3],
        "reminders still ahead": states[1],
    }
    return fired_per_time


# --- the run -----------------------------------------------------------------------


@dataclass
class RunSummary:
    """The outcome of a run."""

    rounds: int = 0
    kills: int = 0
    kills_by_target: Counter[str] = field(default_factory=Counter)
    findings: Findings = field(default_factory=Findings)
    failure: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failure and self.findings.ok


class FaultRoundsBase:
    """Plays the rounds and checks after each; a variant says how faults are made and what the runtime shows.

    A round: the clients load the system; at a random moment of the load window the variant injects its fault
    (SIGKILL of something); the clients stop at their first failed call (and, with load_through_fault false, at
    the fault); the variant recovers (restarts what it killed); every unknown outcome is resolved; once the system
    is quiet the checks run over everything the run ever did.
    """

    load_through_fault = False
    """Whether the clients go on after the fault until the load window ends (a fault that leaves the commands'
    path standing, like a consumer's death, must be struck while they run)."""

    def __init__(self, config: RoundsConfig, out: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = out
        self.ledger = Ledger()
        self.summary = RunSummary()
        self.tokens: dict[str, list[tuple[str, str]]] = {}
        self.phase = "starting"

    # --- what a variant supplies ---------------------------------------------------

    @property
    def address(self) -> str:
        """Where the clients' gRPC calls go."""
        raise NotImplementedError

    async def start(self) -> None:
        """Starts (or joins) the system, sets self.tokens and opens what the checks read."""
        raise NotImplementedError

    async def close(self) -> None:
        """Closes what the checks read."""

    async def finish(self) -> None:
        """After a run without findings: a clean stop where the variant owns one (a failure goes to the summary)."""

    async def inject(self, rng: random.Random) -> str:
        """Makes the round's fault (counted in the summary); returns what it did, for the round's line."""
        raise NotImplementedError

    async def recover(self) -> None:
        """Brings back what the fault took down and waits until it serves."""
        raise NotImplementedError

    async def quiet(self) -> str:
        """What still moves ("" when nothing does); once quiet, the state is complete up to a cut the checks use."""
        raise NotImplementedError

    async def check(self) -> Findings:
        """Every check over everything the run did so far."""
        raise NotImplementedError

    async def last_scheduled_fire_time(self) -> datetime | None:
        """The latest fire time of a reminder of this run still waiting."""
        raise NotImplementedError

    # --- the loop -------------------------------------------------------------------

    async def run(self) -> RunSummary:
        """Every round, then a last check once every reminder planned has come due."""
        started = time.monotonic()
        await self.start()
        try:
            for number in range(1, self.config.rounds + 1):
                try:
                    line = await asyncio.wait_for(self.play_round(number), timeout=self.config.round_timeout)
                except TimeoutError:
                    self.summary.failure = f"round {number} timed out while {self.phase}"
                    break
                self.summary.rounds = number
                self.out(line)
                if self.summary.failure or not self.summary.findings.ok:
                    break
            if self.summary.ok:
                await self.settle_last()
        finally:
            await self.close()
        if self.summary.ok:
            await self.finish()
        self.summary.seconds = time.monotonic() - started
        return self.summary

    async def play_round(self, number: int) -> str:
        began = time.monotonic()
        rng = random.Random(f"{self.config.seed}/{number}")
        load_for = rng.uniform(*self.config.load_seconds)
        kill_at = rng.uniform(0.0, load_for)
        before = Counter(self.ledger.acknowledged)
        self.phase = "under load"
        async with grpc.aio.insecure_channel(self.address) as channel:
            clients = Clients(
                self.ledger, task_service_pb2_grpc.TaskServiceStub(channel), self.tokens, rng, self.config
            )
            running = [asyncio.create_task(clients.run()) for _ in range(self.config.workers)]
            await asyncio.sleep(kill_at)
            self.phase = "injecting the fault"
            # Its own generator: the clients draw from theirs as the timing goes, the fault follows the seed only.
            fault = await self.inject(random.Random(f"{self.config.seed}/{number}/fault"))
            if self.load_through_fault:
                self.phase = "under load after the fault"
                await asyncio.sleep(load_for - kill_at)
            clients.stopped.set()
            await asyncio.gather(*running)
        unknown = len(self.ledger.pending_tasks()) + len(self.ledger.pending_series())
        self.phase = "recovering"
        down_at = time.monotonic()
        await self.recover()
        restart = time.monotonic() - down_at
        self.phase = "resolving unknown outcomes"
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            await resolve_unknown(self.ledger, stub, self.tokens, datetime.now(UTC) - timedelta(seconds=restart))
        quiet = await self.wait_quiet()
        self.phase = "checking"
        findings = await self.check()
        self.summary.findings = findings
        if quiet:
            self.summary.failure = f"round {number}: not quiet after {self.config.quiet_timeout:.0f} s: {quiet}"
        acked = self.ledger.acknowledged - before
        figures = findings.figures
        verdict = "ok" if findings.ok else f"lost {len(findings.lost)} doubled {len(findings.doubled)} " \
                                            f"wrong {len(findings.wrong)}"  # fmt: skip
        return (
            f"round {number:3d}: {fault} at {kill_at:4.2f}/{load_for:4.2f} s, {sum(acked.values()):3d} acknowledged,"
            f" {unknown} unknown at the fault, back in {restart:4.1f} s | tasks {figures['tasks']}, "
            f"events {figures['events']}, reminders fired {figures['reminders fired']}"
            f" | {time.monotonic() - began:4.1f} s: {verdict}"
        )

    async def wait_quiet(self) -> str:
        """Waits until nothing moves; returns what still did when the time ran out ("" if it got quiet)."""
        self.phase = "waiting for quiet"
        deadline = time.monotonic() + self.config.quiet_timeout
        while True:
            moving = await self.quiet()
            if not moving or time.monotonic() > deadline:
                return moving
            await asyncio.sleep(0.2)

    async def settle_last(self) -> None:
        """The last check, once the reminders the last round planned have come due."""
        self.phase = "waiting for the last reminders"
        last = await self.last_scheduled_fire_time()
        if last is not None:
            # Completing a series again and again moves it, and its reminders, into the future: those are not
            # waited for, only the ones the load's own due times gave.
            horizon = self.config.reminder_ahead_seconds[1] + 6
            wait = min((last - datetime.now(UTC)).total_seconds(), horizon)
            await asyncio.sleep(max(0.0, wait) + SETTLE_GRACE.total_seconds())
        quiet = await self.wait_quiet()
        self.summary.findings = await self.check()
        if quiet:
            self.summary.failure = f"not quiet at the end: {quiet}"


def report(summary: RunSummary, ledger: Ledger, config: RoundsConfig) -> list[str]:
    """The summary lines of a run."""
    findings = summary.findings
    targets = ", ".join(f"{name} {n}" for name, n in sorted(summary.kills_by_target.items()))
    lines = [
        f"seed {config.seed}: {summary.rounds} rounds, {summary.kills} kills (SIGKILL"
        + (f": {targets}" if targets else "")
        + f"), {summary.seconds:.0f} s",
        "acknowledged commands: "
        + ", ".join(f"{kind} {n}" for kind, n in sorted(ledger.acknowledged.items()))
        + f"; total {sum(ledger.acknowledged.values())}",
        f"unknown outcome at a fault: {sum(ledger.unknown.values())} ("
        + ", ".join(f"{kind} {n}" for kind, n in sorted(ledger.unknown.items()))
        + "); had taken effect: "
        + (", ".join(f"{kind} {n}" for kind, n in sorted(ledger.had_taken_effect.items())) or "none")
        + "; applied by the retry: "
        + (", ".join(f"{kind} {n}" for kind, n in sorted(ledger.applied_by_retry.items())) or "none"),
        "state: " + ", ".join(f"{name} {n}" for name, n in findings.figures.items()),
        f"lost {len(findings.lost)}, doubled {len(findings.doubled)}, other findings {len(findings.wrong)}",
    ]
    if summary.failure:
        lines.append(f"FAILED: {summary.failure}")
    return lines + findings.details()
