"""Page tokens: opaque, signed, bound to the listing they page through, carrying a keyset position.

A token says "the page after this row": the sort key value(s) of the last row
of the previous page and its id, so the next page starts strictly after that
row however many rows were added or removed before it in the meantime.

Format (base64url without padding): a flat binary payload, then its
HMAC-SHA256. The payload is a version byte and a run of tagged fields: the
listing's fingerprint, then the position's parts. Reading a token checks its
length before decoding anything, the signature before parsing the payload, and
then every field's type against the shape the listing expects; anything else is
a ValueError whose message can go back to the client as is.

The signing key is derived from the service's token signing key, so every
replica of a service accepts the tokens of the others and there is no new
secret to manage; changing the signing key invalidates outstanding page tokens
(a client starts its listing again). Tokens do not expire: a token only says
where a listing continues, for the user who asked for it, and grants nothing
that listing from the start would not show.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import math
import re
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message

from todo_kit.auth import signing_key_for
from todo_kit.config import Settings

# Long enough for a sort key of 500 characters of any script (a task title);
# checked before any decoding, so nothing larger is ever parsed.
TOKEN_MAX_CHARS = 4096
TEXT_MAX_BYTES = 2560
_VERSION = 1
_MAC_BYTES = 32
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INT64 = struct.Struct(">q")
_FLOAT64 = struct.Struct(">d")
_LENGTH = struct.Struct(">H")

NOT_A_TOKEN = "is not a page token returned by this listing; start again without a page token"
ALTERED = "is not a page token issued by this service (it was altered or cut short); start again without a page token"
OTHER_LISTING = (
    "belongs to a listing with other filters, sort or user; send the same request as the page before it, "
    "or start again without a page token"
)

PositionValue = datetime | int | float | str | None
Position = tuple[PositionValue, ...]


class Part(enum.Enum):
    """What one part of a keyset position is."""

    TIME = "time"  # an aware datetime, to the microsecond
    OPTIONAL_TIME = "optional time"  # a TIME or None (a task without a due time)
    INTEGER = "integer"  # a 64-bit integer
    REAL = "real"  # a finite float (a search rank)
    TEXT = "text"  # a string of at most TEXT_MAX_BYTES in UTF-8 (a title, an id)


# Field tags in the payload.
_NULL, _TIME, _INTEGER, _REAL, _TEXT = b"n", b"t", b"i", b"r", b"s"
_ACCEPTED = {
    Part.TIME: {_TIME},
    Part.OPTIONAL_TIME: {_TIME, _NULL},
    Part.INTEGER: {_INTEGER},
    Part.REAL: {_REAL},
    Part.TEXT: {_TEXT},
}


def query_fingerprint(
    request: Message, *, user: str = "", ignore: tuple[str, ...] = ("page_token", "page_size")
) -> str:
    """Identifies a list request's kind, filters and sort (and the user asking), so a token is used only with them."""
    key = type(request)()
    key.CopyFrom(request)
    for name in ignore:
        key.ClearField(name)
    digest = hashlib.sha256()
    for part in (request.DESCRIPTOR.full_name, user):
        digest.update(part.encode() + b"\0")
    digest.update(key.SerializeToString(deterministic=True))
    return digest.hexdigest()[:16]


def page_token_key(settings: Settings) -> bytes:
    """The page-token signing key of a service: derived from its token signing key, so replicas agree."""
    return hmac.new(signing_key_for(settings).encode(), b"page-token", hashlib.sha256).digest()


