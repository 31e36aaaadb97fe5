"""Configuration fails fast and clearly; tokens carry the user and nothing else does."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from todo_kit.auth import TokenVerifier, issue_token, signing_key_for
from todo_kit.config import ConfigError, Settings
from todo_kit.errors import Unauthenticated


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TODO_GRPC_PORT": "http"}, "TODO_GRPC_PORT must be a whole number"),
        ({"TODO_GRPC_PORT": "70000"}, "between 0 and 65535"),
        ({"TODO_RUNTIME": "kubernetes"}, "TODO_RUNTIME must be one of embedded, kafka, dapr"),
        ({"TODO_DATABASE_URL": "postgresql://db/tasks"}, "{database}"),
        ({"TODO_RUNTIME": "dapr"}, "TODO_DATABASE_URL is required"),
        ({"TODO_DATABASE_PREFIX": "x; drop"}, "TODO_DATABASE_PREFIX"),
    ],
)
def test_bad_settings_stop_with_a_clear_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert message in str(raised.value.code)


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.runtime, settings.grpc_host, settings.grpc_port) == ("embedded", "127.0.0.1", 50051)


def test_embedded_key_is_made_once_per_data_folder(tmp_path: Path) -> None:
    settings = Settings.from_env({"TODO_DATA_DIR": str(tmp_path)})
    first = signing_key_for(settings)
    assert signing_key_for(settings) == first
    assert (tmp_path / "jwt-signing-key").stat().st_mode & 0o077 == 0
    other = Settings.from_env({"TODO_DATA_DIR": str(tmp_path / "other")})
    assert signing_key_for(other) != first


def test_configured_key_wins_and_must_be_long() -> None:
    assert signing_key_for(Settings.from_env({"TODO_JWT_SECRET": "k" * 40})) == "k" * 40
    with pytest.raises(ConfigError, match="at least 32"):
        signing_key_for(Settings.from_env({"TODO_JWT_SECRET": "short"}))


def test_token_round_trip_and_rejections() -> None:
    key = "s" * 48
    verifier = TokenVerifier(key)
    assert verifier.user_of(f"Bearer {issue_token(key, 'alice')}") == "alice"
    expired = issue_token(key, "alice", ttl=timedelta(minutes=1), now=datetime.now(UTC) - timedelta(hours=1))
    for header, reason in [
        (None, "missing"),
        ("", "missing"),
        ("Bearer", "Bearer <token>"),
        ("Token abc", "Bearer <token>"),
        (f"Bearer {expired}", "expired"),
        (f"Bearer {issue_token('t' * 48, 'alice')}", "signature"),
        ("Bearer a.b.c", "not valid"),
    ]:
        with pytest.raises(Unauthenticated, match=reason):
            verifier.user_of(header)


@pytest.mark.parametrize("user", ["", "has space", "x" * 200, "semi;colon"])
def test_bad_user_ids_get_no_token(user: str) -> None:
    with pytest.raises(ValueError):
        issue_token("s" * 48, user)


def test_a_remembered_token_still_expires() -> None:
    key = "s" * 48
    verifier = TokenVerifier(key)
    token = issue_token(key, "alice", ttl=timedelta(seconds=1))
    assert verifier.user_of(f"Bearer {token}") == "alice"
    assert verifier.user_of(f"Bearer {token}") == "alice"  # from memory
    time.sleep(1.1)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.user_of(f"Bearer {token}")


def claims(sub: str = "alice", lifetime: timedelta = timedelta(hours=1), **extra: object) -> dict[str, object]:
    now = datetime.now(UTC)
    found: dict[str, object] = {"sub": sub, "iss": "todo-chatbot", "aud": "todo", "iat": now, "exp": now + lifetime}
    found.update(extra)
    return found


def test_a_subject_ending_in_a_newline_is_not_a_user() -> None:
    key = "s" * 48
    token = jwt.encode(claims("alice\n"), key, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="subject"):
        TokenVerifier(key).user_of(f"Bearer {token}")
    with pytest.raises(ValueError):
        issue_token(key, "alice\n")


def test_tokens_living_longer_than_the_maximum_are_refused() -> None:
    key = "s" * 48
    month = jwt.encode(claims(lifetime=timedelta(days=31)), key, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="lives longer"):
        TokenVerifier(key).user_of(f"Bearer {month}")
    assert TokenVerifier(key, max_lifetime=timedelta(days=40)).user_of(f"Bearer {month}") == "alice"
    day = issue_token(key, "alice")
    with pytest.raises(Unauthenticated, match="lives longer"):
        TokenVerifier(key, max_lifetime=timedelta(hours=1)).user_of(f"Bearer {day}")


def test_tokens_without_issue_time_are_refused() -> None:
    key = "s" * 48
    forever = claims()
    del forever["iat"]
    with pytest.raises(Unauthenticated, match="iat"):
        TokenVerifier(key).user_of(f"Bearer {jwt.encode(forever, key, algorithm='HS256')}")


@pytest.mark.parametrize("ttl", [timedelta(days=31), timedelta(0), timedelta(hours=-1)])
def test_issue_token_refuses_lifetimes_beyond_the_maximum(ttl: timedelta) -> None:
    with pytest.raises(ValueError, match="token lives"):
        issue_token("s" * 48, "alice", ttl=ttl)
    assert issue_token("s" * 48, "alice", ttl=timedelta(days=29))


def test_server_limits_and_token_lifetime_are_settings() -> None:
    settings = Settings.from_env({})
    assert (settings.max_concurrent_rpcs, settings.default_deadline_seconds) == (25_000, 30)
    assert settings.token_max_lifetime == timedelta(days=30)
    changed = Settings.from_env(
        {
            "TODO_GRPC_MAX_CONCURRENT_RPCS": "5",
            "TODO_GRPC_DEFAULT_DEADLINE_SECONDS": "2",
            "TODO_TOKEN_MAX_LIFETIME_HOURS": "1",
        }
    )
    assert (changed.max_concurrent_rpcs, changed.default_deadline_seconds) == (5, 2)
    assert changed.token_max_lifetime == timedelta(hours=1)
    with pytest.raises(ConfigError, match="TODO_GRPC_MAX_CONCURRENT_RPCS"):
        Settings.from_env({"TODO_GRPC_MAX_CONCURRENT_RPCS": "0"})
