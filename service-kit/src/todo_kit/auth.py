"""Identity: the calling user comes only from a verified bearer token.

Two modes (TODO_AUTH_MODE): "shared-key", below, and "oidc", tokens of an
OpenID Connect provider (todo_kit.oidc); verifier_for picks one.

Shared-key tokens are HS256 JWTs with sub = the user id, issued by issue_token with a
signing key that is configuration (a secret), never a constant in code. In the
embedded default a key is generated once per data folder (signing_key_for), by
the host at its first start. A token lives at most a bounded time (exp - iat,
30 days by default), so a leaked one does not work forever.
"""

from __future__ import annotations

import contextvars
import os
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import jwt

from todo_kit.config import ConfigError, Settings
from todo_kit.errors import Unauthenticated

ISSUER = "todo-chatbot"
AUDIENCE = "todo"
ALGORITHM = "HS256"
# A user id is what a token's subject may be: short, printable, no spaces.
# \Z, not $: $ also matches before a final newline, and "alice\n" is not alice.
USER_ID_PATTERN = re.compile(r"\A[A-Za-z0-9._@:+-]{1,128}\Z")
KEY_FILE_NAME = "jwt-signing-key"
MAX_TOKEN_LIFETIME = timedelta(days=30)
"""The longest a token may live (exp - iat) unless TODO_TOKEN_MAX_LIFETIME_HOURS says otherwise."""


class NoSigningKey(Exception):
    """The data folder has no signing key yet, and none may be created here."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(f"no signing key in {data_dir}")
        self.data_dir = data_dir


_current_user: contextvars.ContextVar[str] = contextvars.ContextVar("current_user")


def current_user() -> str:
    """The authenticated user of the RPC being handled."""
    try:
        return _current_user.get()
    except LookupError:
        raise Unauthenticated("no authenticated user in this context") from None


def set_current_user(user_id: str) -> contextvars.Token[str]:
    """Binds the authenticated user for the rest of this context (used by the server)."""
    return _current_user.set(user_id)


def signing_key_for(settings: Settings, *, create: bool = True) -> str:
    """The signing key: TODO_JWT_SECRET, TODO_JWT_SECRET_FILE, or (embedded) one kept in the data folder.

    The data folder's key is made on first use when create is true (the host,
    at its first start); otherwise a missing one raises NoSigningKey, so a
    token tool never signs with a key no host uses.
    """
    if settings.jwt_secret:
        key = settings.jwt_secret
    elif settings.jwt_secret_file:
        try:
            key = Path(settings.jwt_secret_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"TODO_JWT_SECRET_FILE cannot be read: {exc}") from None
    else:
        key = _data_dir_key(settings.data_dir, create=create)
    if len(key) < 32:
        raise ConfigError("the JWT signing key must be at least 32 characters")
    return key


def _data_dir_key(data_dir: Path, *, create: bool) -> str:
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise NoSigningKey(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Created exclusively and private to the owner; a concurrent creator wins.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def issue_token(
    key: str,
    user_id: str,
    *,
    ttl: timedelta = timedelta(hours=24),
    now: datetime | None = None,
    max_lifetime: timedelta = MAX_TOKEN_LIFETIME,
) -> str:
    """Signs a token for user_id that expires after ttl (positive, at most max_lifetime); raises ValueError."""
    if not USER_ID_PATTERN.fullmatch(user_id):
        raise ValueError("a user id is 1 to 128 letters, digits or . _ @ : + -")
    if not timedelta(0) < ttl <= max_lifetime:
        raise ValueError(f"a token lives more than 0 and at most {max_lifetime.total_seconds() / 3600:g} hours")
    issued = now or datetime.now(UTC)
    claims = {"sub": user_id, "iss": ISSUER, "aud": AUDIENCE, "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def bearer_token(authorization: str | None) -> str:
    """The token of an `authorization: Bearer <token>` value; raises Unauthenticated."""
    if not authorization:
        raise Unauthenticated("missing authorization metadata: send `authorization: Bearer <token>`")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization must be `Bearer <token>`")
    return token


class BearerVerifier(Protocol):
    """What the server needs to know who calls: the user of a call's authorization metadata."""

    async def authenticate(self, authorization: str | None) -> str:
        """The user id of an `authorization: Bearer <JWT>` value; raises Unauthenticated."""
        ...


def verifier_for(settings: Settings, signing_key: Callable[[], str]) -> BearerVerifier:
    """The verifier of settings.auth_mode: shared-key (with the key signing_key() gives) or oidc."""
    if settings.auth_mode == "oidc":
        from todo_kit.oidc import OidcSettings, OidcVerifier

        return OidcVerifier(OidcSettings.of(settings))
    return TokenVerifier(signing_key(), max_lifetime=settings.token_max_lifetime)


class TokenVerifier:
    """Checks bearer tokens and returns their user.

    A client sends the same token with every call, so verified tokens are
    remembered (until they expire) instead of checking the signature each time.
    A token must say when it was issued (iat) and live at most max_lifetime.
    """

    CACHE_SIZE = 10_000

    def __init__(self, key: str, *, max_lifetime: timedelta = MAX_TOKEN_LIFETIME) -> None:
        self._key = key
        self._max_lifetime = max_lifetime.total_seconds()
        self._verified: dict[str, tuple[str, float]] = {}

    def user_of(self, authorization: str | None) -> str:
        """The user id of an `authorization: Bearer <JWT>` value; raises Unauthenticated."""
        token = bearer_token(authorization)
        remembered = self._verified.get(token)
        if remembered is not None and remembered[1] > time.time():
            return remembered[0]
        user_id, expires = self._verify(token)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (user_id, expires)
        return user_id

    async def authenticate(self, authorization: str | None) -> str:
        """user_of as the server calls it (the check is quick: no I/O)."""
        return self.user_of(authorization)

    def _verify(self, token: str) -> tuple[str, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        user_id = claims.get("sub")
        if not isinstance(user_id, str) or not USER_ID_PATTERN.fullmatch(user_id):
            raise Unauthenticated("the token's subject is not a valid user id")
        if float(claims["exp"]) - float(claims["iat"]) > self._max_lifetime:
            raise Unauthenticated(
                f"the token lives longer than the {self._max_lifetime / 3600:g} hours allowed; get a new one"
            )
        return user_id, float(claims["exp"])
