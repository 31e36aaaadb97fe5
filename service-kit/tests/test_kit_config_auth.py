"""Configuration fails fast and clearly; tokens carry the user and nothing else does."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from todo_kit.auth import TokenVerifier, issue_token, signing_key_for
from todo_kit.config import ConfigError, Settings
from todo_kit.errors import Unauthenticated


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TODO_GRPC_PORT": "http"}, "TODO_GRPC_PORT must be a whole number"),
        ({"TODO_GRPC_PORT": "70000"}, "between 0 and 65535"),
        ({"TODO_RUNTIME": "kubernetes"}, "TODO_RUNTIME must be one of embedded, dapr"),
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