class PageTokens:
    """Issues and reads the page tokens of a service's listings."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a page-token key has at least 32 bytes")
        self._key = key

    @classmethod
    def for_settings(cls, settings: Settings) -> PageTokens:
        """Page tokens signed with the key derived from the settings' signing key."""
        return cls(page_token_key(settings))

    def issue(self, fingerprint: str, position: Position) -> str:
        """A token for the page after position, in the listing with this fingerprint.

        Raises ValueError for a value no Part describes (a naive datetime, a
        non-finite float, text too long for a token).
        """
        payload = bytearray([_VERSION])
        for value in (fingerprint, *position):
            payload += _field(value)
        raw = bytes(payload) + self._mac(bytes(payload))
        token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if len(token) > TOKEN_MAX_CHARS:
            raise ValueError("the position is too large for a page token")
        return token

    def read(self, token: str, fingerprint: str, shape: Sequence[Part]) -> Position:
        """The position in a token of the listing with this fingerprint, its parts as shape says.

        Raises ValueError, with a message for the client, for anything that is
        not such a token: garbage, too long, altered, cut short, signed with
        another key, of another listing or of another shape.
        """
        if not token or len(token) > TOKEN_MAX_CHARS or not _TOKEN_CHARS.match(token) or len(token) % 4 == 1:
            raise ValueError(NOT_A_TOKEN)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise ValueError(NOT_A_TOKEN) from None
        if len(raw) <= _MAC_BYTES:
            raise ValueError(ALTERED)
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise ValueError(ALTERED)
        # Signed by us: still checked field by field, as if it were not.
        fields = _fields(payload)
        if not fields or fields[0][0] != _TEXT:
            raise ValueError(NOT_A_TOKEN)
        if fields[0][1] != fingerprint:
            raise ValueError(OTHER_LISTING)
        position = fields[1:]
        if len(position) != len(shape):
            raise ValueError(NOT_A_TOKEN)
        for (tag, _), part in zip(position, shape, strict=True):
            if tag not in _ACCEPTED[part]:
                raise ValueError(NOT_A_TOKEN)
        return tuple(value for _, value in position)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def _field(value: PositionValue) -> bytes:
    """One tagged field of a payload."""
    if value is None:
        return _NULL
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a page position's time must carry its zone")
        return _TIME + _INT64.pack((value - _EPOCH) // _MICROSECOND)
    if isinstance(value, bool):
        raise ValueError("a page position has no booleans")
    if isinstance(value, int):
        return _INTEGER + _INT64.pack(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a page position's number must be finite")
        return _REAL + _FLOAT64.pack(value)
    encoded = value.encode()
    if len(encoded) > TEXT_MAX_BYTES:
        raise ValueError("a page position's text is too long for a page token")
    return _TEXT + _LENGTH.pack(len(encoded)) + encoded


def _fields(payload: bytes) -> list[tuple[bytes, PositionValue]]:
    """The tagged fields of a payload (the first being the fingerprint), each with its value."""
    if not payload or payload[0] != _VERSION:
        raise ValueError(NOT_A_TOKEN)
    fields: list[tuple[bytes, PositionValue]] = []
    at = 1
    try:
        while at < len(payload):
            tag = payload[at : at + 1]
            at += 1
            value: PositionValue
            if tag == _NULL:
                value = None
            elif tag == _TIME:
                value = _EPOCH + _INT64.unpack_from(payload, at)[0] * _MICROSECOND
                at += _INT64.size
            elif tag == _INTEGER:
                value = _INT64.unpack_from(payload, at)[0]
                at += _INT64.size
            elif tag == _REAL:
                number: float = _FLOAT64.unpack_from(payload, at)[0]
                if not math.isfinite(number):
                    raise ValueError(NOT_A_TOKEN)
                value = number
                at += _FLOAT64.size
            elif tag == _TEXT:
                (length,) = _LENGTH.unpack_from(payload, at)
                at += _LENGTH.size
                if length > TEXT_MAX_BYTES or at + length > len(payload):
                    raise ValueError(NOT_A_TOKEN)
                value = payload[at : at + length].decode()
                at += length
            else:
                raise ValueError(NOT_A_TOKEN)
            fields.append((tag, value))
    except (struct.error, OverflowError, UnicodeDecodeError):
        raise ValueError(NOT_A_TOKEN) from None
    return fields
