"""PostgreSQL stopped for 30 s under load, then started: every accepted command's events arrive, none dead-lettered.

The host runs in this process on its own embedded PostgreSQL (as `make up`
does). Clients keep creating tasks with reminders before, during and after the
outage; the outage fails some calls (they were never accepted) and every
background loop (relays, dispatchers, the job timer). After PostgreSQL is back
the supervised loops start again, and every task whose create was acknowledged
has its reminder planned by the reminder service, through the outbox, the
event log and the reminder service's inbox, with nothing in the dead letters.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import grpc
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recurrence_svc.unit import unit as recurrence_unit
from reminder_svc.unit import unit as reminder_unit
from task_svc.unit import unit as task_unit
from todo_contracts.common.v1 import common_pb2
from todo_contracts.reminder.v1 import reminder_pb2, reminder_pb2_grpc
from todo_contracts.task.v1 import task_pb2, task_service_pb2_grpc
from todo_contracts.task.v1 import task_service_pb2 as ts
from todo_kit import deadletters, embedded_pg
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.testing import EventRecorder, bearer, eventually

OUTAGE_SECONDS = 30.0


async def test_postgres_down_for_30_s_under_load_loses_nothing_and_dead_letters_nothing() -> None:
    folder = Path(tempfile.mkdtemp(prefix="todo-outage-"))  # short: PostgreSQL's socket path has a limit
    settings = Settings.from_env(
        {
            "TODO_DATA_DIR": str(folder / "data"),
            "TODO_GRPC_PORT": "0",
            "TODO_LOG_LEVEL": "WARNING",
            # Retries keep going for hours by default; a short pause cap only makes the test quicker.
            "TODO_EVENT_RETRY_MAX_DELAY_SECONDS": "2",
        }
    )
    recorder = EventRecorder(["task-events"])
    host = EmbeddedHost(settings, [task_unit, reminder_unit, recurrence_unit], observers=recorder.subscriptions())
    await host.start()
    accepted: list[str] = []
    stop_load = asyncio.Event()
    try:
        md = bearer(settings, "alice")
        async with grpc.aio.insecure_channel(host.address) as channel:
            tasks = task_service_pb2_grpc.TaskServiceStub(channel)

            async def keep_creating(worker: int) -> None:
                number = 0
                while not stop_load.is_set():
                    number += 1
                    request = ts.CreateTaskRequest(
                        task=task_pb2.Task(
                            title=f"Task {worker}-{number}",
                            due=common_pb2.ZonedDateTime(local_time="2030-01-01T09:00", time_zone="Europe/Berlin"),
                            reminders=[task_pb2.ReminderRule(before_due=duration_pb2.Duration(seconds=3600))],
                        ),
                        client_request_id=f"w{worker}-{number}",
                    )
                    try:
                        response = await tasks.CreateTask(request, metadata=md, timeout=5)
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.2)  # not accepted: the database is away
                        continue
                    accepted.append(response.task.task_id)
                    await asyncio.sleep(0.02)

            load = [asyncio.create_task(keep_creating(w)) for w in range(4)]
            await eventually(lambda: len(accepted) >= 40)
            assert host._postgres is not None
            pgdata = host._postgres.pgdata
            await asyncio.to_thread(host._postgres.stop)
            await asyncio.sleep(OUTAGE_SECONDS)
            host._postgres = await asyncio.to_thread(embedded_pg.start, pgdata)
            before = len(accepted)
            await eventually(lambda: len(accepted) >= before + 40, timeout=60)
            stop_load.set()
            await asyncio.gather(*load)

            # Every acknowledged create reached the reminder service: its reminder is planned.
            reminders = reminder_pb2_grpc.ReminderServiceStub(channel)

            async def planned() -> bool:
                listing = await reminders.ListReminders(reminder_pb2.ListRemindersRequest(page_size=1000), metadata=md)
                seen = {r.task_id for r in listing.reminders}
                while listing.next_page_token:
                    listing = await reminders.ListReminders(
                        reminder_pb2.ListRemindersRequest(page_size=1000, page_token=listing.next_page_token),
                        metadata=md,
                    )
                    seen |= {r.task_id for r in listing.reminders}
                return set(accepted) <= seen

            await eventually(planned, timeout=90, interval=0.5)

            # And every subscriber of the topic gets them: the test's own observer too.
            def observed() -> bool:
                created = {e.message.task.task_id for e in recorder.events("todo.task.v1.TaskCreated")}  # type: ignore[attr-defined]
                return set(accepted) <= created

            await eventually(observed, timeout=30)
            assert await deadletters.list_dead_letters(host.databases["todo_runtime"]) == []
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

            # Loops that failed during the outage wait out their backoff (at most 10 s) before they run again.
            await eventually(serving, timeout=30)
            assert host.supervisor.restarts > 0  # the loops did fail during the outage, and came back
    finally:
        stop_load.set()
        await host.stop(grace=0)
        shutil.rmtree(folder, ignore_errors=True)
