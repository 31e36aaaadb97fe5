"""Webhook delivery: one signed HTTP POST per attempt, in the Standard Webhooks v1 form.

Each request carries webhook-id (the message id, the same on every retry so the
receiver can drop duplicates), webhook-timestamp (Unix seconds) and
webhook-signature ("v1," + base64 HMAC-SHA256 over "{id}.{timestamp}.{body}",
keyed with the bytes of the user's "whsec_" secret).

The URL is the user's, so the sender guards the service's own network (server-side
request forgery): it resolves the host itself, refuses unless every address may be
called (addresses.py), and lets the HTTP client connect only to the addresses it
checked, so a DNS answer that changes between the check and the connection
(rebinding) cannot point it elsewhere. Redirects are not followed, only the first
max_response_bytes of an answer are read, and the whole attempt has one deadline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from notify_svc.channels import DeliveryResult, network_error_reason
from notify_svc.channels.addresses import address_problem, is_loopback_name, unwrapped

SECRET_PREFIX = "whsec_"
SECRET_BYTES_MIN = 24
SECRET_BYTES_MAX = 64
URL_LENGTH_MAX = 2048
MESSAGE_ID_LENGTH_MAX = 256
USER_AGENT = "TodoChatbot-Webhooks/1.0 (+notify_svc)"
CONNECTIONS_MAX = 100
CONNECTIONS_PER_HOST_MAX = 8
"""One slow receiver holds at most this many of the sender's connections, so the others keep theirs."""
ADDRESSES_MAX = 16
"""At most this many of a host's DNS answers are checked and tried."""
RETRY_AFTER_STATUSES = frozenset({429, 502, 503, 504})

Resolve = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves a host name and port to IP address strings (the sender's DNS; tests pass their own)."""

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class WebhookPolicy:
    """What the service allows webhooks to do (its settings, the same for every user)."""

    allow_http_loopback: bool = False
    """http:// is allowed only with this, and only to "localhost" or a loopback address (tests, local use)."""
    allow_private_networks: bool = False
    """Private, loopback and link-local targets are allowed only with this (metadata addresses never)."""
    timeout_seconds: float = 10.0
    """The whole attempt: resolving, connecting, sending and reading the answer."""
    max_response_bytes: int = 65536
    """More of the answer's body is not read (it is cut off, not an error)."""

    def __post_init__(self) -> None:
        if not self.timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        if self.max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")


def _hostname_problem(host: str) -> str | None:
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        return "the URL's host name is empty or longer than 253 characters"
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return "the URL's host is not a valid host name"
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # "2130706433" or "0x7f.1" would be read as IPv4 addresses by the resolver.
        return "the URL's host looks like a numeric address: write an IPv4 address as four decimal numbers"
    return None


def _parse(url: str) -> tuple[URL | None, str | None]:
    """The URL parsed by the same parser the HTTP client uses (so the check and the request agree), or a problem."""
    if not url:
        return None, "the URL is empty"
    if len(url) > URL_LENGTH_MAX:
        return None, f"the URL is longer than {URL_LENGTH_MAX} characters"
    if any(c.isspace() or not c.isprintable() for c in url):
        return None, "the URL contains spaces or control characters"
    try:
        parsed = URL(url)
        urlsplit(url)  # its view of the user part is checked too
    except (ValueError, UnicodeError):
        return None, "the URL is not valid"
    return parsed, None


def _literal_address(host: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


def webhook_url_problem(url: str, policy: WebhookPolicy) -> str | None:
    """Why a webhook URL is refused (plain English), or None when it is accepted. Looks at the text only, no DNS.

    https only (http to "localhost" or a loopback address with allow_http_loopback),
    no user name or password, a valid host name or IP address the policy allows, a
    port in 1..65535, at most 2048 characters. A fragment is allowed and never sent.
    """
    parsed, problem = _parse(url)
    if parsed is None:
        return problem
    if parsed.scheme not in ("https", "http"):
        return "the URL must start with https://"
    # The raw text too: the URL parser drops an empty user part ("https://@host/"), a sign of something odd.
    if parsed.raw_user is not None or parsed.raw_password is not None or "@" in urlsplit(url).netloc:
        return "the URL must not contain a user name or password"
    host = parsed.raw_host
    if not parsed.absolute or not host:
        return "the URL has no host"
    if "%" in host:
        return "the URL's host must not name a network interface"
    if parsed.explicit_port == 0:
        return "the URL's port must be between 1 and 65535"
    literal = _literal_address(host)
    if literal is None:
        problem = _hostname_problem(host)
        if problem is not None:
            return problem
    if parsed.scheme == "http":
        loopback = is_loopback_name(host) if literal is None else unwrapped(literal).is_loopback
        if not (policy.allow_http_loopback and loopback):
            return "the URL must start with https://"
    if literal is not None:
        refused = address_problem(literal, allow_private_networks=policy.allow_private_networks)
        if refused is not None:
            return f"the URL's host is {refused}, which webhooks are not sent to"
    elif is_loopback_name(host) and not policy.allow_private_networks:
        return "the URL's host is the service's own host, which webhooks are not sent to"
    return None


def new_signing_secret() -> str:
    """A new random signing secret: "whsec_" and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _secret_key(secret: str) -> bytes | None:
    if not secret.startswith(SECRET_PREFIX) or len(secret) > len(SECRET_PREFIX) + 4 * SECRET_BYTES_MAX:
        return None
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeError):
        return None
    return key if SECRET_BYTES_MIN <= len(key) <= SECRET_BYTES_MAX else None


def signing_secret_problem(secret: str) -> str | None:
    """Why a signing secret is refused (plain English, without the secret), or None when it is accepted."""
    if _secret_key(secret) is None:
        return (
            f'the signing secret must be "{SECRET_PREFIX}" followed by the base64 of '
            f"{SECRET_BYTES_MIN} to {SECRET_BYTES_MAX} random bytes"
        )
    return None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: "v1," and the base64 HMAC-SHA256 of "{id}.{timestamp}.{body}".

    Raises ValueError for a secret signing_secret_problem refuses.
    """
    key = _secret_key(secret)
    if key is None:
        raise ValueError("malformed signing secret")
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date), or None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value) if len(value) <= 10 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def _system_resolve(host: str, port: int) -> Sequence[str]:
    # The event loop's getaddrinfo runs in a worker thread, so a slow DNS server stalls no one else.
    answers = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(sockaddr[0]) for _family, _type, _proto, _name, sockaddr in answers]


