"""E-mail delivery against real SMTP servers (aiosmtpd) on loopback, started and stopped by each test."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from notify_svc.channels.email import EmailSender, SmtpSettings, email_address_problem, message_id_header

SENDER = "reminders@todo.example.com"
TO = "alice@example.com"
SUBJECT = "Reminder: Pay rent — ünïcode ✓"
TEXT = "Pay rent is due at 14:00 (Europe/Paris), 5 minutes late.\nTask t-1 ✓\n.\nEnd of the message."
PASSWORD = "correct horse battery staple"

# The test server takes AUTH without TLS (it has no certificate); aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@dataclass
class RecordingHandler:
    """Takes every message, or answers RCPT with rcpt_reply when set."""

    rcpt_reply: str | None = None
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class MailServer:
    handler: RecordingHandler
    port: int


def _start(handler: RecordingHandler, **smtp_options: Any) -> tuple[Controller, int]:
    for _ in range(5):
        port = _free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
        try:
            controller.start()
        except OSError:  # someone took the port in between: pick another
            continue
        return controller, port
    raise RuntimeError("no free port for the SMTP server")


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    handler = RecordingHandler()
    controller, port = _start(handler)
    yield MailServer(handler, port)
    controller.stop()


def _check_password(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"todo" and auth_data.password == PASSWORD.encode()
    # handled=False: aiosmtpd then answers 535 itself (with True it would leave the client waiting).
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def mail_server_with_auth() -> Iterator[MailServer]:
    handler = RecordingHandler()
    # aiosmtpd refuses AUTH over a plain connection unless told otherwise; this server has no TLS.
    controller, port = _start(handler, auth_required=True, auth_require_tls=False, authenticator=_check_password)
    yield MailServer(handler, port)
    controller.stop()


@dataclass
class Listener:
    """A TCP listener that counts connections and never says a word."""

    connections: int = 0
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            await reader.read()
            writer.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]


@pytest.fixture
async def silent_server() -> AsyncIterator[Listener]:
    listener = Listener()
    await listener.start()
    yield listener
    assert listener.server is not None
    listener.server.close()


def settings(port: int, **changes: Any) -> SmtpSettings:
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": port, "sender": SENDER, "starttls": False}
    fields.update(changes)
    return SmtpSettings(**fields)


async def test_a_message_is_delivered_with_its_headers_and_utf8_text(mail_server: MailServer) -> None:
    result = await EmailSender(settings(mail_server.port)).send(TO, SUBJECT, TEXT, "ntf-42.email")

    assert result.succeeded, result.error
    assert result.response_code == 250
    [(envelope, message)] = mail_server.handler.messages
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == [TO]
    assert message["From"] == SENDER
    assert message["To"] == TO
    assert message["Subject"] == SUBJECT
    assert message["Message-ID"] == "<ntf-42-email@todo-chatbot>"
    assert message["Date"] is not None
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    # SMTP carries CRLF line ends; a mail client reads them as plain line ends.
    assert message.get_content().replace("\r\n", "\n").rstrip("\n") == TEXT


async def test_a_retried_message_keeps_its_message_id(mail_server: MailServer) -> None:
    sender = EmailSender(settings(mail_server.port))
    for _ in range(2):
        assert (await sender.send(TO, SUBJECT, TEXT, "ntf-42.email")).succeeded

    assert [m["Message-ID"] for _, m in mail_server.handler.messages] == ["<ntf-42-email@todo-chatbot>"] * 2


@pytest.mark.parametrize(
    ("message_id", "header"),
    [
        ("ntf-1", "<ntf-1@todo-chatbot>"),
        ("a b<c>@d\r\ne", "<a-b-c-d-e@todo-chatbot>"),
        ("x" * 500, "<" + "x" * 128 + "@todo-chatbot>"),
    ],
)
def test_message_ids_are_made_safe_for_the_header(message_id: str, header: str) -> None:
    assert message_id_header(message_id) == header


def test_an_empty_message_id_still_gets_a_unique_header() -> None:
    first, second = message_id_header("<>"), message_id_header("")

    assert first != second
    assert first.endswith("@todo-chatbot>") and second.endswith("@todo-chatbot>")


async def test_a_refused_recipient_is_permanent(mail_server: MailServer) -> None:
    mail_server.handler.rcpt_reply = "550 5.1.1 No such user here"

    result = await EmailSender(settings(mail_server.port)).send(TO, SUBJECT, TEXT, "ntf-1")

    assert not result.succeeded
    assert result.permanent
    assert result.response_code == 550
    assert "recipient" in result.error
    assert mail_server.handler.messages == []


async def test_a_recipient_refused_for_now_is_worth_retrying(mail_server: MailServer) -> None:
    mail_server.handler.rcpt_reply = "451 4.3.0 Try again later"

    result = await EmailSender(settings(mail_server.port)).send(TO, SUBJECT, TEXT, "ntf-1")

    assert not result.succeeded
    assert not result.permanent
    assert result.response_code == 451
    assert mail_server.handler.messages == []


async def test_a_server_that_is_down_is_worth_retrying() -> None:
    result = await EmailSender(settings(_free_port())).send(TO, SUBJECT, TEXT, "ntf-1")

    assert not result.succeeded
    assert not result.permanent
    assert result.response_code == 0
    assert result.error == "could not connect to the mail server (connection refused)"


async def test_a_server_that_never_greets_times_out(silent_server: Listener) -> None:
    started = time.monotonic()

    result = await EmailSender(settings(silent_server.port, timeout_seconds=0.5)).send(TO, SUBJECT, TEXT, "ntf-1")

    assert not result.succeeded
    assert not result.permanent
    assert "did not answer within 0.5 seconds" in result.error
    assert time.monotonic() - started < 5  # about the timeout
    assert silent_server.connections == 1


async def test_starttls_required_but_not_offered_is_a_clear_failure(mail_server: MailServer) -> None:
    result = await EmailSender(settings(mail_server.port, starttls=True)).send(TO, SUBJECT, TEXT, "ntf-1")

    assert not result.succeeded
    assert not result.permanent
    assert "does not offer STARTTLS" in result.error
    assert mail_server.handler.messages == []


async def test_the_right_password_is_accepted(mail_server_with_auth: MailServer) -> None:
    sender = EmailSender(settings(mail_server_with_auth.port, username="todo", password=PASSWORD))

    result = await sender.send(TO, SUBJECT, TEXT, "ntf-1")

    assert result.succeeded, result.error
    assert len(mail_server_with_auth.handler.messages) == 1


async def test_a_wrong_password_is_a_clear_failure_worth_retrying(mail_server_with_auth: MailServer) -> None:
    sender = EmailSender(settings(mail_server_with_auth.port, username="todo", password="wrong password"))

    result = await sender.send(TO, SUBJECT, TEXT, "ntf-1")

    assert not result.succeeded
    assert not result.permanent
    assert result.response_code == 535
    assert "user name or password" in result.error
    assert "wrong password" not in result.error
    assert mail_server_with_auth.handler.messages == []


async def test_a_server_requiring_auth_refuses_a_sender_without_credentials(mail_server_with_auth: MailServer) -> None:
    result = await EmailSender(settings(mail_server_with_auth.port)).send(TO, SUBJECT, TEXT, "ntf-1")

    assert not result.succeeded
    assert not result.permanent
    assert result.response_code == 530
    assert mail_server_with_auth.handler.messages == []


def test_the_password_is_not_in_the_settings_text() -> None:
    assert PASSWORD not in repr(settings(25, username="todo", password=PASSWORD))


@pytest.mark.parametrize(
    "subject",
    ["Hi\r\nBcc: victim@example.com", "Hi\nBcc: victim@example.com", "Hi\rthere", "Hi\u2028there", "Hi\x00"],
)
async def test_a_subject_with_a_line_break_is_refused_before_connecting(silent_server: Listener, subject: str) -> None:
    result = await EmailSender(settings(silent_server.port)).send(TO, subject, TEXT, "ntf-1")

    assert not result.succeeded
    assert result.permanent
    assert "line break" in result.error
    assert silent_server.connections == 0


@pytest.mark.parametrize(
    "to", ["", "Alice <alice@example.com>", "alice@example.com\r\nRCPT TO:<victim@example.com>", "alice", "a@b"]
)
async def test_a_malformed_recipient_is_refused_before_connecting(silent_server: Listener, to: str) -> None:
    result = await EmailSender(settings(silent_server.port)).send(to, SUBJECT, TEXT, "ntf-1")

    assert not result.succeeded
    assert result.permanent
    assert silent_server.connections == 0


async def test_without_an_smtp_host_nothing_is_sent() -> None:
    result = await EmailSender(SmtpSettings(host="", sender=SENDER)).send(TO, SUBJECT, TEXT, "ntf-1")

    assert not result.succeeded
    assert "not configured" in result.error


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com",
        "alice.smith+todo@mail.example.co.uk",
        "o'brien@example.com",
        "x@xn--bcher-kva.example",
        "a" * 64 + "@example.com",
        "a@" + ".".join(["b" * 63] * 3) + ".com",
    ],
)
def test_plain_addresses_are_accepted(address: str) -> None:
    assert email_address_problem(address) is None


@pytest.mark.parametrize(
    "address",
    [
        "",
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "alice@@example.com",
        "Alice <alice@example.com>",
        "alice@example.com (Alice)",
        '"alice smith"@example.com',
        "alice..smith@example.com",
        ".alice@example.com",
        "alice@example..com",
        "alice@-example.com",
        "alice@example.123",
        "alice@[127.0.0.1]",
        "alice@example.com\r\nBcc: victim@example.com",
        "alice@example.com\n",
        "alïce@example.com",
        "alice@bücher.example",
        "a" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
        "alice@example.com,bob@example.com",
    ],
)
def test_anything_but_one_plain_address_is_refused(address: str) -> None:
    assert email_address_problem(address) is not None
