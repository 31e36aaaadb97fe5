"""The Dapr runtime's pure parts: settings, job shapes, failure policies, app ids; callbacks kept apart from users."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
import pytest
from dapr.proto.runtime.v1 import appcallback_pb2_grpc
from google.protobuf import empty_pb2, wrappers_pb2

from todo_kit.auth import TokenVerifier, issue_token
from todo_kit.config import ConfigError, Settings
from todo_kit.dapr_callback import add_callbacks
from todo_kit.runtime.dapr import (
    DaprRuntime,
    DaprSettings,
    dapr_app_id,
    job_data,
    job_data_bytes,
    job_failure_policy,
    rfc3339,
)
from todo_kit.runtime.port import FailurePolicy
from todo_kit.server import KitServer


def test_dapr_app_ids_are_dns_labels() -> None:
    assert dapr_app_id("task_svc") == "task-svc"
    assert dapr_app_id("notify_svc") == "notify-svc"


def test_settings_default_to_the_injectors_ports_and_the_fixed_component_names() -> None:
    settings = DaprSettings.from_env({})
    assert (settings.grpc_address, settings.http_port) == ("127.0.0.1:50001", 3500)
    assert (settings.pubsub, settings.secret_store, settings.state_store) == (
        "todo-pubsub",
        "todo-secrets",
        "todo-state",
    )
    assert settings.api_metadata == ()
    assert DaprSettings.from_env({"DAPR_API_TOKEN": "t"}).api_metadata == (("dapr-api-token", "t"),)


@pytest.mark.parametrize(
    ("name", "value"), [("DAPR_GRPC_PORT", "0"), ("DAPR_HTTP_PORT", "http"), ("APP_API_TOKEN", "a\nb")]
)
def test_a_bad_setting_stops_the_process_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DaprSettings.from_env({name: value})
    assert name in str(caught.value)


def test_due_times_are_rfc3339_in_utc_and_naive_ones_are_refused() -> None:
    moment = datetime(2027, 3, 1, 9, 30, 5, 250000, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(moment) == "2027-03-01T07:30:05.250000Z"
    with pytest.raises(ValueError):
        rfc3339(datetime(2027, 3, 1, 9, 30))


def test_job_data_round_trips_through_any_bytes_value() -> None:
    packed = job_data(b"\x00\xffreminder")
    assert packed.type_url == "type.googleapis.com/google.protobuf.BytesValue"
    assert wrappers_pb2.BytesValue.FromString(packed.value).value == b"\x00\xffreminder"
    assert job_data_bytes(packed) == b"\x00\xffreminder"


def test_failure_policies_map_to_drop_or_constant_retries() -> None:
    assert job_failure_policy(FailurePolicy(max_retries=0)).HasField("drop")
    unbounded = job_failure_policy(FailurePolicy()).constant
    assert not unbounded.HasField("max_retries")  # Dapr: unset = retry for ever
    assert unbounded.interval.seconds == 5
    bounded = job_failure_policy(FailurePolicy(max_retries=4, interval=timedelta(milliseconds=1500))).constant
    assert (bounded.max_retries, bounded.interval.seconds, bounded.interval.nanos) == (4, 1, 500_000_000)


async def test_callbacks_take_no_user_token_and_user_services_take_no_app_token() -> None:
    """On one server: AppCallback answers only the app token; a user service answers only a user's bearer token."""
    key = "kit-dapr-test-key-0123456789abcdef"
    settings = Settings.from_env({"TODO_GRPC_PORT": "0"})
    server = KitServer(settings, TokenVerifier(key))
    runtime = DaprRuntime(DaprSettings.from_env({"APP_API_TOKEN": "app-secret"}))
    add_callbacks(server.server, runtime)

    async def echo_call(request: bytes, context: object) -> bytes:
        return b"ok"

    class Echo(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            return grpc.unary_unary_rpc_method_handler(echo_call) if details.method == "/todo.test.Echo/Call" else None

    server.server.add_generic_rpc_handlers([Echo()])
    port = await server.start(["grpc.health.v1.Health"])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            callbacks = appcallback_pb2_grpc.AppCallbackStub(channel)
            user = [("authorization", f"Bearer {issue_token(key, 'alice')}")]
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await callbacks.ListTopicSubscriptions(empty_pb2.Empty(), metadata=user)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            listed = await callbacks.ListTopicSubscriptions(
                empty_pb2.Empty(), metadata=[("dapr-api-token", "app-secret")]
            )
            assert list(listed.subscriptions) == []
            # A user service refuses the app token, as a bearer token or as Dapr's metadata, and takes a user's.
            echo = channel.unary_unary("/todo.test.Echo/Call")
            for metadata in ([("authorization", "Bearer app-secret")], [("dapr-api-token", "app-secret")]):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await echo(b"", metadata=metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert await echo(b"", metadata=user) == b"ok"
    finally:
        await server.stop(0)
        await runtime.stop()
