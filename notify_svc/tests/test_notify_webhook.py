"""Webhook delivery against real HTTP receivers on loopback, started and stopped by each test."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from ipaddress import ip_address

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from notify_svc.channels.webhook import Resolve, WebhookPolicy, WebhookSender, new_signing_secret
from todo_kit.testing import eventually

SECRET = new_signing_secret()
BODY = json.dumps({"title": "Pay rent ✓", "task_id": "t-1"}).encode()
LOCAL = WebhookPolicy(allow_http_loopback=True, allow_private_networks=True, timeout_seconds=5)
HUGE_BYTES = 64 * 1024 * 1024


def _gzip_of_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(wbits=31)  # gzip framing
    megabyte = bytes(1024 * 1024)
    return b"".join([*(compressor.compress(megabyte) for _ in range(size // len(megabyte))), compressor.flush()])


GZIP_BOMB = _gzip_of_zeros(HUGE_BYTES)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: object


@dataclass
class Receiver:
    """An HTTP receiver that checks each request's signature with the standardwebhooks library and records it."""

    host: str
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    huge_bytes_written: list[int] = field(default_factory=list)
    runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def record(self, request: web.Request) -> None:
        body = await request.read()
        try:
            verified: object = Webhook(SECRET).verify(body, dict(request.headers))
        except Exception as error:
            verified = error
        self.requests.append(Received(request.path_qs, dict(request.headers), body, verified))

    async def ok(self, request: web.Request) -> web.Response:
        await self.record(request)
        return web.Response(status=204)

    async def status(self, request: web.Request) -> web.Response:
        await self.record(request)
        headers = {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
        return web.Response(status=int(request.match_info["code"]), headers=headers, text="the body of the answer")

    async def redirect(self, request: web.Request) -> web.Response:
        await self.record(request)
        raise web.HTTPFound(location="/ok")

    async def huge(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        response = web.StreamResponse(status=200, headers={"Content-Length": str(HUGE_BYTES)})
        await response.prepare(request)
        written = 0
        chunk = b"x" * 65536
        try:
            while written < HUGE_BYTES:
                await response.write(chunk)
                written += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.huge_bytes_written.append(written)
        return response

    async def gzip_bomb(self, request: web.Request) -> web.Response:
        await self.record(request)
        return web.Response(body=GZIP_BOMB, headers={"Content-Encoding": "gzip"})

    async def hang(self, request: web.Request) -> web.Response:
        await self.record(request)
        await asyncio.sleep(3600)
        return web.Response()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/ok", self.ok)
        app.router.add_post("/status/{code}", self.status)
        app.router.add_post("/redirect", self.redirect)
        app.router.add_post("/huge", self.huge)
        app.router.add_post("/gzip", self.gzip_bomb)
        app.router.add_post("/hang", self.hang)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = Receiver("127.0.0.1")
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    local = WebhookSender(LOCAL)
    yield local
    await local.close()


@dataclass
class Listener:
    """A TCP listener that only counts connections: proof that nothing was even attempted."""

    connections: int = 0
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self, hold: bool = False) -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            if hold:
                await reader.read()
            writer.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    started = Listener()
    await started.start()
    yield started
    await started.stop()


def static_resolve(answers: dict[str, Sequence[str]], calls: list[str]) -> Resolve:
    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


async def test_a_signed_delivery_reaches_the_receiver_and_verifies(receiver: Receiver, sender: WebhookSender) -> None:
    result = await sender.send(receiver.url("/ok?user=alice#not-sent"), SECRET, "ntf-1.webhook", BODY)

    assert result.succeeded, result.error
    assert result.response_code == 204
    [request] = receiver.requests
    assert request.verified == json.loads(BODY)
    assert request.path == "/ok?user=alice"
    assert request.body == BODY
    assert request.headers["webhook-id"] == "ntf-1.webhook"
    assert request.headers["Content-Type"] == "application/json"
    assert "TodoChatbot" in request.headers["User-Agent"]
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 300
    assert "Cookie" not in request.headers


async def test_every_attempt_carries_the_same_message_id(receiver: Receiver, sender: WebhookSender) -> None:
    for _ in range(2):
        assert (await sender.send(receiver.url("/status/500"), SECRET, "ntf-7.webhook", BODY)).response_code == 500

    assert [r.headers["webhook-id"] for r in receiver.requests] == ["ntf-7.webhook", "ntf-7.webhook"]
    assert all(r.verified == json.loads(BODY) for r in receiver.requests)


async def test_a_server_error_is_a_failure_worth_retrying(receiver: Receiver, sender: WebhookSender) -> None:
    result = await sender.send(receiver.url("/status/500?retry_after=30"), SECRET, "ntf-1", BODY)

    assert not result.succeeded
    assert not result.permanent
    assert result.response_code == 500
    assert result.retry_after is None
    assert "500" in result.error
    assert SECRET not in result.error
    assert "body of the answer" not in result.error


async def test_gone_is_a_permanent_failure(receiver: Receiver, sender: WebhookSender) -> None:
    result = await sender.send(receiver.url("/status/410"), SECRET, "ntf-1", BODY)

    assert not result.succeeded
    assert result.permanent
    assert result.response_code == 410


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_in_seconds_is_passed_on(receiver: Receiver, sender: WebhookSender, code: int) -> None:
    result = await sender.send(receiver.url(f"/status/{code}?retry_after=120"), SECRET, "ntf-1", BODY)

    assert not result.succeeded
    assert not result.permanent
    assert result.response_code == code
    assert result.retry_after == 120


async def test_retry_after_as_an_http_date_is_turned_into_seconds(receiver: Receiver, sender: WebhookSender) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True).replace(" ", "%20")

    result = await sender.send(receiver.url(f"/status/429?retry_after={when}"), SECRET, "ntf-1", BODY)

    assert result.response_code == 429
    assert result.retry_after is not None
    assert 60 <= result.retry_after <= 90


