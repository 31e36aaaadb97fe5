"""What the gateway serves besides the API calls: the dev sign-in, the page, CORS and readiness.

The dev token verifies with todo_kit.auth (the services' own verifier) and
exists only with the data folder's key; CORS is closed by default; static files
carry the security headers; /readyz is 503 when the backend is down.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import aiohttp
import jwt
import pytest
from gateway_client import call
from host_process import HostProcess, free_port, gateway_bin

from todo_kit.auth import TokenVerifier, signing_key_for
from todo_kit.config import Settings
from todo_kit.errors import Unauthenticated

CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'"
)


async def test_dev_token_verifies_with_the_kit_and_calls_the_services(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        reply = await call(session, "POST", f"{gateway_host.web_url}/v1/dev/token", body={"user_id": "dev-alice"})
        assert reply.status == 200, reply.text
        token = reply.body["token"]
        key = signing_key_for(Settings.from_env({"TODO_DATA_DIR": str(gateway_host.data_dir)}))
        assert TokenVerifier(key).user_of(f"Bearer {token}") == "dev-alice"
        claims = jwt.decode(token, key, algorithms=["HS256"], audience="todo", issuer="todo-chatbot")
        assert set(claims) == {"sub", "iss", "aud", "iat", "exp"}
        assert claims["exp"] - claims["iat"] == 12 * 3600
        expires = datetime.fromisoformat(reply.body["expires_at"])
        assert expires == datetime.fromtimestamp(claims["exp"], UTC)
        assert reply.body["user_id"] == "dev-alice"
        with pytest.raises(Unauthenticated):
            TokenVerifier("another key that is long enough to sign with").user_of(f"Bearer {token}")

        listed = await call(
            session, "GET", f"{gateway_host.web_url}/v1/tasks", headers={"Authorization": f"Bearer {token}"}
        )
        assert listed.status == 200 and listed.body["tasks"] == []


async def test_dev_token_refuses_names_outside_the_user_id_pattern(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for user_id in ("", "alice\n", "a b", "x" * 129):
            reply = await call(session, "POST", f"{gateway_host.web_url}/v1/dev/token", body={"user_id": user_id})
            assert reply.status == 400 and reply.body["code"] == 3, (user_id, reply.text)


async def test_page_and_ui_config_with_security_headers(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        page = await call(session, "GET", f"{gateway_host.web_url}/")
        config = await call(session, "GET", f"{gateway_host.web_url}/ui-config.json")
        missing = await call(session, "GET", f"{gateway_host.web_url}/no-such-file.js")
    assert page.status == 200 and "<p>the page</p>" in page.text
    assert page.headers["Content-Security-Policy"] == CSP
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert config.body == {"dev_sign_in": True}
    assert missing.status == 404


async def test_cors_is_closed_by_default(gateway_host: HostProcess) -> None:
    url = f"{gateway_host.web_url}/v1/tasks"
    async with aiohttp.ClientSession() as session:
        origin = {"Origin": "https://elsewhere.test"}
        simple = await call(session, "GET", url, headers={**origin, **gateway_host.auth_header("cors-user")})
        asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        preflight = await call(session, "OPTIONS", url, headers={**origin, **asks})
    assert "Access-Control-Allow-Origin" not in simple.headers
    assert preflight.status == 403
    assert not any(h.startswith("Access-Control-Allow") for h in preflight.headers)


async def test_openapi_document_is_served_merged(gateway_host: HostProcess) -> None:
    async with aiohttp.ClientSession() as session:
        reply = await call(session, "GET", f"{gateway_host.web_url}/openapi.json")
    assert reply.status == 200 and reply.body["swagger"] == "2.0"
    paths = reply.body["paths"]
    for path in ("/v1/tasks", "/v1/reminders", "/v1/recurrence:validate", "/v1/notifications", "/v1/activity",
                 "/v1/chat:send", "/v1/tasks:stream"):  # fmt: skip
        assert path in paths
    assert "task_id" in reply.body["definitions"]["todo.task.v1.Task"]["properties"]  # proto names, not lowerCamel


class LoneGateway:
    """The gateway binary on its own, in front of a backend address that may serve nothing."""

    def __init__(self, backend: str, **env: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TODO_GATEWAY_")}
        environment.update(TODO_GATEWAY_LISTEN=self.url.removeprefix("http://"), TODO_GATEWAY_BACKEND=backend,
                           TODO_GATEWAY_LOG_LEVEL="warn", **env)  # fmt: skip
        self.process = subprocess.Popen([str(gateway_bin())], env=environment)

    async def wait_alive(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    if (await call(session, "GET", f"{self.url}/healthz")).status == 200:
                        return
                except aiohttp.ClientError:
                    pass
                assert self.process.poll() is None, "the gateway exited"
                await asyncio.sleep(0.05)
        raise AssertionError("the gateway did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


@pytest.fixture
def lone_gateway() -> Iterator[LoneGateway]:
    gateway = LoneGateway(f"127.0.0.1:{free_port()}")  # nothing listens there
    try:
        yield gateway
    finally:
        gateway.stop()


async def test_readiness_is_503_while_the_backend_is_down(lone_gateway: LoneGateway) -> None:
    await lone_gateway.wait_alive()
    async with aiohttp.ClientSession() as session:
        ready = await call(session, "GET", f"{lone_gateway.url}/readyz")
        alive = await call(session, "GET", f"{lone_gateway.url}/healthz")
        down = await call(session, "GET", f"{lone_gateway.url}/v1/tasks", headers={"Authorization": "Bearer x"})
    assert ready.status == 503 and ready.body["ready"] is False
    assert {s["status"] for s in ready.body["services"]} == {"UNREACHABLE"}
    assert alive.status == 200
    assert down.status == 503 and down.body["code"] == 14


async def test_without_the_key_file_there_is_no_dev_token_endpoint(lone_gateway: LoneGateway) -> None:
    await lone_gateway.wait_alive()
    async with aiohttp.ClientSession() as session:
        token = await call(session, "POST", f"{lone_gateway.url}/v1/dev/token", body={"user_id": "alice"})
        config = await call(session, "GET", f"{lone_gateway.url}/ui-config.json")
        page = await call(session, "GET", f"{lone_gateway.url}/")
    assert token.status == 404
    assert config.body == {"dev_sign_in": False}
    assert page.status == 404  # no static folder configured: no page


async def test_configured_origin_gets_cors_answers() -> None:
    gateway = LoneGateway(f"127.0.0.1:{free_port()}", TODO_GATEWAY_CORS_ORIGINS="https://app.example.test")
    try:
        await gateway.wait_alive()
        async with aiohttp.ClientSession() as session:
            allowed = await call(session, "OPTIONS", f"{gateway.url}/v1/tasks", headers={
                "Origin": "https://app.example.test", "Access-Control-Request-Method": "GET"})  # fmt: skip
            other = await call(session, "OPTIONS", f"{gateway.url}/v1/tasks", headers={
                "Origin": "https://other.example.test", "Access-Control-Request-Method": "GET"})  # fmt: skip
    finally:
        gateway.stop()
    assert allowed.status == 204 and allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.test"
    assert other.status == 403 and "Access-Control-Allow-Origin" not in other.headers
