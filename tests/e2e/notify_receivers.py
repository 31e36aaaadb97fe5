"""Real receivers for notification deliveries in end-to-end tests: a webhook endpoint and an SMTP server.

Both listen on 127.0.0.1, record what arrives, and are stopped by the fixture that started them.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from host_process import free_port
from standardwebhooks import Webhook


@dataclass
class WebhookRequest:
    """One request the receiver got: its webhook-id, whether its signature verified, its JSON body."""

    webhook_id: str
    verified: bool
    body: dict[str, Any]
    status: int


@dataclass
class WebhookReceiver:
    """An HTTP endpoint that checks Standard Webhooks signatures; it answers `failures` 500s before a 204."""

    secret: str = ""
    failures: int = 0
    requests: list[WebhookRequest] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/todo"

    def succeeded_ids(self) -> list[str]:
        return [r.webhook_id for r in self.requests if r.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        verified = False
        body: dict[str, Any] = {}
        try:
            body = Webhook(self.secret).verify(raw, dict(request.headers))
            verified = True
        except Exception:  # any verification failure is recorded as one
            verified = False
        status = 500 if self.failures > 0 else 204
        self.failures -= 1
        self.requests.append(WebhookRequest(request.headers.get("webhook-id", ""), verified, body, status))
        return web.Response(status=status)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WebhookReceiver]:
        app = web.Application()
        app.router.add_post("/hooks/todo", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self.port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        try:
            yield self
        finally:
            await runner.cleanup()


class MailRecorder:
    """aiosmtpd handler keeping every accepted message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[MailRecorder, int]]:
    """A real SMTP server on a free loopback port, recording messages."""
    recorder = MailRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()
