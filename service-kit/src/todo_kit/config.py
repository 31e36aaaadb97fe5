"""Typed configuration from the environment, failing fast with a clear message."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any


class ConfigError(SystemExit):
    """A setting is missing or malformed; the process stops with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(f"configuration error: {message}")


def env_str(env: Mapping[str, str], name: str, default: str | None) -> str:
    """The setting `name`, or default when unset or empty; ConfigError when required (default None) and missing."""
    value = env.get(name, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise ConfigError(f"{name} is required")
    return value


def env_int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """A whole-number setting within lo..hi; ConfigError naming it otherwise."""
    raw = env_str(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """A setting that must be one of choices; ConfigError naming it otherwise."""
    value = env_str(env, name, default)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no setting: true/false, yes/no, on/off or 1/0 (any case); ConfigError naming it otherwise."""
    raw = env_str(env, name, "true" if default else "false").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Settings shared by every service and runtime.

    TODO_RUNTIME: "embedded" (all units in one process), "kafka" (a unit per
      process on Kafka, todo_kit.kafka_host) or "dapr".
    TODO_GRPC_HOST / TODO_GRPC_PORT: where the gRPC server listens.
    TODO_DATA_DIR: embedded mode's data folder (PostgreSQL, signing key).
    TODO_DATABASE_URL: a PostgreSQL URL with "{database}" standing for each
      service's database name; empty in embedded mode (the embedded server is used).
    TODO_DATABASE_PREFIX: put before every database name (to share one server).
    TODO_JWT_SECRET / TODO_JWT_SECRET_FILE: the token signing key (a secret).
    TODO_RETENTION_DAYS: how long published events are kept (outbox, event log);
      processed event ids are kept twice as long (1 to 3650, default 7).
    TODO_EVENT_RETRY_SECONDS: how long an event whose handler keeps failing is
      retried before it is dead-lettered (default 6 hours), so an outage of a
      dependency delays events instead of losing them.
    TODO_EVENT_RETRY_MAX_DELAY_SECONDS: the longest pause between two attempts
      (backoff doubles from 0.1 s up to this; default 30).
    TODO_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR.
    OTEL_EXPORTER_OTLP_ENDPOINT: where to export traces; empty turns exporting off.
    TODO_GRPC_MAX_CONCURRENT_RPCS: calls served at once; more are refused with
      RESOURCE_EXHAUSTED (1 to 100000, default 25000). An open server stream
      (a live notification feed) is a call in progress for as long as it is
      open, so the default leaves room for 20,000 of them beside other calls.
    TODO_GRPC_DEFAULT_DEADLINE_SECONDS: how long a unary call may run when the
      client set no deadline; then DEADLINE_EXCEEDED (1 to 3600, default 30).
    TODO_TOKEN_MAX_LIFETIME_HOURS: the longest a bearer token may live, from
      issue to expiry; longer ones are refused (1 to 87600, default 720 = 30 days).
    TODO_AUTH_MODE: "shared-key" (HS256 tokens signed with TODO_JWT_SECRET[_FILE];
      the default) or "oidc" (tokens of an OpenID Connect provider, below).
    TODO_OIDC_ISSUER / TODO_OIDC_AUDIENCE: the provider's issuer URL and the
      audience tokens must name (both required with oidc).
    TODO_OIDC_JWKS_URL: where the provider's keys are (default: the jwks_uri of
      the issuer's /.well-known/openid-configuration).
    TODO_OIDC_ALGORITHMS: accepted signature algorithms (default "RS256,ES256";
      only asymmetric ones may be named).
    TODO_OIDC_USER_CLAIM: the claim holding the user id (default "sub").
    TODO_OIDC_JWKS_REFRESH_SECONDS: how often the keys are fetched again
      (30 to 86400, default 300).
    TODO_RATE_LIMIT_PER_MINUTE: commands a user may send to one service per
      minute (0 = no limit; default 600 in the kafka and dapr runtimes, 0 in
      the embedded default, which serves one machine's users and its tests).
    TODO_RATE_LIMIT_BURST: how many commands a user may send at once before the
      per-minute rate applies (1 to 100000, default 120).
    """

    runtime: str
    grpc_host: str
    grpc_port: int
    data_dir: Path
    database_url: str
    database_prefix: str
    jwt_secret: str
    jwt_secret_file: str
    log_level: str
    otlp_endpoint: str
    retention_days: int
    event_retry_seconds: int = 6 * 3600
    event_retry_max_delay_seconds: int = 30
    max_concurrent_rpcs: int = 25_000
    default_deadline_seconds: int = 30
    token_max_lifetime_hours: int = 720
    auth_mode: str = "shared-key"
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_algorithms: tuple[str, ...] = ("RS256", "ES256")
    oidc_user_claim: str = "sub"
    oidc_jwks_refresh_seconds: int = 300
    rate_limit_per_minute: int = 0
    rate_limit_burst: int = 120

    @property
    def token_max_lifetime(self) -> timedelta:
        """TODO_TOKEN_MAX_LIFETIME_HOURS as a timedelta."""
        return timedelta(hours=self.token_max_lifetime_hours)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads the settings; raises ConfigError naming the first bad one."""
        env = os.environ if env is None else env
        settings = cls(
            runtime=env_choice(env, "TODO_RUNTIME", "embedded", ("embedded", "kafka", "dapr")),
            grpc_host=env_str(env, "TODO_GRPC_HOST", "127.0.0.1"),
            grpc_port=env_int(env, "TODO_GRPC_PORT", 50051, 0, 65535),
            data_dir=Path(env_str(env, "TODO_DATA_DIR", ".data")).expanduser().resolve(),
            database_url=env.get("TODO_DATABASE_URL", ""),
            database_prefix=env.get("TODO_DATABASE_PREFIX", ""),
            jwt_secret=env.get("TODO_JWT_SECRET", ""),
            jwt_secret_file=env.get("TODO_JWT_SECRET_FILE", ""),
            log_level=env_choice(env, "TODO_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            retention_days=env_int(env, "TODO_RETENTION_DAYS", 7, 1, 3650),
            event_retry_seconds=env_int(env, "TODO_EVENT_RETRY_SECONDS", 6 * 3600, 0, 30 * 24 * 3600),
            event_retry_max_delay_seconds=env_int(env, "TODO_EVENT_RETRY_MAX_DELAY_SECONDS", 30, 1, 3600),
            max_concurrent_rpcs=env_int(env, "TODO_GRPC_MAX_CONCURRENT_RPCS", 25_000, 1, 100_000),
            default_deadline_seconds=env_int(env, "TODO_GRPC_DEFAULT_DEADLINE_SECONDS", 30, 1, 3600),
            token_max_lifetime_hours=env_int(env, "TODO_TOKEN_MAX_LIFETIME_HOURS", 720, 1, 87_600),
            **_identity_settings(env),
        )
        if settings.database_url and "{database}" not in settings.database_url:
            raise ConfigError("TODO_DATABASE_URL must contain {database} where each service's database name goes")
        if not all(c.isalnum() or c == "_" for c in settings.database_prefix):
            raise ConfigError("TODO_DATABASE_PREFIX may hold only letters, digits and _")
        distributed = settings.runtime in ("kafka", "dapr")
        if distributed and not settings.database_url:
            raise ConfigError(f"TODO_DATABASE_URL is required with TODO_RUNTIME={settings.runtime}")
        if distributed and settings.auth_mode == "shared-key" and not (settings.jwt_secret or settings.jwt_secret_file):
            raise ConfigError(
                f"TODO_JWT_SECRET or TODO_JWT_SECRET_FILE is required with TODO_RUNTIME={settings.runtime}"
            )
        return settings


ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
"""Signature algorithms an OpenID Connect provider's tokens may use: never HS* (a shared secret) or none."""


def _identity_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """TODO_AUTH_MODE, TODO_OIDC_* and TODO_RATE_LIMIT_* as Settings fields; ConfigError naming a bad one."""
    runtime = env.get("TODO_RUNTIME") or "embedded"
    fields: dict[str, Any] = {
        "auth_mode": env_choice(env, "TODO_AUTH_MODE", "shared-key", ("shared-key", "oidc")),
        "oidc_issuer": env_str(env, "TODO_OIDC_ISSUER", "").rstrip("/"),
        "oidc_audience": env_str(env, "TODO_OIDC_AUDIENCE", ""),
        "oidc_jwks_url": env_str(env, "TODO_OIDC_JWKS_URL", ""),
        "oidc_user_claim": env_str(env, "TODO_OIDC_USER_CLAIM", "sub"),
        "oidc_jwks_refresh_seconds": env_int(env, "TODO_OIDC_JWKS_REFRESH_SECONDS", 300, 30, 86_400),
        # Off by default in the embedded default: its users are one machine's, and its tests drive load.
        "rate_limit_per_minute": env_int(
            env, "TODO_RATE_LIMIT_PER_MINUTE", 0 if runtime == "embedded" else 600, 0, 1_000_000
        ),
        "rate_limit_burst": env_int(env, "TODO_RATE_LIMIT_BURST", 120, 1, 100_000),
    }
    algorithms = tuple(a.strip() for a in env_str(env, "TODO_OIDC_ALGORITHMS", "RS256,ES256").split(",") if a.strip())
    refused = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
    if not algorithms or refused:
        raise ConfigError(
            f"TODO_OIDC_ALGORITHMS must name some of {', '.join(ASYMMETRIC_ALGORITHMS)}, got {', '.join(refused)!r}"
        )
    fields["oidc_algorithms"] = algorithms
    if fields["auth_mode"] == "oidc":
        for name, key in (("TODO_OIDC_ISSUER", "oidc_issuer"), ("TODO_OIDC_AUDIENCE", "oidc_audience")):
            if not fields[key]:
                raise ConfigError(f"{name} is required with TODO_AUTH_MODE=oidc")
        for name, key in (("TODO_OIDC_ISSUER", "oidc_issuer"), ("TODO_OIDC_JWKS_URL", "oidc_jwks_url")):
            if fields[key] and not is_fetchable(fields[key]):
                raise ConfigError(f"{name} must be an https:// URL (http:// only on loopback), got {fields[key]!r}")
    return fields


def is_fetchable(url: str) -> bool:
    """Whether a provider's URL may be fetched: https, or plain http to this machine (a local test provider)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
