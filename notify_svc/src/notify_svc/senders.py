"""The webhook and e-mail channels as the rest of the service uses them.

The senders and checks themselves live in notify_svc.channels; handlers reach
them only through Channels, so tests hand in their own senders through the
unit's constructor instead of patching modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from notify_svc.channels import email, webhook
from notify_svc.settings import NotifySettings

WEBHOOK_UNAVAILABLE = "webhook delivery is not available on this server"
EMAIL_UNAVAILABLE = "e-mail delivery is not available on this server (no SMTP server is configured)"


class DeliveryOutcome(Protocol):
    """What a sender says about one attempt (notify_svc.channels.DeliveryResult)."""

    @property
    def succeeded(self) -> bool:
        """The receiver accepted it."""

    @property
    def error(self) -> str:
        """What went wrong, in plain English (never the secret or the body)."""

    @property
    def response_code(self) -> int:
        """The HTTP status or SMTP reply code; 0 when there was none."""

    @property
    def permanent(self) -> bool:
        """Retrying cannot help (410 Gone, a refused address)."""

    @property
    def retry_after(self) -> float | None:
        """Seconds the receiver asked to wait, if it did."""


class WebhookSending(Protocol):
    """Posts signed webhook requests."""

    async def send(self, url: str, secret: str, message_id: str, body: bytes) -> DeliveryOutcome:
        """One attempt to POST body to url, signed with secret; message_id is the same on every retry."""

    async def close(self) -> None:
        """Releases its connections."""


class EmailSending(Protocol):
    """Sends e-mail through the configured SMTP server."""

    async def send(self, to: str, subject: str, text: str, message_id: str) -> DeliveryOutcome:
        """One attempt to send a plain-text e-mail; its Message-ID is derived from message_id."""


def _always(problem: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return problem

    return check


def _no_secret() -> str:
    raise RuntimeError(WEBHOOK_UNAVAILABLE)


@dataclass(frozen=True)
class Channels:
    """The push channels: senders (None when the channel is off on this server) and their input checks."""

    webhook: WebhookSending | None
    email: EmailSending | None
    webhook_url_problem: Callable[[str], str | None]
    signing_secret_problem: Callable[[str], str | None]
    new_signing_secret: Callable[[], str]
    email_address_problem: Callable[[str], str | None]

    async def close(self) -> None:
        """Closes the senders."""
        if self.webhook is not None:
            await self.webhook.close()

    @classmethod
    def unavailable(cls) -> Channels:
        """No push channel at all: only in-app notifications."""
        return cls(
            webhook=None,
            email=None,
            webhook_url_problem=_always(WEBHOOK_UNAVAILABLE),
            signing_secret_problem=_always(WEBHOOK_UNAVAILABLE),
            new_signing_secret=_no_secret,
            email_address_problem=_always(EMAIL_UNAVAILABLE),
        )


def load_channels(settings: NotifySettings) -> Channels:
    """The channels of notify_svc.channels configured by settings (e-mail only with an SMTP host)."""
    policy = settings.webhook_policy()
    return Channels(
        webhook=webhook.WebhookSender(policy),
        email=email.EmailSender(settings.smtp_settings()) if settings.email_available else None,
        webhook_url_problem=lambda url: webhook.webhook_url_problem(url, policy),
        signing_secret_problem=webhook.signing_secret_problem,
        new_signing_secret=webhook.new_signing_secret,
        email_address_problem=email.email_address_problem,
    )
