"""Contract tests of the Dapr runtime against the sidecar double: every call shape the runtime sends and answers.

The app side is the kit's own code (DaprRuntime, the AppCallback servicers on a
grpc.aio server); the sidecar side is tests/dapr/sidecar_double.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from google.protobuf import empty_pb2, wrappers_pb2

from todo_contracts import envelope, topics
from todo_contracts.task.v1 import events_pb2 as task_events
from todo_kit.config import ConfigError
from todo_kit.dapr_callback import add_callbacks
from todo_kit.messaging import OutgoingEvent
from todo_kit.request_context import bind_authorization, bind_traceparent
from todo_kit.runtime.dapr import (
    BYTES_VALUE_TYPE_URL,
    CONTENT_TYPE,
    DaprRuntime,
    DaprSettings,
    DaprStateRateLimitStore,
    resolve_secret_settings,
)
from todo_kit.runtime.port import DropEvent, FailurePolicy, HandlerOutcome, JobExists, JobOptions, Subscription
from todo_kit.testing import eventually

sys.path.insert(0, str(Path(__file__).parent))
from sidecar_double import Bus, SidecarDouble

Status = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus
API_TOKEN = "sidecar-token-1"
APP_TOKEN = "app-token-2"
TASK_TOPIC = topics.topic_of(task_events.TaskCreated).name


def _event(user: str, title: str = "Pay rent") -> OutgoingEvent:
    message = task_events.TaskCreated(user_id=user)
    event_id = str(uuid.uuid4())
    data = envelope.encode(message, source="/todo/task_svc", subject=f"t-{title}", event_id=event_id)
    return OutgoingEvent(event_id, TASK_TOPIC, user, "todo.task.v1.TaskCreated", data)


class App:
    """An app beside a double: its AppCallback server, its runtime, and an echo service commands can reach."""

    def __init__(self, app_id: str, bus: Bus, *, tokens: bool = True) -> None:
        self.app_id = app_id
        self.bus = bus
        self.tokens = tokens
        self.server = grpc.aio.server()
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.double = SidecarDouble(
            app_id.replace("_", "-"), self.port, bus,
            api_token=API_TOKEN if tokens else "", app_token=APP_TOKEN if tokens else "",
            secrets={"todo-jwt": "s3cret-key", "task-svc-database-url": "postgresql://x/{database}"},
        )  # fmt: skip
        self.runtime: DaprRuntime | None = None
        self.echoed: list[dict[str, str]] = []

    async def start(self, subscriptions: list[Subscription] = (), jobs: dict[str, Any] | None = None) -> None:  # type: ignore[assignment]
        await self.double.start()
        self.runtime = DaprRuntime(DaprSettings.from_env(self.double.env()))
        for subscription in subscriptions:
            self.runtime.add_subscription(self.app_id, subscription)
        self.runtime.add_job_handlers(self.app_id, jobs or {})
        add_callbacks(self.server, self.runtime)
        self.server.add_generic_rpc_handlers([_Echo(self.echoed)])
        await self.server.start()
        await asyncio.wait_for(self.double.subscribed.wait(), 10)

    async def stop(self) -> None:
        await self.double.stop()
        await self.server.stop(0)
        if self.runtime is not None:
            await self.runtime.stop()


class _Echo(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A user service of the app: answers with the metadata it received."""

    def __init__(self, seen: list[dict[str, str]]) -> None:
        self.seen = seen

    def service(self, details: Any) -> Any:
        if details.method == "/test.Echo/Call":

            async def call(request: bytes, context: Any) -> bytes:
                metadata = dict(context.invocation_metadata())
                self.seen.append(metadata)
                if request == b"fail":
                    await context.abort(grpc.StatusCode.NOT_FOUND, "no such task")
                return json.dumps(metadata).encode()

            return grpc.unary_unary_rpc_method_handler(call)
        if details.method == "/test.Echo/Stream":

            async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
                self.seen.append(dict(context.invocation_metadata()))
                for part in (b"one", b"two"):
                    yield part

            return grpc.unary_stream_rpc_method_handler(stream)
        return None


@pytest.fixture
async def bus() -> Bus:
    return Bus()


