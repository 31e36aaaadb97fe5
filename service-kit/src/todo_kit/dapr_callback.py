"""Dapr's callbacks into the app, served on the service's own grpc.aio server: subscriptions, events, jobs, health.

AppCallback.ListTopicSubscriptions lists the unit's subscriptions
(programmatic subscriptions: route /<app id>/<topic>, rawPayload, the
registry's dead-letter topic). OnTopicEvent hands the raw record (the outbox's
CloudEvent bytes) to the unit's handler and answers what the sidecar should do:
SUCCESS (handled, or a type the unit does not want), RETRY (the handler said
so or raised) or DROP (the handler raised DropEvent or said DROP, or the bytes
are not an event: dead-lettered by the sidecar). OnJobEvent (and
AppCallbackAlpha.OnJobEventAlpha1, the sidecar's fallback) runs the job's
handler; one that raises answers INTERNAL, so the sidecar fires the job again
per its failure policy.

Every call must carry `dapr-api-token: <APP_API_TOKEN>` when APP_API_TOKEN is
set (the sidecar sends it), or is refused UNAUTHENTICATED. These methods are
apart from user identity: KitInterceptor lets them through untouched
(CALLBACK_METHOD_PREFIXES), and a user's bearer token opens nothing here.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import grpc
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc

from todo_contracts import envelope
from todo_kit.request_context import bind_authorization, bind_traceparent
from todo_kit.runtime.dapr import DaprRuntime, dead_letter_topic, job_data_bytes
from todo_kit.runtime.port import DropEvent, HandlerOutcome, handler_for_job

log = logging.getLogger(__name__)

Status = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus
APP_TOKEN_METADATA = "dapr-api-token"


def route_of(app_id: str, topic: str) -> str:
    """The route of a unit's subscription to a topic."""
    return f"/{app_id}/{topic}"


class AppTokenGuard:
    """Admits a callback only with the sidecar's app token (when one is configured)."""

    def __init__(self, app_api_token: str) -> None:
        self._token = app_api_token.encode()

    async def admit(self, context: Any) -> None:
        """Aborts the call UNAUTHENTICATED unless it carries the app token; binds no user identity."""
        bind_authorization(None)
        if not self._token:
            return
        given = dict(context.invocation_metadata() or ()).get(APP_TOKEN_METADATA, "")
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self._token):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Dapr app API token missing or wrong")


class AppCallback(appcallback_pb2_grpc.AppCallbackServicer):  # type: ignore[misc]
    """Topic subscriptions and fired jobs of the units of a Dapr host."""

    def __init__(self, runtime: DaprRuntime, guard: AppTokenGuard) -> None:
        self._runtime = runtime
        self._guard = guard

    async def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        """The units' subscriptions, each with rawPayload and its dead-letter topic."""
        await self._guard.admit(context)
        pubsub = self._runtime.settings.pubsub
        found = [
            appcallback_pb2.TopicSubscription(
                pubsub_name=pubsub,
                topic=topic,
                metadata={"rawPayload": "true"},
                routes=appcallback_pb2.TopicRoutes(default=route_of(app_id, topic)),
                dead_letter_topic=dead_letter_topic(topic),
            )
            for app_id, subscriptions in sorted(self._runtime.subscriptions.items())
            for topic in sorted(subscriptions)
        ]
        return appcallback_pb2.ListTopicSubscriptionsResponse(subscriptions=found)

    async def OnTopicEvent(self, request: Any, context: Any) -> Any:
        """Hands one event to its subscription's handler; SUCCESS, RETRY or DROP."""
        await self._guard.admit(context)
        return appcallback_pb2.TopicEventResponse(status=await self._deliver(request))

    async def _deliver(self, request: Any) -> Any:
        subscription = None
        owner = ""
        for app_id, subscriptions in self._runtime.subscriptions.items():
            candidate = subscriptions.get(request.topic)
            if candidate is not None and request.path in ("", route_of(app_id, request.topic)):
                subscription, owner = candidate, app_id
                break
        if subscription is None or (request.pubsub_name and request.pubsub_name != self._runtime.settings.pubsub):
            log.error("an event for no subscription; dropped", extra={"topic": request.topic, "path": request.path})
            return Status.DROP
        try:
            event = envelope.decode(bytes(request.data))
        except envelope.EnvelopeError as exc:
            log.error(
                "an undecodable event; dropped (dead-lettered by the sidecar)",
                extra={"consumer": owner, "topic": request.topic, "dapr_event_id": request.id, "reason": str(exc)},
            )
            return Status.DROP
        if subscription.event_types and event.type not in subscription.event_types:
            return Status.SUCCESS
        bind_traceparent(event.traceparent)
        try:
            outcome = await subscription.handler(event)
        except DropEvent as exc:
            log.error(
                "event dropped by its handler (dead-lettered by the sidecar)",
                extra={"consumer": owner, "event_id": event.id, "type": event.type, "reason": exc.reason},
            )
            return Status.DROP
        except Exception as exc:
            log.warning(
                "event handler failed; the sidecar retries",
                extra={"consumer": owner, "event_id": event.id, "type": event.type, "error": f"{type(exc).__name__}"},
                exc_info=True,
            )
            return Status.RETRY
        if outcome is None or outcome is HandlerOutcome.SUCCESS:
            return Status.SUCCESS
        if outcome is HandlerOutcome.DROP:
            log.error("event dropped by its handler", extra={"consumer": owner, "event_id": event.id})
            return Status.DROP
        return Status.RETRY

    async def OnJobEvent(self, request: Any, context: Any) -> Any:
        """Runs a fired job's handler; an error status makes the sidecar fire it again (failure policy)."""
        await self._guard.admit(context)
        await run_job(self._runtime, request, context)
        return appcallback_pb2.JobEventResponse()

    async def OnInvoke(self, request: Any, context: Any) -> Any:
        """Not used: commands reach the services' own gRPC methods by proxying."""
        await self._guard.admit(context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "commands are served as gRPC methods, not OnInvoke")

    async def ListInputBindings(self, request: Any, context: Any) -> Any:
        """No input bindings."""
        await self._guard.admit(context)
        return appcallback_pb2.ListInputBindingsResponse()


