"""The Dapr runtime: a unit per process beside its daprd sidecar, talking to it over Dapr's gRPC API.

Publish: PublishEvent on the pub/sub component (TODO_DAPR_PUBSUB) with
metadata rawPayload "true" and partitionKey = the event's partition key (the
user), data content type application/cloudevents+protobuf and data = the
outbox's CloudEvent bytes, so Dapr's Kafka component writes the same record
(value, key) as the Kafka runtime does. Events go one after the other, in
order; publish() returns when the sidecar accepted every one.

Subscriptions: programmatic. The sidecar asks the app's AppCallback
ListTopicSubscriptions once at start; every subscription has the route
/<app id>/<topic>, metadata rawPayload "true" and the registry's dead-letter
topic. OnTopicEvent answers SUCCESS, RETRY or DROP from the handler's outcome
(todo_kit.dapr_callback); the sidecar retries (Resiliency policy) and
dead-letters.

Jobs: the Jobs API. ScheduleJob with the unit's own job name (Dapr scopes jobs
per app id), due_time in RFC 3339, data = Any(BytesValue), overwrite, and a
failure policy from the port's FailurePolicy; DeleteJob (a missing job is not
an error); the sidecar fires a due job on AppCallback.OnJobEvent (or
AppCallbackAlpha.OnJobEventAlpha1), and a handler that raises answers an
error so the sidecar fires it again per the failure policy.

Commands: gRPC to the own sidecar with metadata dapr-app-id (the target's
dashed Dapr app id, dapr_app_id()), dapr-stream "true" on streams, the
caller's authorization and traceparent, and dapr-api-token when DAPR_API_TOKEN
is set. Every call to the sidecar's own API carries dapr-api-token too.

Secrets: a setting given as `secret:<name>` is read from the secret store
(TODO_DAPR_SECRET_STORE) at start (resolve_secret_settings).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, jobs_pb2, metadata_pb2, pubsub_pb2, secret_pb2, state_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from todo_contracts import topics
from todo_kit.commands import command_channel, retry_options
from todo_kit.config import ConfigError, env_int, env_str
from todo_kit.messaging import OutgoingEvent
from todo_kit.runtime.port import FailurePolicy, JobExists, JobHandler, JobOptions, Subscription, UnitRuntime

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/cloudevents+protobuf"
"""The data content type of every published event (the Kafka runtime's content-type header)."""
BYTES_VALUE_TYPE_URL = "type.googleapis.com/google.protobuf.BytesValue"
"""How a job's data travels: google.protobuf.Any holding a BytesValue."""
SECRET_PREFIX = "secret:"
"""A setting whose value starts with this names a secret of the secret store instead."""
DEFAULT_RETRY_INTERVAL_SECONDS = 5
"""A failed job's pause before it fires again when the port asks for backoff (Dapr has only constant intervals)."""
SIDECAR_PROBE_SECONDS = 5.0
"""How often the sidecar watch asks whether the sidecar answers."""


def dapr_app_id(app_id: str) -> str:
    """The Dapr app id of a unit: a DNS label, so its app id with "_" as "-" (task_svc -> task-svc)."""
    return app_id.replace("_", "-")


@dataclass(frozen=True)
class DaprSettings:
    """Settings of the Dapr runtime (environment).

    DAPR_GRPC_PORT: the sidecar's gRPC port (set by the injector; default 50001).
    DAPR_HTTP_PORT: the sidecar's HTTP port, for the health wait (default 3500).
    TODO_DAPR_HOST: where the sidecar listens (default 127.0.0.1).
    DAPR_API_TOKEN: the sidecar's API token, sent as dapr-api-token on every call to it (empty: none).
    APP_API_TOKEN: the token the sidecar sends on every callback; when set, a callback without it is refused.
    TODO_DAPR_PUBSUB / TODO_DAPR_SECRET_STORE / TODO_DAPR_STATE_STORE: component names
      (default todo-pubsub, todo-secrets, todo-state).
    TODO_DAPR_CONVERSATION: the Conversation component of the chat service's language model (empty: none).
    TODO_DAPR_WAIT_SECONDS: how long a start waits for the sidecar (1 to 600, default 60).
    TODO_DAPR_SIDECAR_DOWN_SECONDS: how long the sidecar may not answer before the unit is NOT_SERVING
      (1 to 3600, default 30).
    TODO_COMMAND_TIMEOUT_SECONDS: the deadline of a command made without one (1 to 600, default 15).
    """

    grpc_port: int = 50001
    http_port: int = 3500
    host: str = "127.0.0.1"
    api_token: str = ""
    app_api_token: str = ""
    pubsub: str = "todo-pubsub"
    secret_store: str = "todo-secrets"
    state_store: str = "todo-state"
    conversation: str = ""
    wait_seconds: int = 60
    sidecar_down_seconds: int = 30
    command_timeout_seconds: int = 15

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DaprSettings:
        """Reads the settings; raises ConfigError naming the first bad one."""
        env = os.environ if env is None else env
        settings = cls(
            grpc_port=env_int(env, "DAPR_GRPC_PORT", 50001, 1, 65535),
            http_port=env_int(env, "DAPR_HTTP_PORT", 3500, 1, 65535),
            host=env_str(env, "TODO_DAPR_HOST", "127.0.0.1"),
            api_token=env.get("DAPR_API_TOKEN", ""),
            app_api_token=env.get("APP_API_TOKEN", ""),
            pubsub=env_str(env, "TODO_DAPR_PUBSUB", "todo-pubsub"),
            secret_store=env_str(env, "TODO_DAPR_SECRET_STORE", "todo-secrets"),
            state_store=env_str(env, "TODO_DAPR_STATE_STORE", "todo-state"),
            conversation=env.get("TODO_DAPR_CONVERSATION", ""),
            wait_seconds=env_int(env, "TODO_DAPR_WAIT_SECONDS", 60, 1, 600),
            sidecar_down_seconds=env_int(env, "TODO_DAPR_SIDECAR_DOWN_SECONDS", 30, 1, 3600),
            command_timeout_seconds=env_int(env, "TODO_COMMAND_TIMEOUT_SECONDS", 15, 1, 600),
        )
        for name, value in (("DAPR_API_TOKEN", settings.api_token), ("APP_API_TOKEN", settings.app_api_token)):
            # A token with a line break or non-ASCII cannot travel as gRPC metadata.
            if value and not (value.isascii() and value.isprintable()):
                raise ConfigError(f"{name} must be printable ASCII")
        return settings

    @property
    def grpc_address(self) -> str:
        """host:port of the sidecar's gRPC API."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def api_metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every call to the sidecar carries (its API token, when configured)."""
        return (("dapr-api-token", self.api_token),) if self.api_token else ()


def sidecar_channel(settings: DaprSettings) -> grpc.aio.Channel:
    """A channel to the sidecar's own API (no user identity is forwarded on it)."""
    return grpc.aio.insecure_channel(settings.grpc_address, options=retry_options())


async def wait_for_sidecar(settings: DaprSettings) -> None:
    """Waits (bounded by TODO_DAPR_WAIT_SECONDS) until the sidecar's /v1.0/healthz/outbound answers.

    The Dapr SDK's own wait (dapr.aio.clients.health.DaprHealth), told where
    the sidecar is; ConfigError-like SystemExit with a clear message when it
    does not answer in time.
    """
    from dapr.aio.clients.health import DaprHealth
    from dapr.conf import settings as sdk_settings

    sdk_settings.DAPR_RUNTIME_HOST = settings.host
    sdk_settings.DAPR_HTTP_PORT = settings.http_port
    sdk_settings.DAPR_HTTP_ENDPOINT = None
    sdk_settings.DAPR_HEALTH_TIMEOUT = settings.wait_seconds
    sdk_settings.DAPR_API_TOKEN = settings.api_token or None
    try:
        await DaprHealth.wait_for_sidecar()
    except TimeoutError:
        raise SystemExit(
            f"the Dapr sidecar did not answer at http://{settings.host}:{settings.http_port}/v1.0/healthz/outbound "
            f"within {settings.wait_seconds} s (DAPR_HTTP_PORT, TODO_DAPR_WAIT_SECONDS): is daprd running?"
        ) from None


async def resolve_secret_settings(
    env: Mapping[str, str], fetch: Callable[[str], Awaitable[str | None]], store: str
) -> dict[str, str]:
    """env with every TODO_* setting given as `secret:<name>` replaced by that secret's value.

    fetch(name) returns the value of the single-key secret `name` (its key
    equals its name) or None when the store has no such secret; a missing
    secret stops the process naming the setting and the secret, never a value.
    """
    resolved = dict(env)
    for setting, value in sorted(env.items()):
        if not setting.startswith("TODO_") or not value.startswith(SECRET_PREFIX):
            continue
        name = value[len(SECRET_PREFIX) :].strip()
        if not name:
            raise ConfigError(f"{setting} names no secret (expected {SECRET_PREFIX}<name>)")
        secret = await fetch(name)
        if secret is None:
            raise ConfigError(f"{setting} names the secret {name!r}, which the secret store {store!r} does not have")
        resolved[setting] = secret
    return resolved


def job_failure_policy(policy: FailurePolicy) -> common_pb2.JobFailurePolicy:
    """The port's FailurePolicy as Dapr's: no retries -> drop; else a constant interval, unbounded unless limited."""
    if policy.max_retries == 0:
        return common_pb2.JobFailurePolicy(drop=common_pb2.JobFailurePolicyDrop())
    seconds = policy.interval.total_seconds() if policy.interval is not None else DEFAULT_RETRY_INTERVAL_SECONDS
    interval = duration_pb2.Duration()
    interval.FromNanoseconds(int(seconds * 1_000_000_000))
    constant = common_pb2.JobFailurePolicyConstant(interval=interval)
    if policy.max_retries is not None:
        constant.max_retries = policy.max_retries
    return common_pb2.JobFailurePolicy(constant=constant)


def rfc3339(moment: datetime) -> str:
    """A timezone-aware datetime as RFC 3339 in UTC (Dapr's due_time); ValueError for a naive one."""
    if moment.tzinfo is None:
        raise ValueError("a job's due time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_data(data: bytes) -> any_pb2.Any:
    """A job's data as the Jobs API carries it: Any(BytesValue(data))."""
    return any_pb2.Any(type_url=BYTES_VALUE_TYPE_URL, value=wrappers_pb2.BytesValue(value=data).SerializeToString())


def job_data_bytes(data: any_pb2.Any) -> bytes:
    """The bytes a job was scheduled with (the Any's raw value when it is not a BytesValue)."""
    if data.type_url == BYTES_VALUE_TYPE_URL:
        value = wrappers_pb2.BytesValue()
        value.ParseFromString(data.value)
        return bytes(value.value)
    return bytes(data.value)


class DaprRuntime:
    """The runtime port on a Dapr sidecar for the unit of one process."""

    def __init__(self, settings: DaprSettings) -> None:
        self.settings = settings
        self._channel: grpc.aio.Channel | None = None
        self._commands: dict[str, grpc.aio.Channel] = {}
        self.subscriptions: dict[str, dict[str, Subscription]] = {}
        """app id -> topic -> subscription (served on AppCallback)."""
        self.job_handlers: dict[str, dict[str, JobHandler]] = {}
        self._scheduled: dict[str, set[str]] = {}
        self._list_jobs = True

    # --- set-up -------------------------------------------------------------

    @property
    def stub(self) -> dapr_pb2_grpc.DaprStub:
        """Dapr's gRPC API on the sidecar."""
        if self._channel is None:
            self._channel = sidecar_channel(self.settings)
        return dapr_pb2_grpc.DaprStub(self._channel)

    def for_unit(self, app_id: str) -> UnitRuntime:
        """The port bound to one unit."""
        return UnitRuntime(self, app_id)

    def add_subscription(self, app_id: str, subscription: Subscription) -> None:
        """Registers a unit's subscription (listed to the sidecar by ListTopicSubscriptions)."""
        mine = self.subscriptions.setdefault(app_id, {})
        if subscription.topic in mine:
            raise ValueError(f"{app_id} subscribes to {subscription.topic} twice")
        mine[subscription.topic] = subscription

    def add_job_handlers(self, app_id: str, handlers: dict[str, JobHandler]) -> None:
        """Registers a unit's job handlers (fired by the sidecar on OnJobEvent)."""
        self.job_handlers.setdefault(app_id, {}).update(handlers)

    def workers(self) -> list[tuple[str, str, Callable[[], Any]]]:
        """One loop: the sidecar watch (the unit is NOT_SERVING while its sidecar does not answer)."""
        return [("sidecar watch", "host", self.watch_sidecar)]

    async def watch_sidecar(self) -> None:
        """Asks the sidecar for its metadata every few seconds; ends (for the supervisor) when it stays silent."""
        loop = asyncio.get_running_loop()
        answered = loop.time()
        while True:
            try:
                await self.stub.GetMetadata(
                    metadata_pb2.GetMetadataRequest(),
                    metadata=self.settings.api_metadata,
                    timeout=SIDECAR_PROBE_SECONDS,
                )
                answered = loop.time()
            except grpc.aio.AioRpcError as exc:
                if loop.time() - answered > self.settings.sidecar_down_seconds:
                    raise ConnectionError(
                        f"the Dapr sidecar at {self.settings.grpc_address} did not answer for "
                        f"{self.settings.sidecar_down_seconds} s: {exc.code().name}"
                    ) from None
            await asyncio.sleep(SIDECAR_PROBE_SECONDS)

    # --- the port -------------------------------------------------------------

    async def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Publishes each event in order with rawPayload and its partition key; raises if the sidecar refuses one."""
        for event in events:
            request = pubsub_pb2.PublishEventRequest(
                pubsub_name=self.settings.pubsub,
                topic=event.topic,
                data=event.payload,
                data_content_type=CONTENT_TYPE,
                metadata={"rawPayload": "true", "partitionKey": event.partition_key},
            )
            await self.stub.PublishEvent(
                request, metadata=self.settings.api_metadata, timeout=float(self.settings.command_timeout_seconds)
            )

    def channel(self, target_app_id: str) -> grpc.aio.Channel:
        """A command channel to target_app_id through the own sidecar (gRPC proxying with dapr-app-id)."""
        if target_app_id not in self._commands:
            self._commands[target_app_id] = command_channel(
                self.settings.grpc_address,
                (("dapr-app-id", dapr_app_id(target_app_id)), *self.settings.api_metadata),
                options=retry_options(),
                default_timeout=float(self.settings.command_timeout_seconds),
                stream_metadata=(("dapr-stream", "true"),),
            )
        return self._commands[target_app_id]

    async def schedule_job(
        self, app_id: str, name: str, due_time: datetime, data: bytes, options: JobOptions | None = None
    ) -> None:
        """ScheduleJob with the unit's job name; JobExists when overwrite is off and the sidecar has the job."""
        options = options or JobOptions()
        if not name:
            raise ValueError("a job needs a name")
        job = jobs_pb2.Job(
            name=name,
            due_time=rfc3339(due_time),
            data=job_data(data),
            failure_policy=job_failure_policy(options.failure_policy),
        )
        try:
            await self.stub.ScheduleJob(
                jobs_pb2.ScheduleJobRequest(job=job, overwrite=options.overwrite),
                metadata=self.settings.api_metadata,
                timeout=float(self.settings.command_timeout_seconds),
            )
        except grpc.aio.AioRpcError as exc:
            if not options.overwrite and _is_already_exists(exc):
                raise JobExists(name) from None
            raise
        self._scheduled.setdefault(app_id, set()).add(name)

    async def delete_job(self, app_id: str, name: str) -> None:
        """DeleteJob; NOT_FOUND (or the sidecar's "not found" message) is not an error."""
        try:
            await self.stub.DeleteJob(
                jobs_pb2.DeleteJobRequest(name=name),
                metadata=self.settings.api_metadata,
                timeout=float(self.settings.command_timeout_seconds),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND and "not found" not in (exc.details() or "").lower():
                raise
        self._scheduled.get(app_id, set()).discard(name)

    def job_fired(self, app_id: str, name: str) -> None:
        """Notes that a job fired and was handled (for pending_jobs without ListJobs)."""
        self._scheduled.get(app_id, set()).discard(name)

    # --- hosting --------------------------------------------------------------

    async def pending_jobs(self, app_id: str) -> list[str]:
        """The sidecar's ListJobs for this app; without it, the names scheduled here and not seen firing."""
        if self._list_jobs:
            try:
                response = await self.stub.ListJobs(
                    jobs_pb2.ListJobsRequest(),
                    metadata=self.settings.api_metadata,
                    timeout=float(self.settings.command_timeout_seconds),
                )
                return sorted(job.name for job in response.jobs)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                self._list_jobs = False
        return sorted(self._scheduled.get(app_id, set()))

    async def get_secret(self, name: str) -> str | None:
        """The value of the single-key secret `name` of the secret store; None when the store has none."""
        try:
            response = await self.stub.GetSecret(
                secret_pb2.GetSecretRequest(store_name=self.settings.secret_store, key=name),
                metadata=self.settings.api_metadata,
                timeout=float(self.settings.command_timeout_seconds),
            )
        except grpc.aio.AioRpcError as exc:
            if (
                exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
                or "not found" in (exc.details() or "").lower()
            ):
                return None
            raise
        data: dict[str, str] = dict(response.data)
        if name in data:
            return data[name]
        return next(iter(data.values())) if len(data) == 1 else None

    async def prune(self, before: datetime, dead_letters_before: datetime) -> dict[str, int]:
        """Nothing of the runtime's own to prune: topics, jobs and state live in the sidecar's components."""
        return {}

    async def stop(self) -> None:
        """Closes the channels to the sidecar."""
        for channel in self._commands.values():
            await channel.close()
        self._commands.clear()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def _is_already_exists(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() == grpc.StatusCode.ALREADY_EXISTS or "already exists" in (exc.details() or "").lower()


def dead_letter_topic(topic: str) -> str:
    """The registry's dead-letter topic of a topic."""
    try:
        return topics.topic_named(topic).dead_letter
    except KeyError:
        return topic + topics.DEAD_LETTER_SUFFIX


class DaprStateRateLimitStore:
    """Per-key token buckets in the Dapr state store (todo_kit.ratelimit.RateLimitStore).

    Each key's bucket is one state item {"tokens", "at"} written with ETag
    first-write concurrency, so replicas counting the same user never lose a
    take: a conflicting write is read and tried again (at most MAX_ATTEMPTS
    times; then the take is refused for a second). Items carry a TTL of one
    full refill, so idle users' buckets vanish by themselves.
    """

    MAX_ATTEMPTS = 5
    KEY_PREFIX = "ratelimit||"

    def __init__(
        self,
        stub: dapr_pb2_grpc.DaprStub,
        store: str,
        rate_per_minute: int,
        burst: int,
        *,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        if rate_per_minute <= 0 or burst <= 0:
            raise ValueError("a rate limit needs a positive rate and burst")
        self._stub = stub
        self._store = store
        self._rate = rate_per_minute / 60.0
        self._burst = float(burst)
        self._metadata = tuple(metadata)
        self._ttl = str(max(60, math.ceil(burst / self._rate)))

    async def take(self, key: str, now: float) -> float | None:
        """Takes one token of key's bucket: None when allowed, else the seconds until one is there."""
        item_key = self.KEY_PREFIX + key
        for _ in range(self.MAX_ATTEMPTS):
            got = await self._stub.GetState(
                state_pb2.GetStateRequest(store_name=self._store, key=item_key), metadata=self._metadata
            )
            tokens, at = self._burst, now
            if got.data:
                try:
                    stored = json.loads(got.data)
                    tokens, at = float(stored["tokens"]), float(stored["at"])
                except (ValueError, KeyError, TypeError):
                    tokens, at = self._burst, now  # an unreadable bucket starts full
            tokens = min(self._burst, tokens + max(0.0, now - at) * self._rate)
            if tokens < 1.0:
                return (1.0 - tokens) / self._rate
            item = common_pb2.StateItem(
                key=item_key,
                value=json.dumps({"tokens": tokens - 1.0, "at": now}).encode(),
                options=common_pb2.StateOptions(concurrency=common_pb2.StateOptions.CONCURRENCY_FIRST_WRITE),
                metadata={"ttlInSeconds": self._ttl},
            )
            if got.etag:
                item.etag.value = got.etag
            try:
                await self._stub.SaveState(
                    state_pb2.SaveStateRequest(store_name=self._store, states=[item]), metadata=self._metadata
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION):
                    continue  # another take wrote first: read again
                raise
            return None
        return 1.0