async def test_publish_sends_raw_cloudevent_bytes_with_the_user_as_partition_key_and_the_api_token(bus: Bus) -> None:
    app = App("task_svc", bus)
    await app.start()
    try:
        assert app.runtime is not None
        events = [_event("alice", "a"), _event("bob", "b"), _event("alice", "c")]
        await app.runtime.publish(events)
        records = bus.records(TASK_TOPIC)
        assert [r.data for r in records] == [e.payload for e in events]  # byte-identical, in order
        assert [r.key for r in records] == ["alice", "bob", "alice"]
        assert {r.content_type for r in records} == {CONTENT_TYPE}
        assert all(r.metadata == {"rawPayload": "true", "partitionKey": r.key} for r in records)
        publishes = [c for c in app.double.calls if c.method == "PublishEvent"]
        assert {c.request.pubsub_name for c in publishes} == {"todo-pubsub"}
        assert all(c.metadata.get("dapr-api-token") == API_TOKEN for c in publishes)
    finally:
        await app.stop()


async def test_a_publish_without_the_sidecar_token_is_refused_and_raises(bus: Bus) -> None:
    app = App("task_svc", bus)
    await app.start()
    try:
        wrong = DaprRuntime(DaprSettings.from_env({**app.double.env(), "DAPR_API_TOKEN": "wrong"}))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await wrong.publish([_event("alice")])
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert bus.records(TASK_TOPIC) == []
        await wrong.stop()
    finally:
        await app.stop()


async def test_subscriptions_are_listed_with_routes_raw_payload_and_dead_letter_topics(bus: Bus) -> None:
    async def ignore(event: Any) -> None:
        return None

    app = App("reminder_svc", bus)
    await app.start([Subscription(TASK_TOPIC, ignore)])
    try:
        (listed,) = app.double.subscriptions
        assert listed.pubsub_name == "todo-pubsub"
        assert listed.topic == TASK_TOPIC
        assert listed.routes.default == f"/reminder_svc/{TASK_TOPIC}"
        assert dict(listed.metadata) == {"rawPayload": "true"}
        assert listed.dead_letter_topic == topics.topic_named(TASK_TOPIC).dead_letter
    finally:
        await app.stop()


async def test_handler_outcomes_become_success_retry_and_drop_and_drops_reach_the_dead_letter_topic(bus: Bus) -> None:
    seen: list[str] = []

    async def handle(event: Any) -> HandlerOutcome | None:
        title = event.subject
        seen.append(title)
        if title == "t-retry" and seen.count(title) < 3:
            return HandlerOutcome.RETRY
        if title == "t-raise" and seen.count(title) < 2:
            raise RuntimeError("database restarting")
        if title == "t-drop":
            raise DropEvent("impossible")
        if title == "t-says-drop":
            return HandlerOutcome.DROP
        return None

    app = App("reminder_svc", bus)
    await app.start([Subscription(TASK_TOPIC, handle)])
    try:
        publisher = App("task_svc", bus)
        await publisher.start()
        assert publisher.runtime is not None
        names = ["ok", "retry", "raise", "drop", "says-drop", "last"]
        await publisher.runtime.publish([_event("alice", n) for n in names])
        await eventually(lambda: _true(seen.count("t-last") == 1), timeout=10, interval=0.05)
        statuses = [(offset, status) for topic, offset, status in app.double.deliveries if topic == TASK_TOPIC]
        assert statuses == [
            (0, Status.SUCCESS),
            (1, Status.RETRY), (1, Status.RETRY), (1, Status.SUCCESS),
            (2, Status.RETRY), (2, Status.SUCCESS),
            (3, Status.DROP), (4, Status.DROP), (5, Status.SUCCESS),
        ]  # fmt: skip
        dead = bus.records(topics.topic_named(TASK_TOPIC).dead_letter)
        assert [envelope.decode(r.data).subject for r in dead] == ["t-drop", "t-says-drop"]
        await publisher.stop()
    finally:
        await app.stop()


async def _true(value: bool) -> bool | None:
    return True if value else None