async def test_a_redirect_is_a_failure_and_is_not_followed(receiver: Receiver, sender: WebhookSender) -> None:
    result = await sender.send(receiver.url("/redirect"), SECRET, "ntf-1", BODY)

    assert not result.succeeded
    assert result.response_code == 302
    assert "redirect" in result.error
    assert [r.path for r in receiver.requests] == ["/redirect"]


async def test_a_huge_answer_is_cut_off_at_the_limit(receiver: Receiver, sender: WebhookSender) -> None:
    result = await sender.send(receiver.url("/huge"), SECRET, "ntf-1", BODY)

    assert result.succeeded, result.error
    assert result.response_code == 200
    # The sender stopped reading and dropped the connection, so the receiver could not write it all.
    await eventually(lambda: receiver.huge_bytes_written)
    assert receiver.huge_bytes_written[0] < HUGE_BYTES


async def test_a_compressed_answer_is_not_inflated_past_the_limit(receiver: Receiver, sender: WebhookSender) -> None:
    # 64 KB on the wire that inflate to 64 MB: the sender's memory must stay far below that.
    tracemalloc.start()
    try:
        result = await sender.send(receiver.url("/gzip"), SECRET, "ntf-1", BODY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.succeeded, result.error
    assert peak < 8 * 1024 * 1024


async def test_a_receiver_that_never_answers_times_out(receiver: Receiver) -> None:
    policy = WebhookPolicy(allow_http_loopback=True, allow_private_networks=True, timeout_seconds=0.5)
    started = time.monotonic()
    async with sender_for(policy) as s:
        result = await s.send(receiver.url("/hang"), SECRET, "ntf-1", BODY)

    assert not result.succeeded
    assert not result.permanent
    assert result.response_code == 0
    assert "did not answer within 0.5 seconds" in result.error
    assert time.monotonic() - started < 5  # about the timeout, not the receiver's hour
    assert len(receiver.requests) == 1


async def test_a_refused_connection_is_a_failure_worth_retrying(sender: WebhookSender) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    result = await sender.send(f"http://127.0.0.1:{closed_port}/ok", SECRET, "ntf-1", BODY)

    assert not result.succeeded
    assert not result.permanent
    assert result.response_code == 0
    assert "could not connect" in result.error
    assert "refused" in result.error


async def test_the_default_policy_refuses_the_receiver_the_local_policy_reaches(receiver: Receiver) -> None:
    for policy in (
        WebhookPolicy(),
        WebhookPolicy(allow_http_loopback=True),
        WebhookPolicy(allow_private_networks=True),
    ):
        async with sender_for(policy) as s:
            refused = await s.send(receiver.url("/ok"), SECRET, "ntf-1", BODY)
        assert not refused.succeeded
        assert refused.permanent
    assert receiver.requests == []

    async with sender_for(LOCAL) as s:
        assert (await s.send(receiver.url("/ok"), SECRET, "ntf-1", BODY)).succeeded
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:{port}/ok",
        "https://localhost:{port}/ok",
        "https://[::1]:{port}/ok",
        "https://[::ffff:127.0.0.1]:{port}/ok",
        "https://10.0.0.1:{port}/ok",
        "https://100.64.0.1:{port}/ok",
        "https://169.254.169.254/latest/meta-data/",
        "https://hooks.example.test:{port}/ok",
        "https://mixed.example.test:{port}/ok",
    ],
)
async def test_ssrf_targets_are_refused_by_default_before_any_connection(listener: Listener, url: str) -> None:
    calls: list[str] = []
    resolve = static_resolve(
        {"hooks.example.test": ["127.0.0.1"], "mixed.example.test": ["93.184.215.14", "127.0.0.1"]}, calls
    )
    async with sender_for(WebhookPolicy(timeout_seconds=2), resolve=resolve) as s:
        result = await s.send(url.format(port=listener.port), SECRET, "ntf-1", BODY)

    assert not result.succeeded
    assert result.permanent
    assert "127.0.0.1" not in result.error
    assert listener.connections == 0


