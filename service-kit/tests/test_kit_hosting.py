"""The host base: supervised background work, health that tells the truth, starts that leave nothing behind."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from todo_contracts import envelope
from todo_contracts.envelope import DecodedEvent
from todo_contracts.task.v1 import events_pb2, task_pb2
from todo_kit import deadletters, embedded_pg
from todo_kit.config import Settings
from todo_kit.embedded_host import EmbeddedHost
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.embedded import EmbeddedRuntime
from todo_kit.runtime.port import DropEvent, ServiceUnit, Subscription, UnitContext, UnitWiring
from todo_kit.testing import eventually, running_host

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MIGRATIONS = Path(__file__).parents[2] / "task_svc" / "src" / "task_svc" / "migrations"


def task_event(title: str) -> OutgoingEvent:
    message = events_pb2.TaskCreated(user_id="alice", task=task_pb2.Task(task_id=title, title=title))
    ce = envelope.wrap(message, source="/t")
    return OutgoingEvent(ce.id, "task-events", "alice", ce.type, ce.SerializeToString())


def probe_unit(
    *, background_failures: int = 0, handled: list[str] | None = None, drop_titles: frozenset[str] = frozenset()
) -> ServiceUnit:
    """A unit on the task service's migrations (for its outbox) with a subscription and background work."""
    runs: list[int] = []

    async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        async def background() -> None:
            runs.append(1)
            if len(runs) <= background_failures:
                await asyncio.sleep(0.05)
                raise RuntimeError("the loop hit something unexpected")
            await asyncio.Event().wait()

        async def handler(event: DecodedEvent) -> None:
            assert isinstance(event.message, events_pb2.TaskCreated)
            if event.message.task.title in drop_titles:
                raise DropEvent("never handled")
            if handled is not None:
                handled.append(event.message.task.title)

        return UnitWiring(subscriptions=[Subscription("task-events", handler)], background=[background])

    return ServiceUnit("probe_svc", "todo_probe", MIGRATIONS, ("todo.probe.v1.Probe",), register)


async def overall_health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    return int(reply.status)


async def test_background_work_that_fails_is_restarted_and_health_is_not_serving_meanwhile(
    kit_settings: Settings,
) -> None:
    async with running_host(kit_settings, [probe_unit(background_failures=2)]) as host:
        seen: list[int] = []

        async def watch() -> bool:
            seen.append(await overall_health(host.address))
            return host.supervisor.restarts >= 2 and seen[-1] == SERVING

        await eventually(watch, interval=0.01)
        assert NOT_SERVING in seen  # while the loop was down
        assert seen[-1] == SERVING