async def test_an_undecodable_record_is_dropped_and_unwanted_types_are_acknowledged_unseen(bus: Bus) -> None:
    seen: list[str] = []

    async def handle(event: Any) -> None:
        seen.append(event.type)

    app = App("reminder_svc", bus)
    await app.start([Subscription(TASK_TOPIC, handle, frozenset({"todo.task.v1.TaskDeleted"}))])
    try:
        publisher = App("task_svc", bus)
        await publisher.start()
        assert publisher.runtime is not None
        garbage = OutgoingEvent("x", TASK_TOPIC, "alice", "x", b"\xff not a cloudevent")
        await publisher.runtime.publish([garbage, _event("alice")])
        await eventually(lambda: _true(len(app.double.deliveries) == 2), timeout=10, interval=0.05)
        assert [s for _, _, s in app.double.deliveries] == [Status.DROP, Status.SUCCESS]
        assert seen == []
        dead = bus.records(topics.topic_named(TASK_TOPIC).dead_letter)
        assert [r.data for r in dead] == [garbage.payload]
        await publisher.stop()
    finally:
        await app.stop()


async def test_callbacks_without_the_app_token_or_with_a_user_token_are_refused(bus: Bus) -> None:
    app = App("reminder_svc", bus)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = appcallback_pb2_grpc.AppCallbackStub(channel)
            for metadata in ([], [("dapr-api-token", "guess")], [("authorization", "Bearer user-token")]):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.ListTopicSubscriptions(empty_pb2.Empty(), metadata=metadata)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            job = appcallback_pb2.JobEventRequest(name="reminder:1")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await appcallback_pb2_grpc.AppCallbackAlphaStub(channel).OnJobEventAlpha1(job)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = appcallback_pb2_grpc.AppCallbackHealthCheckStub(channel)
            await health.HealthCheck(empty_pb2.Empty(), metadata=[("dapr-api-token", APP_TOKEN)])
    finally:
        await app.stop()


async def test_jobs_are_scheduled_by_name_with_bytes_value_data_and_fire_at_due_time_not_before(bus: Bus) -> None:
    fired: list[tuple[str, bytes, datetime]] = []

    async def on_job(name: str, data: bytes) -> None:
        fired.append((name, data, datetime.now(UTC)))

    app = App("reminder_svc", bus)
    await app.start(jobs={"reminder:": on_job})
    try:
        assert app.runtime is not None
        unit = app.runtime.for_unit("reminder_svc")
        due = datetime.now(UTC) + timedelta(seconds=0.6)
        await unit.schedule_job("reminder:r1", due, b"\x00payload", JobOptions(
            failure_policy=FailurePolicy(max_retries=3, interval=timedelta(seconds=2))))  # fmt: skip
        (call,) = [c for c in app.double.calls if c.method == "ScheduleJob"]
        job = call.request.job
        assert job.name == "reminder:r1"  # the unit's own name: Dapr scopes jobs per app id
        assert call.request.overwrite is True
        assert job.due_time.endswith("Z") and datetime.fromisoformat(job.due_time) == due
        assert job.data.type_url == BYTES_VALUE_TYPE_URL
        assert wrappers_pb2.BytesValue.FromString(job.data.value).value == b"\x00payload"
        assert job.failure_policy.constant.max_retries == 3
        assert job.failure_policy.constant.interval.seconds == 2
        assert call.metadata["dapr-api-token"] == API_TOKEN
        assert await app.runtime.pending_jobs("reminder_svc") == ["reminder:r1"]
        await eventually(lambda: _true(len(fired) == 1), timeout=10, interval=0.05)
        name, data, at = fired[0]
        assert (name, data) == ("reminder:r1", b"\x00payload")
        assert at >= due
        assert app.double.fired[0][2] == "OnJobEvent"
        assert await app.runtime.pending_jobs("reminder_svc") == []
    finally:
        await app.stop()