class AppCallbackAlpha(appcallback_pb2_grpc.AppCallbackAlphaServicer):  # type: ignore[misc]
    """The sidecar's fallback for fired jobs (OnJobEventAlpha1): the same handler as OnJobEvent."""

    def __init__(self, runtime: DaprRuntime, guard: AppTokenGuard) -> None:
        self._runtime = runtime
        self._guard = guard

    async def OnJobEventAlpha1(self, request: Any, context: Any) -> Any:
        """Runs a fired job's handler."""
        await self._guard.admit(context)
        await run_job(self._runtime, request, context)
        return appcallback_pb2.JobEventResponse()


class AppCallbackHealthCheck(appcallback_pb2_grpc.AppCallbackHealthCheckServicer):  # type: ignore[misc]
    """The sidecar's app health check (with the app token like every callback)."""

    def __init__(self, guard: AppTokenGuard) -> None:
        self._guard = guard

    async def HealthCheck(self, request: Any, context: Any) -> Any:
        """Answers while the server runs."""
        await self._guard.admit(context)
        return appcallback_pb2.HealthCheckResponse()


async def run_job(runtime: DaprRuntime, request: Any, context: Any) -> None:
    """Runs the handler of a fired job; aborts INTERNAL when it raises or no handler exists (fired again later)."""
    name: str = request.name or request.method.removeprefix("job/")
    for app_id, handlers in runtime.job_handlers.items():
        handler = handler_for_job(handlers, name)
        if handler is None:
            continue
        try:
            await handler(name, job_data_bytes(request.data))
        except Exception as exc:
            log.warning("job handler failed; the sidecar fires it again", extra={"job": name, "app_id": app_id},
                        exc_info=True)  # fmt: skip
            await context.abort(grpc.StatusCode.INTERNAL, f"job {name} failed: {type(exc).__name__}")
        runtime.job_fired(app_id, name)
        return
    log.error("a fired job has no handler", extra={"job": name})
    await context.abort(grpc.StatusCode.INTERNAL, f"no handler for job {name}")


def add_callbacks(server: grpc.aio.Server, runtime: DaprRuntime) -> None:
    """Adds AppCallback, AppCallbackAlpha and AppCallbackHealthCheck, guarded by APP_API_TOKEN, to server."""
    guard = AppTokenGuard(runtime.settings.app_api_token)
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(AppCallback(runtime, guard), server)
    appcallback_pb2_grpc.add_AppCallbackAlphaServicer_to_server(AppCallbackAlpha(runtime, guard), server)
    appcallback_pb2_grpc.add_AppCallbackHealthCheckServicer_to_server(AppCallbackHealthCheck(guard), server)