async def test_a_host_name_resolving_to_loopback_is_reached_only_when_private_networks_are_allowed(
    listener: Listener,
) -> None:
    calls: list[str] = []
    resolve = static_resolve({"hooks.example.test": ["127.0.0.1"]}, calls)
    url = f"https://hooks.example.test:{listener.port}/ok"

    async with sender_for(WebhookPolicy(timeout_seconds=2), resolve=resolve) as s:
        refused = await s.send(url, SECRET, "ntf-1", BODY)
    async with sender_for(WebhookPolicy(allow_private_networks=True, timeout_seconds=2), resolve=resolve) as s:
        attempted = await s.send(url, SECRET, "ntf-1", BODY)

    assert refused.permanent
    assert "resolves to an address webhooks are not sent to" in refused.error
    assert not attempted.permanent  # it connected; the listener is no TLS server
    assert listener.connections == 1
    assert calls == ["hooks.example.test", "hooks.example.test"]


@pytest.mark.parametrize(
    "url",
    ["http://user:pass@127.0.0.1:{port}/ok", "http://10.0.0.1:{port}/ok", "http://169.254.169.254/latest/meta-data/"],
)
async def test_the_local_policy_still_refuses_user_info_other_hosts_over_http_and_metadata(
    receiver: Receiver, sender: WebhookSender, url: str
) -> None:
    result = await sender.send(url.format(port=receiver.port), SECRET, "ntf-1", BODY)

    assert not result.succeeded
    assert result.permanent
    assert receiver.requests == []