async def test_overwrite_off_raises_job_exists_and_deleting_a_missing_job_is_not_an_error(bus: Bus) -> None:
    app = App("reminder_svc", bus)
    await app.start()
    try:
        assert app.runtime is not None
        unit = app.runtime.for_unit("reminder_svc")
        later = datetime.now(UTC) + timedelta(hours=1)
        await unit.schedule_job("reminder:a", later, b"1")
        with pytest.raises(JobExists):
            await unit.schedule_job("reminder:a", later, b"2", JobOptions(overwrite=False))
        await unit.delete_job("reminder:a")
        await unit.delete_job("reminder:a")
        await unit.delete_job("reminder:never")
        assert app.double.jobs == {}
        deletes = [c.request.name for c in app.double.calls if c.method == "DeleteJob"]
        assert deletes == ["reminder:a", "reminder:a", "reminder:never"]
    finally:
        await app.stop()


async def test_a_failing_job_is_answered_with_an_error_and_fired_again_until_it_succeeds(bus: Bus) -> None:
    attempts: list[str] = []

    async def on_job(name: str, data: bytes) -> None:
        attempts.append(name)
        if len(attempts) < 3:
            raise RuntimeError("database restarting")

    app = App("reminder_svc", bus)
    await app.start(jobs={"reminder:": on_job})
    try:
        assert app.runtime is not None
        options = JobOptions(failure_policy=FailurePolicy(interval=timedelta(milliseconds=100)))
        await app.runtime.for_unit("reminder_svc").schedule_job("reminder:x", datetime.now(UTC), b"", options)
        await eventually(lambda: _true(len(attempts) == 3 and not app.double.jobs), timeout=10, interval=0.05)
        assert [used for _, _, used in app.double.fired] == ["OnJobEvent:error", "OnJobEvent:error", "OnJobEvent"]
    finally:
        await app.stop()


async def test_a_job_with_no_retries_is_dropped_by_the_sidecar_after_one_failure(bus: Bus) -> None:
    async def on_job(name: str, data: bytes) -> None:
        raise RuntimeError("broken")

    app = App("reminder_svc", bus)
    await app.start(jobs={"reminder:": on_job})
    try:
        assert app.runtime is not None
        options = JobOptions(failure_policy=FailurePolicy(max_retries=0))
        await app.runtime.for_unit("reminder_svc").schedule_job("reminder:y", datetime.now(UTC), b"", options)
        (call,) = [c for c in app.double.calls if c.method == "ScheduleJob"]
        assert call.request.job.failure_policy.HasField("drop")
        await eventually(lambda: _true(not app.double.jobs), timeout=10, interval=0.05)
        assert len(app.double.fired) == 1
    finally:
        await app.stop()


async def test_jobs_fall_back_to_the_alpha_callback_when_on_job_event_is_unimplemented(bus: Bus) -> None:
    fired: list[str] = []

    async def on_job(name: str, data: bytes) -> None:
        fired.append(name)

    class AlphaOnly(appcallback_pb2_grpc.AppCallbackServicer):  # type: ignore[misc]
        """An app whose AppCallback has no OnJobEvent (an SDK before the stable Jobs API)."""

    app = App("reminder_svc", bus)
    await app.double.start()
    runtime = DaprRuntime(DaprSettings.from_env(app.double.env()))
    runtime.add_job_handlers("reminder_svc", {"reminder:": on_job})
    from todo_kit.dapr_callback import AppCallbackAlpha, AppTokenGuard

    guard = AppTokenGuard(APP_TOKEN)
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(AlphaOnly(), app.server)
    appcallback_pb2_grpc.add_AppCallbackAlphaServicer_to_server(AppCallbackAlpha(runtime, guard), app.server)
    await app.server.start()
    try:
        await runtime.for_unit("reminder_svc").schedule_job("reminder:z", datetime.now(UTC), b"")
        await eventually(lambda: _true(fired == ["reminder:z"]), timeout=10, interval=0.05)
        assert app.double.fired[-1][2] == "OnJobEventAlpha1"
    finally:
        await runtime.stop()
        await app.stop()


