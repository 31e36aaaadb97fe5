"""Tokens of an OpenID Connect provider (TODO_AUTH_MODE=oidc): issuer, audience, signature by the provider's keys.

The provider publishes its public keys as a JWKS document (at TODO_OIDC_JWKS_URL,
or the jwks_uri its discovery document names). JwksKeys keeps them in memory:
fetched again every TODO_OIDC_JWKS_REFRESH_SECONDS in the background while the
cached ones keep serving, and at once (at most every MIN_UNKNOWN_KID_REFRESH
seconds) when a token names a key id it does not know, which is how a provider's
key rotation reaches us before the next scheduled refresh. When the provider is
down, the cached keys keep serving; with no keys at all every token is refused
(fail closed). Fetches run in a worker thread with a deadline, never on the
event loop, and one at a time.

Every refusal is UNAUTHENTICATED with a message saying what is wrong: wrong
issuer, audience or algorithm ("none" and HS256 are never accepted, so a token
"signed" with the public key as an HMAC secret is refused), expired, not yet
valid, an unknown key, a user claim that is not a valid user id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import jwt

from todo_kit.auth import USER_ID_PATTERN, bearer_token
from todo_kit.config import Settings, is_fetchable
from todo_kit.errors import Unauthenticated

log = logging.getLogger(__name__)

MIN_UNKNOWN_KID_REFRESH = 30.0
"""An unknown key id fetches the keys again at most this often (seconds), so junk tokens cannot flood the provider."""
EMPTY_RETRY = 5.0
"""With no keys at all (the provider unreachable so far), a call tries a fetch at most this often (seconds)."""
FETCH_TIMEOUT = 5.0
"""The deadline of one fetch of the discovery or JWKS document (seconds)."""
MAX_DOCUMENT_BYTES = 512 * 1024
"""A discovery or JWKS document larger than this is refused (a JWKS is a few kilobytes)."""
LEEWAY_SECONDS = 30
"""Clock skew allowed between the provider and this service for exp, nbf and iat."""

# Which key types may verify which algorithms: a key is used only for the family it was made for.
_KEY_TYPE_OF = {"RS": "RSA", "PS": "RSA", "ES": "EC"}


@dataclass(frozen=True)
class OidcSettings:
    """What tokens must say and where their keys are (see todo_kit.config.Settings, TODO_OIDC_*)."""

    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...]
    user_claim: str
    refresh_seconds: float
    max_lifetime_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> OidcSettings:
        """The OIDC part of the service's settings."""
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            algorithms=settings.oidc_algorithms,
            user_claim=settings.oidc_user_claim,
            refresh_seconds=float(settings.oidc_jwks_refresh_seconds),
            max_lifetime_seconds=settings.token_max_lifetime.total_seconds(),
        )


@dataclass(frozen=True)
class ProviderKey:
    """One of the provider's public keys, and the algorithm its JWK declares (alg), if it declares one."""

    jwk: jwt.PyJWK
    declared_algorithm: str | None


class ProviderUnavailable(Exception):
    """The provider's discovery or JWKS document could not be fetched or read."""


