"""Identity: the calling user comes only from a verified bearer token.

Tokens are HS256 JWTs with sub = the user id, issued by issue_token with a
signing key that is configuration (a secret), never a constant in code. In the
embedded default a key is generated once per data folder (signing_key_for).
"""

from __future__ import annotations

import contextvars
import os
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from todo_kit.config import ConfigError, Settings
from todo_kit.errors import Unauthenticated

ISSUER = "todo-chatbot"
AUDIENCE = "todo"
ALGORITHM = "HS256"
# A user id is what a token's subject may be: short, printable, no spaces.
USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9._@:+-]{1,128}$")
KEY_FILE_NAME = "jwt-signing-key"

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


def signing_key_for(settings: Settings) -> str:
    """The signing key: TODO_JWT_SECRET, TODO_JWT_SECRET_FILE, or (embedded) one kept in the data folder."""
    if settings.jwt_secret:
        key = settings.jwt_secret
    elif settings.jwt_secret_file:
        try:
            key = Path(settings.jwt_secret_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"TODO_JWT_SECRET_FILE cannot be read: {exc}") from None
    else:
        key = _data_dir_key(settings.data_dir)
    if len(key) < 32:
        raise ConfigError("the JWT signing key must be at least 32 characters")
    return key


def _data_dir_key(data_dir: Path) -> str:
    path = data_dir / KEY_FILE_NAME
    if path.exists():
        return path.read_text().strip()
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


def issue_token(key: str, user_id: str, *, ttl: timedelta = timedelta(hours=24), now: datetime | None = None) -> str:
    """Signs a token for user_id that expires after ttl."""
    if not USER_ID_PATTERN.match(user_id):
        raise ValueError("a user id is 1 to 128 letters, digits or . _ @ : + -")
    issued = now or datetime.now(UTC)
    claims = {"sub": user_id, "iss": ISSUER, "aud": AUDIENCE, "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


class TokenVerifier:
    """Checks bearer tokens and returns their user.

    A client sends the same token with every call, so verified tokens are
    remembered (until they expire) instead of checking the signature each time.
    """

    CACHE_SIZE = 10_000

    def __init__(self, key: str) -> None:
        self._key = key
        self._verified: dict[str, tuple[str, float]] = {}

    def user_of(self, authorization: str | None) -> str:
        """The user id of an `authorization: Bearer <JWT>` value; raises Unauthenticated."""
        if not authorization:
            raise Unauthenticated("missing authorization metadata: send `authorization: Bearer <token>`")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization must be `Bearer <token>`")
        remembered = self._verified.get(token)
        if remembered is not None and remembered[1] > time.time():
            return remembered[0]
        user_id, expires = self._verify(token)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (user_id, expires)
        return user_id

    def _verify(self, token: str) -> tuple[str, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        user_id = claims.get("sub")
        if not isinstance(user_id, str) or not USER_ID_PATTERN.match(user_id):
            raise Unauthenticated("the token's subject is not a valid user id")
        return user_id, float(claims["exp"])