async def test_commands_go_to_the_own_sidecar_with_the_dashed_app_id_user_token_trace_and_api_token(bus: Bus) -> None:
    caller = App("chat_svc", bus)
    target = App("task_svc", bus)
    await target.start()
    await caller.start()
    try:
        assert caller.runtime is not None
        bind_authorization("Bearer user-jwt")
        bind_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        channel = caller.runtime.for_unit("chat_svc").channel("task_svc")
        reply = json.loads(await channel.unary_unary("/test.Echo/Call")(b"hi"))
        assert reply["authorization"] == "Bearer user-jwt"
        assert reply["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        assert reply["dapr-caller-app-id"] == "chat-svc"
        (proxied,) = [c for c in caller.double.calls if c.method == "proxy /test.Echo/Call"]
        assert proxied.metadata["dapr-app-id"] == "task-svc"
        assert proxied.metadata["dapr-api-token"] == API_TOKEN
        assert "dapr-stream" not in proxied.metadata
        parts = [part async for part in channel.unary_stream("/test.Echo/Stream")(b"")]
        assert parts == [b"one", b"two"]
        streamed = [c for c in caller.double.calls if c.method == "proxy /test.Echo/Stream"]
        assert streamed[0].metadata["dapr-stream"] == "true"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/test.Echo/Call")(b"fail")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # the target's answer, unchanged
    finally:
        bind_authorization(None)
        bind_traceparent(None)
        await caller.stop()
        await target.stop()


async def test_secret_settings_are_read_from_the_secret_store_and_a_missing_one_names_the_setting(bus: Bus) -> None:
    app = App("task_svc", bus)
    await app.start()
    try:
        assert app.runtime is not None
        env = {"TODO_JWT_SECRET": "secret:todo-jwt", "TODO_DATABASE_URL": "secret:task-svc-database-url",
               "TODO_LOG_LEVEL": "INFO", "PATH": "secret:not-a-todo-setting"}  # fmt: skip
        resolved = await resolve_secret_settings(env, app.runtime.get_secret, "todo-secrets")
        assert resolved["TODO_JWT_SECRET"] == "s3cret-key"
        assert resolved["TODO_DATABASE_URL"] == "postgresql://x/{database}"
        assert resolved["PATH"] == "secret:not-a-todo-setting"
        secrets = [c for c in app.double.calls if c.method == "GetSecret"]
        assert {(c.request.store_name, c.request.key) for c in secrets} == {
            ("todo-secrets", "todo-jwt"), ("todo-secrets", "task-svc-database-url")}  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            await resolve_secret_settings(
                {"TODO_SMTP_PASSWORD": "secret:absent"}, app.runtime.get_secret, "todo-secrets"
            )
        message = str(caught.value)
        assert "TODO_SMTP_PASSWORD" in message and "absent" in message and "s3cret" not in message
    finally:
        await app.stop()


async def test_the_state_store_rate_limit_allows_the_burst_then_asks_to_wait(bus: Bus) -> None:
    app = App("task_svc", bus)
    await app.start()
    try:
        assert app.runtime is not None
        store = DaprStateRateLimitStore(app.runtime.stub, "todo-state", 60, 3, metadata=[("dapr-api-token", API_TOKEN)])
        now = 1000.0
        assert [await store.take("task_svc:alice", now) for _ in range(3)] == [None, None, None]
        wait = await store.take("task_svc:alice", now)
        assert wait == pytest.approx(1.0)
        assert await store.take("task_svc:bob", now) is None  # another user's bucket
        assert await store.take("task_svc:alice", now + 1.0) is None  # refilled one token
        saves = [c for c in app.double.calls if c.method == "SaveState"]
        assert all(s.request.states[0].options.concurrency == 1 for s in saves)  # CONCURRENCY_FIRST_WRITE
        assert all(s.request.states[0].metadata["ttlInSeconds"] for s in saves)
    finally:
        await app.stop()


async def test_concurrent_takes_of_one_bucket_never_exceed_the_burst(bus: Bus) -> None:
    app = App("task_svc", bus)
    await app.start()
    try:
        assert app.runtime is not None
        stores = [
            DaprStateRateLimitStore(app.runtime.stub, "todo-state", 60, 5, metadata=[("dapr-api-token", API_TOKEN)])
            for _ in range(4)
        ]  # four replicas
        results = await asyncio.gather(*(stores[i % 4].take("task_svc:carol", 50.0) for i in range(12)))
        assert sum(1 for r in results if r is None) <= 5
        conflicts = [c for c in app.double.calls if c.method == "SaveState"]
        assert len(conflicts) >= sum(1 for r in results if r is None)
    finally:
        await app.stop()