def _fetch_json(url: str) -> dict[str, Any]:
    """GET url as JSON within FETCH_TIMEOUT (blocking: runs in a worker thread)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(f"{url}: {exc}") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ProviderUnavailable(f"{url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise ProviderUnavailable(f"{url}: not JSON") from None
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"{url}: not a JSON object")
    return document


class JwksKeys:
    """The provider's public keys by key id, kept fresh (see the module's docstring)."""

    def __init__(self, settings: OidcSettings) -> None:
        self._settings = settings
        self._jwks_url = settings.jwks_url
        self._keys: dict[str, ProviderKey] = {}
        self._fetched_at = float("-inf")  # monotonic time of the last successful fetch
        self._tried_at = float("-inf")  # monotonic time of the last attempt, successful or not
        self._attempts = 0  # fetches finished; callers that waited for one do not start another
        self._unknown_kid_at = float("-inf")  # monotonic time of the last fetch an unknown key id caused
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    @property
    def key_ids(self) -> list[str]:
        """The ids of the keys held now."""
        return list(self._keys)

    async def key_for(self, kid: str | None) -> ProviderKey:
        """The key a token names (kid), fetching the keys when needed; raises Unauthenticated."""
        now = time.monotonic()
        if not self._keys:
            # Nothing cached yet (or every fetch failed so far): this call waits for a fetch, bounded.
            if now - self._tried_at >= EMPTY_RETRY:
                await self._refresh()
            if not self._keys:
                raise Unauthenticated("the identity provider's keys are not available; try again later")
        elif now - self._fetched_at >= self._settings.refresh_seconds:
            self._refresh_in_background()
        key = self._pick(kid)
        if key is None and time.monotonic() - self._unknown_kid_at >= MIN_UNKNOWN_KID_REFRESH:
            # A key the provider may have just rotated in.
            self._unknown_kid_at = time.monotonic()
            await self._refresh()
            key = self._pick(kid)
        if key is None:
            raise Unauthenticated(f"the token's key id {kid!r} is not one of the identity provider's keys")
        return key

    def _pick(self, kid: str | None) -> ProviderKey | None:
        if kid is not None:
            return self._keys.get(kid)
        # A provider with a single key may leave kid out of its tokens.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    def _refresh_in_background(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(self._refresh())

    async def _refresh(self) -> None:
        """Fetches the keys once (concurrent callers share the fetch); a failure keeps the cached keys."""
        attempts = self._attempts
        async with self._lock:
            if self._attempts != attempts:
                return  # another caller fetched while this one waited
            self._tried_at = time.monotonic()
            try:
                # The thread ends by itself within the socket timeout; the call does not wait longer than that.
                keys = await asyncio.wait_for(asyncio.to_thread(self._fetch_keys), 2 * FETCH_TIMEOUT + 1)
            except (ProviderUnavailable, TimeoutError) as exc:
                log.warning(
                    "cannot fetch the identity provider's keys; the cached ones stay in use",
                    extra={"error": str(exc) or "timed out", "cached_keys": len(self._keys)},
                )
                return
            finally:
                self._attempts += 1
            self._keys = keys
            self._fetched_at = time.monotonic()

    def _fetch_keys(self) -> dict[str, ProviderKey]:
        if not self._jwks_url:
            discovery_url = self._settings.issuer + "/.well-known/openid-configuration"
            discovery = _fetch_json(discovery_url)
            # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched for.
            if discovery.get("issuer", "").rstrip("/") != self._settings.issuer:
                raise ProviderUnavailable(f"{discovery_url}: names issuer {discovery.get('issuer')!r}")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not is_fetchable(jwks_uri):
                raise ProviderUnavailable(f"{discovery_url}: no https jwks_uri")
            self._jwks_url = jwks_uri
        document = _fetch_json(self._jwks_url)
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise ProviderUnavailable(f"{self._jwks_url}: no keys list")
        keys: dict[str, ProviderKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue  # encryption keys and junk are not for verifying tokens
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type or curve this service does not use
            declared = entry.get("alg")
            keys[str(entry.get("kid", ""))] = ProviderKey(key, declared if isinstance(declared, str) else None)
        if not keys:
            raise ProviderUnavailable(f"{self._jwks_url}: no usable signing key")
        return keys


class OidcVerifier:
    """Checks bearer tokens of the provider and returns their user (the user claim).

    Verified tokens are remembered until they expire or the keys are next due
    for a refresh, whichever is sooner, so a key the provider withdrew stops
    being trusted within one refresh period.
    """

    CACHE_SIZE = 10_000

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self.keys = JwksKeys(settings)
        self._verified: dict[str, tuple[str, float]] = {}

    async def authenticate(self, authorization: str | None) -> str:
        """The user id of an `authorization: Bearer <JWT>` value; raises Unauthenticated."""
        token = bearer_token(authorization)
        remembered = self._verified.get(token)
        if remembered is not None and remembered[1] > time.time():
            return remembered[0]
        user_id, expires = await self._verify(token)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (user_id, min(expires, time.time() + self.settings.refresh_seconds))
        return user_id

    @property
    def _bad_user_claim(self) -> str:
        return (
            f"the token's {self.settings.user_claim} claim is not a valid user id "
            "(1 to 128 letters, digits or . _ @ : + -)"
        )

    async def _verify(self, token: str) -> tuple[str, float]:
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not a JWT") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in settings.algorithms:
            raise Unauthenticated(
                f"the token's algorithm {algorithm!r} is not accepted (accepted: {', '.join(settings.algorithms)})"
            )
        kid = header.get("kid")
        key = await self.keys.key_for(kid if isinstance(kid, str) else None)
        if key.jwk.key_type != _KEY_TYPE_OF.get(algorithm[:2]) or key.declared_algorithm not in (algorithm, None):
            raise Unauthenticated(f"the token's algorithm {algorithm} does not match its key {kid!r}")
        try:
            claims = jwt.decode(
                token,
                key.jwk.key,
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"the token's issuer is not {settings.issuer}") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the token's audience is not {settings.audience}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature is not valid") from None
        except jwt.exceptions.InvalidSubjectError:
            raise Unauthenticated(self._bad_user_claim) from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
        user_id = claims.get(settings.user_claim)
        if not isinstance(user_id, str) or not USER_ID_PATTERN.fullmatch(user_id):
            raise Unauthenticated(self._bad_user_claim)
        expires = float(claims["exp"])
        issued = claims.get("iat")
        if isinstance(issued, int | float) and expires - float(issued) > settings.max_lifetime_seconds:
            raise Unauthenticated(
                f"the token lives longer than the {settings.max_lifetime_seconds / 3600:g} hours allowed"
            )
        return user_id, expires