def _host_key(host: str) -> str:
    return host.lower().rstrip(".")


class _CheckedAddresses(AbstractResolver):
    """The HTTP client's resolver: it answers only with addresses the sender checked for this host, never asks DNS."""

    def __init__(self) -> None:
        self._addresses: dict[str, tuple[list[str], int]] = {}

    def pin(self, host: str, addresses: list[str]) -> None:
        # Several attempts may go to one host at once; each address here passed the same policy.
        _, users = self._addresses.get(_host_key(host), ([], 0))
        self._addresses[_host_key(host)] = (addresses, users + 1)

    def unpin(self, host: str) -> None:
        addresses, users = self._addresses.get(_host_key(host), ([], 1))
        if users <= 1:
            self._addresses.pop(_host_key(host), None)
        else:
            self._addresses[_host_key(host)] = (addresses, users - 1)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses, _ = self._addresses.get(_host_key(host), ([], 0))
        if not addresses:
            raise OSError(f"no checked address for {host}")
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=flags,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        self._addresses.clear()


class _Refused(Exception):
    """The attempt stops before any request: the result says why."""

    def __init__(self, result: DeliveryResult) -> None:
        super().__init__(result.error)
        self.result = result


def _refused(error: str, *, permanent: bool) -> _Refused:
    return _Refused(DeliveryResult(succeeded=False, error=error, permanent=permanent))