async def test_a_dispatcher_whose_dead_letter_write_fails_is_restarted_and_loses_nothing(
    kit_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = EmbeddedRuntime._dead_letter
    failures: list[int] = []

    async def failing_once(self: EmbeddedRuntime, *args: object) -> None:
        if not failures:
            failures.append(1)
            raise ConnectionError("the database is restarting")
        await real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(EmbeddedRuntime, "_dead_letter", failing_once)
    handled: list[str] = []
    unit = probe_unit(handled=handled, drop_titles=frozenset({"poison"}))
    async with running_host(kit_settings, [unit]) as host:
        assert isinstance(host.runtime, EmbeddedRuntime)
        await host.runtime.publish([task_event("poison"), task_event("fine")])
        await eventually(lambda: handled == ["fine"])
        assert failures and host.supervisor.restarts >= 1
        found = await deadletters.list_dead_letters(host.databases["todo_runtime"])
        assert [(d["consumer"], d["error"].startswith("dropped by the handler")) for d in found] == [
            ("probe_svc", True)
        ]


async def test_dead_letters_can_be_replayed_and_dropped(kit_settings: Settings) -> None:
    handled: list[str] = []
    drop_titles = {"first", "second"}

    async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        async def handler(event: DecodedEvent) -> None:
            assert isinstance(event.message, events_pb2.TaskCreated)
            if event.message.task.title in drop_titles:
                raise DropEvent("not yet")
            handled.append(event.message.task.title)

        return UnitWiring(subscriptions=[Subscription("task-events", handler)])

    unit = ServiceUnit("probe_svc", "todo_probe", MIGRATIONS, (), register)
    async with running_host(kit_settings, [unit]) as host:
        runtime, db = host.runtime, host.databases["todo_runtime"]
        assert isinstance(runtime, EmbeddedRuntime)
        await runtime.publish([task_event("first"), task_event("second")])

        async def both_dead() -> list[dict[str, object]]:
            found = await deadletters.list_dead_letters(db)
            return found if len(found) == 2 else []

        first, second = await eventually(both_dead)
        drop_titles.discard("first")  # the bug is fixed: "first" can be handled now
        assert await deadletters.request_replay(db, [first["id"]]) == 1
        # The dispatcher looks for replays every few seconds.
        await eventually(lambda: handled == ["first"], timeout=30)

        async def only_second_left() -> bool:
            return [d["id"] for d in await deadletters.list_dead_letters(db)] == [second["id"]]

        # Delivered, then removed from the dead letters in a transaction of its own.
        await eventually(only_second_left)
        assert handled == ["first"]
        assert await deadletters.drop(db, [], every=True) == 1
        assert await deadletters.list_dead_letters(db) == []


def test_a_start_on_a_busy_port_fails_before_postgres_and_leaves_no_child(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "TODO_DATA_DIR": str(tmp_path / "data"), "TODO_GRPC_PORT": str(port)}
        env.pop("TODO_DATABASE_URL", None)
        result = subprocess.run(
            [sys.executable, "-m", "todo_kit.embedded_host"], env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "data" / "postgres").exists()  # no cluster built, no server started


async def test_a_start_that_fails_after_postgres_started_stops_it() -> None:
    async def broken(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        raise RuntimeError("a unit that cannot register")

    # A short folder keeps PostgreSQL's socket path under the Unix limit.
    tmp_path = Path(tempfile.mkdtemp(prefix="todo-host-"))
    settings = Settings.from_env({"TODO_DATA_DIR": str(tmp_path / "data"), "TODO_GRPC_PORT": "0"})
    host = EmbeddedHost(settings, [ServiceUnit("broken_svc", "todo_broken", MIGRATIONS, (), broken)])
    with pytest.raises(RuntimeError, match="cannot register"):
        await host.start()
    pgdata = tmp_path / "data" / "postgres"
    assert pgdata.exists()  # it did start PostgreSQL ...
    assert embedded_pg.postmaster_pid(pgdata) is None  # ... and stopped it again
    with (tmp_path / "data" / "host.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and the data folder is free again
    shutil.rmtree(tmp_path, ignore_errors=True)


async def test_every_dead_letter_is_logged_with_its_reason(
    kit_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    unit = probe_unit(drop_titles=frozenset({"poison"}))
    async with running_host(kit_settings, [unit]) as host:
        assert isinstance(host.runtime, EmbeddedRuntime)
        await host.runtime.publish([task_event("poison")])
        await eventually(lambda: any(r.getMessage() == "event dead-lettered" for r in caplog.records))
    record = next(r for r in caplog.records if r.getMessage() == "event dead-lettered")
    assert record.consumer == "probe_svc" and "never handled" in record.reason  # type: ignore[attr-defined]


async def test_the_dead_letter_command_lists_replays_and_drops(kit_settings: Settings) -> None:
    unit = probe_unit(drop_titles=frozenset({"poison"}))
    env = {
        **os.environ,
        "TODO_DATABASE_URL": kit_settings.database_url,
        "TODO_DATABASE_PREFIX": kit_settings.database_prefix,
        "TODO_DATA_DIR": str(kit_settings.data_dir),
    }

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "todo_kit.deadletters", *args], env=env, capture_output=True, text=True, timeout=60
        )

    async with running_host(kit_settings, [unit]) as host:
        assert isinstance(host.runtime, EmbeddedRuntime)
        poison = task_event("poison")
        await host.runtime.publish([poison])
        await eventually(lambda: deadletters.list_dead_letters(host.databases["todo_runtime"]))
        listed = await asyncio.to_thread(command, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert entry["event_id"] == poison.event_id and entry["consumer"] == "probe_svc"
        assert "poison" not in listed.stdout  # the payload (a user's title) is never printed
        replayed = await asyncio.to_thread(command, "replay", str(entry["id"]))
        assert replayed.returncode == 0 and "1 dead letter(s) marked for replay" in replayed.stdout
        refused = await asyncio.to_thread(command, "drop")
        assert refused.returncode == 2
        dropped = await asyncio.to_thread(command, "drop", "--all", "--consumer", "probe_svc")
        assert dropped.returncode == 0
        assert await deadletters.list_dead_letters(host.databases["todo_runtime"]) == []


async def test_drain_hooks_run_while_the_server_still_answers_and_stop_hooks_after_it_stopped(
    kit_settings: Settings,
) -> None:
    order: list[str] = []
    host = EmbeddedHost(kit_settings, [])

    async def register(server: grpc.aio.Server, context: UnitContext) -> UnitWiring:
        async def drain_failing() -> None:
            order.append("drain that fails")
            raise RuntimeError("a drain hook failed")

        async def drain() -> None:
            # The server still answers: long-lived calls end before it stops.
            order.append(f"drain, health {await overall_health(host.address)}")

        async def stop() -> None:
            with pytest.raises(grpc.aio.AioRpcError):
                await overall_health(host.address)
            order.append("stop, server gone")

        return UnitWiring(on_drain=[drain_failing, drain], on_stop=[stop])

    host.units = [ServiceUnit("drain_svc", "todo_drain", MIGRATIONS, ("todo.drain.v1.Drain",), register)]
    await host.start()
    await host.stop(grace=0.5)
    assert order == ["drain that fails", f"drain, health {SERVING}", "stop, server gone"]
