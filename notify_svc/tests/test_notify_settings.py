"""The notification service's settings: defaults, limits, and the messages that name a bad one."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from notify_svc.settings import NotifySettings
from todo_kit.config import ConfigError


def test_defaults_keep_webhooks_to_public_https_and_email_off() -> None:
    settings = NotifySettings.from_env({})
    assert settings == NotifySettings()
    assert not settings.webhook_allow_http_loopback and not settings.webhook_allow_private
    assert not settings.email_available
    assert (settings.heartbeat_seconds, settings.max_streams, settings.max_streams_per_user) == (15, 20_000, 20)
    assert (settings.retry_hours, settings.retry_max_delay_seconds, settings.webhook_timeout_seconds) == (24, 600, 10)


def test_every_setting_is_read_from_its_name() -> None:
    settings = NotifySettings.from_env(
        {
            "TODO_NOTIFY_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
            "TODO_NOTIFY_WEBHOOK_ALLOW_PRIVATE": "yes",
            "TODO_NOTIFY_WEBHOOK_TIMEOUT_SECONDS": "3",
            "TODO_NOTIFY_SMTP_HOST": "127.0.0.1",
            "TODO_NOTIFY_SMTP_PORT": "2525",
            "TODO_NOTIFY_SMTP_SENDER": "todo@example.test",
            "TODO_NOTIFY_SMTP_TLS": "on",
            "TODO_NOTIFY_SMTP_USERNAME": "todo",
            "TODO_NOTIFY_SMTP_PASSWORD": "s3cret",
            "TODO_NOTIFY_SMTP_TIMEOUT_SECONDS": "4",
            "TODO_NOTIFY_HEARTBEAT_SECONDS": "5",
            "TODO_NOTIFY_MAX_STREAMS": "10000",
            "TODO_NOTIFY_MAX_STREAMS_PER_USER": "2",
            "TODO_NOTIFY_RETRY_HOURS": "0",
            "TODO_NOTIFY_RETRY_MAX_DELAY_SECONDS": "1",
        }
    )
    assert settings == NotifySettings(
        webhook_allow_http_loopback=True, webhook_allow_private=True, webhook_timeout_seconds=3,
        smtp_host="127.0.0.1", smtp_port=2525, smtp_sender="todo@example.test", smtp_starttls=False, smtp_tls=True,
        smtp_username="todo", smtp_password="s3cret", smtp_timeout_seconds=4, heartbeat_seconds=5,
        max_streams=10_000, max_streams_per_user=2, retry_hours=0, retry_max_delay_seconds=1,
    )  # fmt: skip
    assert settings.email_available


def test_tls_from_the_start_turns_starttls_off_unless_asked_for_both() -> None:
    assert not NotifySettings.from_env({"TODO_NOTIFY_SMTP_TLS": "true"}).smtp_starttls
    assert NotifySettings.from_env({}).smtp_starttls


def test_the_smtp_password_can_come_from_a_file_and_stays_out_of_the_repr() -> None:
    folder = Path(tempfile.mkdtemp(prefix="todo-"))
    (folder / "password").write_text("from-a-file\n")
    settings = NotifySettings.from_env({"TODO_NOTIFY_SMTP_PASSWORD_FILE": str(folder / "password")})
    assert settings.smtp_password == "from-a-file"
    assert "from-a-file" not in repr(settings)
    (folder / "password").unlink()
    folder.rmdir()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TODO_NOTIFY_HEARTBEAT_SECONDS": "0"}, "TODO_NOTIFY_HEARTBEAT_SECONDS"),
        ({"TODO_NOTIFY_MAX_STREAMS_PER_USER": "many"}, "TODO_NOTIFY_MAX_STREAMS_PER_USER"),
        ({"TODO_NOTIFY_RETRY_MAX_DELAY_SECONDS": "3601"}, "TODO_NOTIFY_RETRY_MAX_DELAY_SECONDS"),
        ({"TODO_NOTIFY_RETRY_HOURS": "-1"}, "TODO_NOTIFY_RETRY_HOURS"),
        ({"TODO_NOTIFY_WEBHOOK_ALLOW_PRIVATE": "maybe"}, "TODO_NOTIFY_WEBHOOK_ALLOW_PRIVATE"),
        ({"TODO_NOTIFY_SMTP_HOST": "mail.test"}, "TODO_NOTIFY_SMTP_SENDER"),
        ({"TODO_NOTIFY_SMTP_HOST": "mail.test", "TODO_NOTIFY_SMTP_SENDER": "a@b\r\nBcc: x@y"}, "SMTP_SENDER"),
        ({"TODO_NOTIFY_SMTP_TLS": "true", "TODO_NOTIFY_SMTP_STARTTLS": "true"}, "TODO_NOTIFY_SMTP_STARTTLS"),
        ({"TODO_NOTIFY_SMTP_PASSWORD": "a", "TODO_NOTIFY_SMTP_PASSWORD_FILE": "/x"}, "TODO_NOTIFY_SMTP_PASSWORD_FILE"),
        ({"TODO_NOTIFY_SMTP_PASSWORD_FILE": "/nonexistent/password"}, "TODO_NOTIFY_SMTP_PASSWORD_FILE"),
    ],
)
def test_a_bad_setting_stops_the_start_with_its_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        NotifySettings.from_env(env)