class WebhookSender:
    """Sends signed webhook requests through one HTTP client session (created on first use; close() ends it)."""

    def __init__(self, policy: WebhookPolicy, *, resolve: Resolve | None = None) -> None:
        self.policy = policy
        self._resolve = resolve or _system_resolve
        self._checked = _CheckedAddresses()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=self._checked,
                use_dns_cache=False,  # every new connection asks _checked, which holds this attempt's answers
                limit=CONNECTIONS_MAX,
                limit_per_host=CONNECTIONS_PER_HOST_MAX,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # no proxy or .netrc from the environment
                auto_decompress=True,  # decompressed piecewise as read, so the read limit caps it too
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout_seconds),
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def close(self) -> None:
        """Closes the HTTP client session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, url: str, secret: str, message_id: str, body: bytes) -> DeliveryResult:
        """POSTs body (JSON) to url, signed with secret; one attempt, never raises for the receiver's doing.

        Only a 2xx answer is success. 410 is permanent, so is a URL, secret or
        address that is refused; everything else (other statuses, redirects,
        network errors, the deadline) may succeed later. retry_after carries a
        429/502/503/504 answer's Retry-After.
        """
        try:
            async with asyncio.timeout(self.policy.timeout_seconds):
                return await self._attempt(url, secret, message_id, body)
        except _Refused as refused:
            return refused.result
        except TimeoutError:
            return DeliveryResult(
                succeeded=False, error=f"the receiver did not answer within {self.policy.timeout_seconds:g} seconds"
            )

    async def _attempt(self, url: str, secret: str, message_id: str, body: bytes) -> DeliveryResult:
        problem = webhook_url_problem(url, self.policy)
        if problem is not None:
            raise _refused(problem, permanent=True)
        if signing_secret_problem(secret) is not None:
            raise _refused("the webhook's signing secret is malformed", permanent=True)
        if not _VISIBLE_ASCII.fullmatch(message_id) or len(message_id) > MESSAGE_ID_LENGTH_MAX:
            raise _refused("the message id is not 1 to 256 visible ASCII characters", permanent=True)
        target = URL(url).with_fragment(None)
        host = target.raw_host or ""
        literal = _literal_address(host) is not None
        if not literal:
            self._checked.pin(host, await self._checked_addresses(target))
        try:
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, message_id, timestamp, body),
            }
            return await self._post(target, headers, body)
        finally:
            if not literal:
                self._checked.unpin(host)

    async def _checked_addresses(self, target: URL) -> list[str]:
        """The host's addresses, when every one of them may be called (a host with one bad answer is refused)."""
        host = target.raw_host or ""
        try:
            answers = await self._resolve(host, target.port or 0)
        except (OSError, UnicodeError):
            raise _refused("the webhook's host name could not be resolved", permanent=False) from None
        addresses: list[str] = []
        for answer in answers:
            address = _literal_address(answer)
            if address is None:
                raise _refused("the webhook's host name resolved to something that is not an address", permanent=False)
            refused = address_problem(address, allow_private_networks=self.policy.allow_private_networks)
            if refused is None and is_loopback_name(host) and not unwrapped(address).is_loopback:
                refused = "not a loopback address"
            if refused is not None:
                # Which address, and of what kind, is not said: it would map the service's network for the user.
                raise _refused("the webhook's host resolves to an address webhooks are not sent to", permanent=True)
            if answer not in addresses:
                addresses.append(answer)
        if not addresses:
            raise _refused("the webhook's host name has no address", permanent=False)
        return addresses[:ADDRESSES_MAX]

    async def _post(self, target: URL, headers: dict[str, str], body: bytes) -> DeliveryResult:
        try:
            async with self._client().post(target, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                retry_after = (
                    _retry_after(response.headers.get("Retry-After")) if status in RETRY_AFTER_STATUSES else None
                )
                await self._read_some(response)
        except TimeoutError:
            raise  # the client's own deadline: send() words it like its own
        except aiohttp.ClientConnectorCertificateError:
            return DeliveryResult(succeeded=False, error="the receiver's TLS certificate is not valid for its host")
        except aiohttp.ClientSSLError:
            return DeliveryResult(succeeded=False, error="the TLS connection to the receiver failed")
        except aiohttp.ClientConnectorError as failure:
            reason = network_error_reason(failure.os_error)
            return DeliveryResult(succeeded=False, error=f"could not connect to the receiver ({reason})")
        except aiohttp.ServerDisconnectedError:
            return DeliveryResult(succeeded=False, error="the receiver closed the connection without answering")
        except aiohttp.ClientResponseError:
            return DeliveryResult(succeeded=False, error="the receiver's answer was not valid HTTP")
        except (aiohttp.ClientError, OSError):
            return DeliveryResult(succeeded=False, error="the request to the receiver failed")
        if 200 <= status < 300:
            return DeliveryResult(succeeded=True, response_code=status)
        if 300 <= status < 400:
            error = f"the receiver answered HTTP {status}, a redirect, which is not followed"
        elif status == 410:
            return DeliveryResult(
                succeeded=False, error="the receiver answered HTTP 410 Gone", response_code=status, permanent=True
            )
        else:
            error = f"the receiver answered HTTP {status}"
        return DeliveryResult(succeeded=False, error=error, response_code=status, retry_after=retry_after)

    async def _read_some(self, response: aiohttp.ClientResponse) -> None:
        """Reads at most max_response_bytes of the answer's body; the rest is not read and the connection dropped."""
        left = self.policy.max_response_bytes
        try:
            while left > 0:
                chunk = await response.content.read(left)
                if not chunk:
                    return
                left -= len(chunk)
            if not response.content.at_eof():
                response.close()
        except (aiohttp.ClientError, OSError):
            # The status is what counts; a body that breaks off changes nothing.
            response.close()