async def test_the_connection_goes_to_the_checked_address_not_a_later_dns_answer() -> None:
    # Rebinding: the host's first answer passes the check; a later answer points elsewhere.
    # Both receivers listen on one port, on two loopback addresses.
    checked, rebound = await _receivers_on_one_port("127.0.0.2", "127.0.0.1")
    answers = [["127.0.0.2"], ["127.0.0.1"], ["127.0.0.1"]]
    calls: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return answers[min(len(calls) - 1, 2)]

    try:
        async with sender_for(LOCAL, resolve=resolve) as s:
            result = await s.send(f"http://localhost:{checked.port}/ok", SECRET, "ntf-1", BODY)
    finally:
        await checked.stop()
        await rebound.stop()

    assert result.succeeded, result.error
    assert len(checked.requests) == 1
    assert rebound.requests == []
    assert checked.requests[0].headers["Host"] == f"localhost:{checked.port}"
    assert calls == ["localhost"]


async def test_a_global_answer_at_check_time_then_loopback_never_reaches_loopback(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The connection attempts are watched at the event loop; the one to the public address is refused
    # right there, so that no packet leaves the machine.
    loop = asyncio.get_running_loop()
    connect = loop.sock_connect
    attempts: list[tuple[str, int]] = []

    async def sock_connect(sock: socket.socket, address: tuple[str, int]) -> None:
        attempts.append((address[0], address[1]))
        if not ip_address(address[0]).is_loopback:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused by the test")
        await connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    answers = iter([["93.184.215.14"], ["127.0.0.1"], ["127.0.0.1"]])

    async def resolve(host: str, port: int) -> Sequence[str]:
        return next(answers)

    async with sender_for(WebhookPolicy(timeout_seconds=2), resolve=resolve) as s:
        result = await s.send(f"https://hooks.example.test:{receiver.port}/ok", SECRET, "ntf-1", BODY)

    assert attempts == [("93.184.215.14", receiver.port)]
    assert not result.succeeded
    assert receiver.requests == []


async def test_a_name_that_does_not_resolve_is_a_failure_worth_retrying(listener: Listener) -> None:
    calls: list[str] = []
    async with sender_for(LOCAL, resolve=static_resolve({}, calls)) as s:
        result = await s.send(f"https://nowhere.example.test:{listener.port}/ok", SECRET, "ntf-1", BODY)

    assert not result.succeeded
    assert not result.permanent
    assert "could not be resolved" in result.error
    assert calls == ["nowhere.example.test"]


@pytest.mark.parametrize(
    ("secret", "message_id"),
    [("whsec_c2hvcnQ=", "ntf-1"), ("", "ntf-1"), (SECRET, ""), (SECRET, "ntf-1\r\nX-Injected: 1"), (SECRET, "n" * 257)],
)
async def test_a_malformed_secret_or_message_id_is_refused_before_any_request(
    receiver: Receiver, sender: WebhookSender, secret: str, message_id: str
) -> None:
    result = await sender.send(receiver.url("/ok"), secret, message_id, BODY)

    assert not result.succeeded
    assert result.permanent
    assert receiver.requests == []
    assert not secret or secret not in result.error


async def test_a_closed_sender_opens_a_new_session_when_used_again(receiver: Receiver) -> None:
    s = WebhookSender(LOCAL)
    assert (await s.send(receiver.url("/ok"), SECRET, "ntf-1", BODY)).succeeded
    await s.close()
    assert (await s.send(receiver.url("/ok"), SECRET, "ntf-2", BODY)).succeeded
    await s.close()

    assert [r.headers["webhook-id"] for r in receiver.requests] == ["ntf-1", "ntf-2"]


@asynccontextmanager
async def sender_for(policy: WebhookPolicy, resolve: Resolve | None = None) -> AsyncIterator[WebhookSender]:
    """A sender for one test's own policy, closed at the end of the block."""
    sender = WebhookSender(policy, resolve=resolve)
    try:
        yield sender
    finally:
        await sender.close()


async def _receivers_on_one_port(first_host: str, second_host: str) -> tuple[Receiver, Receiver]:
    for _ in range(20):
        first = Receiver(first_host)
        await first.start()
        second = Receiver(second_host, port=first.port)
        try:
            await second.start()
        except OSError:  # the port is taken on the second address: try another
            await first.stop()
            continue
        return first, second
    raise RuntimeError("no port free on both loopback addresses")
