"""The notification service's own settings, read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from todo_kit.config import ConfigError, env_bool, env_int, env_str

if TYPE_CHECKING:
    from notify_svc.channels.email import SmtpSettings
    from notify_svc.channels.webhook import WebhookPolicy

RETRY_MAX_DELAY_CAP = 3600


@dataclass(frozen=True)
class NotifySettings:
    """How notifications are delivered and streamed.

    TODO_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK: accept http:// webhook URLs to a
      loopback address (local use and tests); https only otherwise (default false).
    TODO_NOTIFY_WEBHOOK_ALLOW_PRIVATE: accept webhook URLs to private,
      link-local and metadata addresses (default false: refused, against
      server-side request forgery).
    TODO_NOTIFY_WEBHOOK_TIMEOUT_SECONDS: how long one webhook request may take,
      connecting included (1 to 120, default 10).
    TODO_NOTIFY_SMTP_HOST: the SMTP server e-mail goes through; empty (the
      default) turns e-mail delivery off.
    TODO_NOTIFY_SMTP_PORT: its port (default 587).
    TODO_NOTIFY_SMTP_SENDER: the From address (required with a host).
    TODO_NOTIFY_SMTP_STARTTLS: upgrade the connection with STARTTLS (default
      true, unless TODO_NOTIFY_SMTP_TLS is on).
    TODO_NOTIFY_SMTP_TLS: connect with TLS from the start, e.g. port 465
      (default false; not together with STARTTLS).
    TODO_NOTIFY_SMTP_USERNAME / TODO_NOTIFY_SMTP_PASSWORD or
      TODO_NOTIFY_SMTP_PASSWORD_FILE: log in with these (a secret: the file form
      keeps it out of the environment); no login when the username is empty.
    TODO_NOTIFY_SMTP_TIMEOUT_SECONDS: how long one SMTP conversation may take
      (1 to 120, default 10).
    TODO_NOTIFY_HEARTBEAT_SECONDS: a live stream quiet this long gets a
      heartbeat (1 to 3600, default 15), so proxies keep it open.
    TODO_NOTIFY_MAX_STREAMS: live streams one host holds open at once; more are
      RESOURCE_EXHAUSTED (1 to 1,000,000, default 20,000). Each open stream is
      a call in progress, so TODO_GRPC_MAX_CONCURRENT_RPCS must leave room for them.
    TODO_NOTIFY_MAX_STREAMS_PER_USER: live streams one user holds open on one
      host at once (1 to 10,000, default 20).
    TODO_NOTIFY_RETRY_HOURS: how long a webhook or e-mail delivery is retried
      before it is marked failed (0 to 720, default 24; 0 means one attempt).
    TODO_NOTIFY_RETRY_MAX_DELAY_SECONDS: the longest pause between two attempts
      to one user's endpoint; pauses double from 1 s up to it, with jitter
      (1 to 3600, default 600).
    """

    webhook_allow_http_loopback: bool = False
    webhook_allow_private: bool = False
    webhook_timeout_seconds: int = 10
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_sender: str = ""
    smtp_starttls: bool = True
    smtp_tls: bool = False
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)  # a secret: out of logs and tracebacks
    smtp_timeout_seconds: int = 10
    heartbeat_seconds: int = 15
    max_streams: int = 20_000
    max_streams_per_user: int = 20
    retry_hours: int = 24
    retry_max_delay_seconds: int = 600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifySettings:
        """Reads the settings; raises ConfigError naming the first bad one."""
        env = os.environ if env is None else env
        smtp_host = env_str(env, "TODO_NOTIFY_SMTP_HOST", "").strip()
        smtp_tls = env_bool(env, "TODO_NOTIFY_SMTP_TLS", False)
        settings = cls(
            webhook_allow_http_loopback=env_bool(env, "TODO_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK", False),
            webhook_allow_private=env_bool(env, "TODO_NOTIFY_WEBHOOK_ALLOW_PRIVATE", False),
            webhook_timeout_seconds=env_int(env, "TODO_NOTIFY_WEBHOOK_TIMEOUT_SECONDS", 10, 1, 120),
            smtp_host=smtp_host,
            smtp_port=env_int(env, "TODO_NOTIFY_SMTP_PORT", 587, 1, 65535),
            smtp_sender=env_str(env, "TODO_NOTIFY_SMTP_SENDER", "").strip(),
            smtp_starttls=env_bool(env, "TODO_NOTIFY_SMTP_STARTTLS", not smtp_tls),
            smtp_tls=smtp_tls,
            smtp_username=env_str(env, "TODO_NOTIFY_SMTP_USERNAME", ""),
            smtp_password=_smtp_password(env),
            smtp_timeout_seconds=env_int(env, "TODO_NOTIFY_SMTP_TIMEOUT_SECONDS", 10, 1, 120),
            heartbeat_seconds=env_int(env, "TODO_NOTIFY_HEARTBEAT_SECONDS", 15, 1, 3600),
            max_streams=env_int(env, "TODO_NOTIFY_MAX_STREAMS", 20_000, 1, 1_000_000),
            max_streams_per_user=env_int(env, "TODO_NOTIFY_MAX_STREAMS_PER_USER", 20, 1, 10_000),
            retry_hours=env_int(env, "TODO_NOTIFY_RETRY_HOURS", 24, 0, 720),
            retry_max_delay_seconds=env_int(env, "TODO_NOTIFY_RETRY_MAX_DELAY_SECONDS", 600, 1, RETRY_MAX_DELAY_CAP),
        )
        if smtp_host:
            sender = settings.smtp_sender
            if not sender:
                raise ConfigError("TODO_NOTIFY_SMTP_SENDER is required when TODO_NOTIFY_SMTP_HOST is set")
            # It becomes a header: no line breaks, one @, no spaces.
            if sender.count("@") != 1 or not sender.isprintable() or any(c.isspace() for c in sender):
                raise ConfigError(f"TODO_NOTIFY_SMTP_SENDER must be an e-mail address, got {sender[:80]!r}")
        if settings.smtp_starttls and settings.smtp_tls:
            raise ConfigError("set TODO_NOTIFY_SMTP_STARTTLS or TODO_NOTIFY_SMTP_TLS, not both")
        return settings

    @property
    def email_available(self) -> bool:
        """Whether e-mail delivery is on (an SMTP host is configured)."""
        return bool(self.smtp_host)

    @property
    def retry_for(self) -> timedelta:
        """TODO_NOTIFY_RETRY_HOURS as a timedelta."""
        return timedelta(hours=self.retry_hours)

    def webhook_policy(self) -> WebhookPolicy:
        """The webhook sender's policy of these settings."""
        from notify_svc.channels.webhook import WebhookPolicy

        return WebhookPolicy(
            allow_http_loopback=self.webhook_allow_http_loopback,
            allow_private_networks=self.webhook_allow_private,
            timeout_seconds=float(self.webhook_timeout_seconds),
        )

    def smtp_settings(self) -> SmtpSettings:
        """The e-mail sender's settings (host "" means e-mail is off)."""
        from notify_svc.channels.email import SmtpSettings

        return SmtpSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            sender=self.smtp_sender,
            starttls=self.smtp_starttls,
            use_tls=self.smtp_tls,
            username=self.smtp_username,
            password=self.smtp_password,
            timeout_seconds=float(self.smtp_timeout_seconds),
        )


def _smtp_password(env: Mapping[str, str]) -> str:
    password = env.get("TODO_NOTIFY_SMTP_PASSWORD", "")
    path = env.get("TODO_NOTIFY_SMTP_PASSWORD_FILE", "")
    if password and path:
        raise ConfigError("set TODO_NOTIFY_SMTP_PASSWORD or TODO_NOTIFY_SMTP_PASSWORD_FILE, not both")
    if not path:
        return password
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"TODO_NOTIFY_SMTP_PASSWORD_FILE cannot be read: {exc.strerror}") from None
