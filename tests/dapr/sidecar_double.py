"""A double of Dapr's sidecar (daprd): Dapr's gRPC API from the SDK's generated code, driving the app's callbacks.

daprd cannot be built here, so the Dapr runtime is checked against this double
(as the Dapr Python SDK checks its client against a FakeDaprSidecar). It
implements what the runtime uses, the way Dapr's documentation specifies it:

- Pub/sub: PublishEvent appends the record (topic, partitionKey as the key,
  the data bytes unchanged when rawPayload is "true") to a Bus shared by the
  doubles of several apps. At start a double asks its app's
  ListTopicSubscriptions (retrying until the app answers) and then delivers
  every record of a subscribed topic to OnTopicEvent, in order, from the
  first record (a new consumer group reading from the oldest offset):
  SUCCESS moves on; RETRY or an error other than UNIMPLEMENTED is delivered
  again with backoff, and after `max_attempts` the record goes to the
  subscription's dead-letter topic; DROP dead-letters at once; UNIMPLEMENTED
  drops it (Dapr's documented meaning).
- Jobs: ScheduleJob (overwrite, ALREADY_EXISTS otherwise), GetJob, DeleteJob
  (NOT_FOUND when missing), ListJobs; a due job fires on AppCallback.OnJobEvent
  (falling back to AppCallbackAlpha.OnJobEventAlpha1 on UNIMPLEMENTED), never
  before its due time, again after its failure policy's interval when the app
  answers an error, until max_retries is used up (drop: never again).
- Secrets (GetSecret, GetBulkSecret) from a dict; state (GetState, SaveState,
  DeleteState) with ETags and first-write concurrency (ABORTED on a conflict).
- gRPC proxying: a call for any other method carrying `dapr-app-id` is
  forwarded to that app's port with its metadata (unary, or server-streaming
  with `dapr-stream: true`), answers and errors passed back unchanged.
- Tokens: with api_token set, every call without `dapr-api-token` equal to it
  is refused UNAUTHENTICATED; with app_token set, every callback carries it.
- HTTP /v1.0/healthz/outbound (what the SDK's health wait polls).

Every call the double receives is recorded (method, request, metadata) for the
contract tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from aiohttp import web
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import (
    appcallback_pb2,
    appcallback_pb2_grpc,
    dapr_pb2_grpc,
    jobs_pb2,
    metadata_pb2,
    secret_pb2,
    state_pb2,
)
from google.protobuf import empty_pb2

DAPR_SERVICE = "/dapr.proto.runtime.v1.Dapr/"
Status = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus


@dataclass
class Record:
    """One record on a topic of the bus."""

    topic: str
    key: str
    data: bytes
    content_type: str
    metadata: dict[str, str]


@dataclass
class Bus:
    """Topics shared by the doubles of several apps (the Kafka cluster behind their pub/sub components)."""

    topics: dict[str, list[Record]] = field(default_factory=dict)
    apps: dict[str, int] = field(default_factory=dict)
    """Dapr app id -> the app's port (where proxied calls go)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, record: Record) -> None:
        """Appends a record and wakes the subscribers."""
        self.topics.setdefault(record.topic, []).append(record)
        self.changed.set()
        self.changed = asyncio.Event()

    def records(self, topic: str) -> list[Record]:
        """The records of a topic so far."""
        return list(self.topics.get(topic, []))


@dataclass
class StoredJob:
    job: jobs_pb2.Job
    due: float
    failures: int = 0


@dataclass
class Call:
    """One call the double received."""

    method: str
    request: Any
    metadata: dict[str, str]


def _parse_due(job: jobs_pb2.Job) -> float:
    if not job.due_time:
        raise ValueError("the double supports due_time jobs only")
    return datetime.fromisoformat(job.due_time.replace("Z", "+00:00")).astimezone(UTC).timestamp()


