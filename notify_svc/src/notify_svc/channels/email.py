"""E-mail delivery: one plain-text message per attempt, through the configured SMTP server.

The subject and text come from the caller; From is the configured sender, and the
Message-ID is derived from the caller's message id, so a retried message keeps the
same id and a mail client can spot the duplicate. A refused recipient (a 5xx reply
to RCPT) is permanent; the rest (a server that is down or busy, a missing STARTTLS,
refused credentials: configuration can be fixed) may succeed later.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from notify_svc.channels import DeliveryResult, network_error_reason

ADDRESS_LENGTH_MAX = 254
LOCAL_PART_LENGTH_MAX = 64
MESSAGE_ID_DOMAIN = "todo-chatbot"
MESSAGE_ID_LENGTH_MAX = 128
COMPLETED = 250  # the reply to the end of DATA when the server took the message

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class SmtpSettings:
    """The SMTP server the service sends through (its settings, the same for every user)."""

    host: str
    """The server's host name; "" means e-mail delivery is not configured."""
    port: int = 587
    sender: str = ""
    """The From address."""
    starttls: bool = True
    """Upgrade the plain connection with STARTTLS, and fail when the server does not offer it."""
    use_tls: bool = False
    """TLS from the first byte (usually port 465); STARTTLS is then not used."""
    username: str = ""
    password: str = field(default="", repr=False)
    timeout_seconds: float = 10.0
    """The whole attempt: connecting, TLS, logging in and handing over the message."""

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be between 1 and 65535")
        if not self.timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")


def email_address_problem(address: str) -> str | None:
    """Why an e-mail address is refused (plain English), or None for one plain address like name@example.com.

    No display name, no comments, no line breaks, ASCII only (an international
    domain in its xn-- form), at most 254 characters.
    """
    if not address:
        return "the e-mail address is empty"
    if len(address) > ADDRESS_LENGTH_MAX:
        return f"the e-mail address is longer than {ADDRESS_LENGTH_MAX} characters"
    if not address.isascii() or any(c.isspace() or not c.isprintable() for c in address):
        return "the e-mail address must be one plain address such as name@example.com, in ASCII characters"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "the e-mail address must be one plain address such as name@example.com"
    if len(local) > LOCAL_PART_LENGTH_MAX or not _LOCAL_PART.fullmatch(local):
        return "the part of the e-mail address before the @ is not valid"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return "the domain of the e-mail address is not valid"
    return None


def _has_line_break(text: str) -> bool:
    # splitlines() knows every character Python (and so the e-mail package) treats as ending a line.
    return len(f"{text}x".splitlines()) > 1 or "\x00" in text


def message_id_header(message_id: str) -> str:
    """The Message-ID header for a message id: "<{id}@todo-chatbot>", with what a header cannot carry replaced."""
    local = _MESSAGE_ID_UNSAFE.sub("-", message_id)[:MESSAGE_ID_LENGTH_MAX].strip("-")
    return f"<{local or uuid.uuid4().hex}@{MESSAGE_ID_DOMAIN}>"


class _Failed(Exception):
    """The attempt stops: the result says why."""

    def __init__(self, result: DeliveryResult) -> None:
        super().__init__(result.error)
        self.result = result


def _failed(error: str, *, code: int = 0, permanent: bool = False) -> _Failed:
    return _Failed(DeliveryResult(succeeded=False, error=error, response_code=code, permanent=permanent))


class EmailSender:
    """Sends e-mails through the configured SMTP server, one connection per message."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, to: str, subject: str, text: str, message_id: str) -> DeliveryResult:
        """Sends one text/plain utf-8 message to `to`; one attempt, never raises for the server's doing.

        A bad recipient address or a subject with a line break (header injection)
        is refused before connecting, permanently.
        """
        try:
            message = self._message(to, subject, text, message_id)
            async with asyncio.timeout(self.settings.timeout_seconds):
                await self._deliver(message, to)
        except _Failed as failed:
            return failed.result
        except TimeoutError:
            return DeliveryResult(
                succeeded=False,
                error=f"the mail server did not answer within {self.settings.timeout_seconds:g} seconds",
            )
        return DeliveryResult(succeeded=True, response_code=COMPLETED)

    def _message(self, to: str, subject: str, text: str, message_id: str) -> EmailMessage:
        settings = self.settings
        if not settings.host:
            raise _failed("e-mail delivery is not configured on this service (no SMTP host)")
        problem = email_address_problem(to)
        if problem is not None:
            raise _failed(problem, permanent=True)
        if _has_line_break(subject):
            raise _failed("the subject contains a line break", permanent=True)
        if email_address_problem(settings.sender) is not None:
            raise _failed("the configured sender address is not valid")
        message = EmailMessage()
        message["From"] = settings.sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = message_id_header(message_id)
        # One kind of line ending, and no NUL: bare CRs are how SMTP smuggling starts.
        body = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
        # Quoted-printable: 7-bit safe on any server (8BITMIME or not), and readable where the text is ASCII.
        message.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
        return message

    async def _deliver(self, message: EmailMessage, to: str) -> None:
        settings = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=settings.use_tls,
            start_tls=False,  # done below, so that a server without it is a clear failure
            timeout=settings.timeout_seconds,
        )
        try:
            await self._connect(smtp)
            if settings.starttls and not settings.use_tls:
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise _failed("the mail server does not offer STARTTLS, which the settings require")
                await smtp.starttls()
            if settings.username:
                await smtp.ehlo()
                if not smtp.supports_extension("auth"):
                    raise _failed("the mail server does not offer AUTH, which the settings' user name requires")
                await smtp.login(settings.username, settings.password)
            await smtp.send_message(message, sender=settings.sender, recipients=[to])
            with suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()
        except (_Failed, TimeoutError):
            raise  # TimeoutError (the server's silence) is an OSError too: not "the exchange failed"
        except aiosmtplib.SMTPAuthenticationError as error:
            raise _failed("the mail server refused the configured user name or password", code=error.code) from None
        except aiosmtplib.SMTPRecipientsRefused as error:
            code = error.recipients[0].code if error.recipients else 0
            raise _failed(
                f"the mail server refused the recipient (reply {code})", code=code, permanent=500 <= code < 600
            ) from None
        except aiosmtplib.SMTPSenderRefused as error:
            raise _failed(
                f"the mail server refused the configured sender (reply {error.code})", code=error.code
            ) from None
        except aiosmtplib.SMTPDataError as error:
            raise _failed(
                f"the mail server refused the message (reply {error.code})",
                code=error.code,
                permanent=500 <= error.code < 600,
            ) from None
        except aiosmtplib.SMTPResponseException as error:
            raise _failed(f"the mail server answered {error.code}", code=error.code) from None
        except ssl.SSLError:
            raise _failed("the TLS connection to the mail server failed") from None
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
            raise _failed("the mail server closed the connection") from None
        except (aiosmtplib.SMTPException, OSError):
            raise _failed("the exchange with the mail server failed") from None
        finally:
            smtp.close()

    async def _connect(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.connect()
        except aiosmtplib.SMTPConnectTimeoutError:
            raise TimeoutError from None
        except aiosmtplib.SMTPConnectResponseError as error:
            raise _failed(f"the mail server refused the connection (reply {error.code})", code=error.code) from None
        except aiosmtplib.SMTPConnectError as error:
            if isinstance(error.__cause__, ssl.SSLError):
                raise _failed("the TLS connection to the mail server failed") from None
            raise _failed(f"could not connect to the mail server ({network_error_reason(error.__cause__)})") from None