class SidecarDouble(dapr_pb2_grpc.DaprServicer):  # type: ignore[misc]
    """One app's sidecar."""

    def __init__(
        self,
        app_id: str,
        app_port: int,
        bus: Bus,
        *,
        api_token: str = "",
        app_token: str = "",
        secrets: Mapping[str, str] | None = None,
        max_attempts: int = 5,
        retry_delay: float = 0.05,
    ) -> None:
        self.app_id = app_id
        self.app_port = app_port
        self.bus = bus
        self.api_token = api_token
        self.app_token = app_token
        self.secrets = dict(secrets or {})
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.calls: list[Call] = []
        self.callbacks: list[Call] = []
        self.subscriptions: list[appcallback_pb2.TopicSubscription] = []
        self.subscribed = asyncio.Event()
        self.jobs: dict[str, StoredJob] = {}
        self.fired: list[tuple[str, bytes, str]] = []  # (job name, Any value bytes, callback used)
        self.deliveries: list[tuple[str, int, int]] = []  # (topic, offset, status or -1 for an error)
        self.dropped: list[tuple[str, int]] = []
        self.state: dict[str, tuple[bytes, str]] = {}
        self._etags = itertools.count(1)
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.http_port = 0
        self._http: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._app_channel: grpc.aio.Channel | None = None
        self._proxy_channels: dict[int, grpc.aio.Channel] = {}
        self.job_wake = asyncio.Event()
        bus.apps[app_id] = app_port

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Serves Dapr's gRPC API and the HTTP health endpoint on free loopback ports; starts delivering."""
        self.server = grpc.aio.server()
        dapr_pb2_grpc.add_DaprServicer_to_server(self, self.server)
        self.server.add_generic_rpc_handlers([_Proxy(self)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        app = web.Application()

        async def healthz(request: web.Request) -> web.Response:
            if self.api_token and request.headers.get("dapr-api-token") != self.api_token:
                return web.Response(status=401)
            return web.Response(status=204)

        app.router.add_get("/v1.0/healthz/outbound", healthz)
        app.router.add_get("/v1.0/healthz", healthz)
        self._http = web.AppRunner(app)
        await self._http.setup()
        site = web.TCPSite(self._http, "127.0.0.1", 0)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._app_channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.app_port}")
        self._tasks.append(asyncio.create_task(self._subscribe_and_deliver()))
        self._tasks.append(asyncio.create_task(self._fire_jobs()))

    async def stop(self) -> None:
        """Stops delivering and serving."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.stop(0)
        if self._http is not None:
            await self._http.cleanup()
        for channel in [self._app_channel, *self._proxy_channels.values()]:
            if channel is not None:
                await channel.close()

    def env(self) -> dict[str, str]:
        """The environment an app beside this sidecar gets (as the injector sets it)."""
        env = {"DAPR_GRPC_PORT": str(self.port), "DAPR_HTTP_PORT": str(self.http_port), "TODO_DAPR_HOST": "127.0.0.1"}
        if self.api_token:
            env["DAPR_API_TOKEN"] = self.api_token
        if self.app_token:
            env["APP_API_TOKEN"] = self.app_token
        return env

    # --- the API's admission ----------------------------------------------------

    async def _admit(self, name: str, request: Any, context: Any) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        self.calls.append(Call(name, request, metadata))
        if self.api_token and metadata.get("dapr-api-token") != self.api_token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong dapr-api-token")

    def _callback_metadata(self) -> list[tuple[str, str]]:
        return [("dapr-api-token", self.app_token)] if self.app_token else []

    # --- pub/sub ---------------------------------------------------------------

    async def PublishEvent(self, request: Any, context: Any) -> Any:
        await self._admit("PublishEvent", request, context)
        metadata = dict(request.metadata)
        if metadata.get("rawPayload") != "true":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the double carries rawPayload records only")
        key = metadata.get("partitionKey", metadata.get("__key", ""))
        self.bus.append(Record(request.topic, key, bytes(request.data), request.data_content_type, metadata))
        return empty_pb2.Empty()

    async def _subscribe_and_deliver(self) -> None:
        assert self._app_channel is not None
        stub = appcallback_pb2_grpc.AppCallbackStub(self._app_channel)
        while True:
            try:
                reply = await stub.ListTopicSubscriptions(
                    empty_pb2.Empty(), metadata=self._callback_metadata(), timeout=2
                )
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        self.callbacks.append(Call("ListTopicSubscriptions", None, {}))
        self.subscriptions = list(reply.subscriptions)
        self.subscribed.set()
        await asyncio.gather(*(self._consume(stub, s) for s in self.subscriptions))

    async def _consume(self, stub: Any, subscription: Any) -> None:
        """Delivers a topic's records to one subscription, one after the other (a partition's order)."""
        offset = 0
        while True:
            records = self.bus.topics.get(subscription.topic, [])
            if offset >= len(records):
                await self.bus.changed.wait()
                continue
            await self._deliver(stub, subscription, offset, records[offset])
            offset += 1

    async def _deliver(self, stub: Any, subscription: Any, offset: int, record: Record) -> None:
        raw = subscription.metadata.get("rawPayload") == "true"
        request = appcallback_pb2.TopicEventRequest(
            id=str(uuid.uuid4()), source=self.app_id, type="com.dapr.event.sent", spec_version="1.0",
            data_content_type=record.content_type if raw else "application/cloudevents+json",
            data=record.data, topic=record.topic, pubsub_name=subscription.pubsub_name,
            path=subscription.routes.default,
        )  # fmt: skip
        delay = self.retry_delay
        for _ in range(self.max_attempts):
            try:
                reply = await stub.OnTopicEvent(request, metadata=self._callback_metadata(), timeout=30)
                status = reply.status
            except grpc.aio.AioRpcError as exc:
                self.deliveries.append((record.topic, offset, -1))
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self.dropped.append((record.topic, offset))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self.deliveries.append((record.topic, offset, status))
            if status == Status.SUCCESS:
                return
            if status == Status.DROP:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        self.dropped.append((record.topic, offset))
        if subscription.dead_letter_topic:
            self.bus.append(
                Record(subscription.dead_letter_topic, record.key, record.data, record.content_type, record.metadata)
            )

    # --- jobs ------------------------------------------------------------------

    async def ScheduleJob(self, request: Any, context: Any) -> Any:
        await self._admit("ScheduleJob", request, context)
        job = request.job
        if not job.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a job needs a name")
        if job.name in self.jobs and not request.overwrite:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"job {job.name} already exists")
        try:
            due = _parse_due(job)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        stored = jobs_pb2.Job()
        stored.CopyFrom(job)
        self.jobs[job.name] = StoredJob(stored, due)
        self.job_wake.set()
        return jobs_pb2.ScheduleJobResponse()

    async def GetJob(self, request: Any, context: Any) -> Any:
        await self._admit("GetJob", request, context)
        if request.name not in self.jobs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.name} not found")
        return jobs_pb2.GetJobResponse(job=self.jobs[request.name].job)

    async def DeleteJob(self, request: Any, context: Any) -> Any:
        await self._admit("DeleteJob", request, context)
        if self.jobs.pop(request.name, None) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.name} not found")
        return jobs_pb2.DeleteJobResponse()

    async def ListJobs(self, request: Any, context: Any) -> Any:
        await self._admit("ListJobs", request, context)
        return jobs_pb2.ListJobsResponse(jobs=[stored.job for stored in self.jobs.values()])

    async def _fire_jobs(self) -> None:
        assert self._app_channel is not None
        stub = appcallback_pb2_grpc.AppCallbackStub(self._app_channel)
        alpha = appcallback_pb2_grpc.AppCallbackAlphaStub(self._app_channel)
        while True:
            now = datetime.now(UTC).timestamp()
            due = [s for s in self.jobs.values() if s.due <= now]
            for stored in due:
                await self._fire(stub, alpha, stored)
            upcoming = [s.due - now for s in self.jobs.values() if s.due > now]
            self.job_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.job_wake.wait(), min([0.05, *upcoming]))

    async def _fire(self, stub: Any, alpha: Any, stored: StoredJob) -> None:
        job = stored.job
        request = appcallback_pb2.JobEventRequest(
            name=job.name, data=job.data, method=f"job/{job.name}", content_type="application/protobuf"
        )
        used = "OnJobEvent"
        try:
            try:
                await stub.OnJobEvent(request, metadata=self._callback_metadata(), timeout=30)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                used = "OnJobEventAlpha1"
                await alpha.OnJobEventAlpha1(request, metadata=self._callback_metadata(), timeout=30)
        except grpc.aio.AioRpcError:
            self.fired.append((job.name, job.data.value, used + ":error"))
            stored.failures += 1
            policy = job.failure_policy
            if policy.HasField("drop"):
                self.jobs.pop(job.name, None)
                return
            constant = policy.constant if policy.HasField("constant") else common_pb2.JobFailurePolicyConstant()
            if constant.HasField("max_retries") and stored.failures > constant.max_retries:
                self.jobs.pop(job.name, None)
                return
            interval = constant.interval.ToTimedelta().total_seconds() if constant.HasField("interval") else 1.0
            stored.due = datetime.now(UTC).timestamp() + interval
            return
        self.fired.append((job.name, job.data.value, used))
        if self.jobs.get(job.name) is stored:
            del self.jobs[job.name]

    # --- secrets and state --------------------------------------------------------

    async def GetSecret(self, request: Any, context: Any) -> Any:
        await self._admit("GetSecret", request, context)
        if request.key not in self.secrets:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"secret {request.key} not found")
        return secret_pb2.GetSecretResponse(data={request.key: self.secrets[request.key]})

    async def GetBulkSecret(self, request: Any, context: Any) -> Any:
        await self._admit("GetBulkSecret", request, context)
        return secret_pb2.GetBulkSecretResponse(
            data={k: secret_pb2.SecretResponse(secrets={k: v}) for k, v in self.secrets.items()}
        )

    async def GetState(self, request: Any, context: Any) -> Any:
        await self._admit("GetState", request, context)
        value, etag = self.state.get(request.key, (b"", ""))
        return state_pb2.GetStateResponse(data=value, etag=etag)

    async def SaveState(self, request: Any, context: Any) -> Any:
        await self._admit("SaveState", request, context)
        first_write = common_pb2.StateOptions.CONCURRENCY_FIRST_WRITE
        for item in request.states:
            current = self.state.get(item.key)
            if item.HasField("etag") and item.etag.value:
                if current is None or current[1] != item.etag.value:
                    await context.abort(grpc.StatusCode.ABORTED, f"possible etag mismatch for {item.key}")
            elif item.options.concurrency == first_write and current is not None:
                await context.abort(grpc.StatusCode.ABORTED, f"first-write: {item.key} exists and no etag was given")
        for item in request.states:
            self.state[item.key] = (bytes(item.value), str(next(self._etags)))
        return empty_pb2.Empty()

    async def DeleteState(self, request: Any, context: Any) -> Any:
        await self._admit("DeleteState", request, context)
        current = self.state.get(request.key)
        if request.HasField("etag") and request.etag.value and (current is None or current[1] != request.etag.value):
            await context.abort(grpc.StatusCode.ABORTED, f"possible etag mismatch for {request.key}")
        self.state.pop(request.key, None)
        return empty_pb2.Empty()

    async def GetMetadata(self, request: Any, context: Any) -> Any:
        await self._admit("GetMetadata", request, context)
        return metadata_pb2.GetMetadataResponse(id=self.app_id)

    # --- proxying --------------------------------------------------------------

    def proxy_channel(self, port: int) -> grpc.aio.Channel:
        if port not in self._proxy_channels:
            self._proxy_channels[port] = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        return self._proxy_channels[port]


HOP_METADATA = {"dapr-app-id", "dapr-stream", "dapr-api-token", "user-agent", "content-type", "te", "grpc-timeout"}


class _Proxy(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Forwards calls that are not Dapr's API to the app named by dapr-app-id, like daprd's gRPC proxy."""

    def __init__(self, sidecar: SidecarDouble) -> None:
        self.sidecar = sidecar

    def service(self, details: Any) -> Any:
        method: str = details.method
        if method.startswith(DAPR_SERVICE):
            return None
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        sidecar = self.sidecar
        target = metadata.get("dapr-app-id", "")
        forwarded = [(k, v) for k, v in metadata.items() if k not in HOP_METADATA and not k.startswith("grpc-")]
        forwarded.append(("dapr-caller-app-id", sidecar.app_id))

        async def refuse(context: Any) -> bool:
            sidecar.calls.append(Call("proxy " + method, None, metadata))
            if sidecar.api_token and metadata.get("dapr-api-token") != sidecar.api_token:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong dapr-api-token")
            if target not in sidecar.bus.apps:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"no app with the Dapr app id {target!r}")
            return False

        if metadata.get("dapr-stream") == "true":

            async def stream(request: bytes, context: Any) -> Any:
                await refuse(context)
                channel = sidecar.proxy_channel(sidecar.bus.apps[target])
                call = channel.unary_stream(method)(request, metadata=forwarded, timeout=context.time_remaining())
                try:
                    async for reply in call:
                        yield reply
                except grpc.aio.AioRpcError as exc:
                    await context.abort(exc.code(), exc.details() or "", tuple(exc.trailing_metadata() or ()))

            return grpc.unary_stream_rpc_method_handler(stream)

        async def unary(request: bytes, context: Any) -> bytes:
            await refuse(context)
            channel = sidecar.proxy_channel(sidecar.bus.apps[target])
            try:
                reply: bytes = await channel.unary_unary(method)(
                    request, metadata=forwarded, timeout=context.time_remaining()
                )
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "", tuple(exc.trailing_metadata() or ()))
            return reply

        return grpc.unary_unary_rpc_method_handler(unary)
