"""Opaque page tokens bound to the query they page through."""

from __future__ import annotations

import base64
import hashlib
import json

from google.protobuf.message import Message

MAX_OFFSET = 10_000_000


def query_fingerprint(request: Message, *, ignore: tuple[str, ...] = ("page_token", "page_size")) -> str:
    """Identifies a list request's filters and sort, so a token is used only with them."""
    key = type(request)()
    key.CopyFrom(request)
    for name in ignore:
        key.ClearField(name)
    return hashlib.sha256(key.SerializeToString(deterministic=True)).hexdigest()[:16]


def encode_page_token(offset: int, fingerprint: str) -> str:
    """An opaque token for the page starting at offset."""
    raw = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, fingerprint: str) -> int:
    """The offset in a page token; ValueError if it is garbage or from another query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        offset, seen = data["o"], data["f"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("is not a page token returned by this listing") from None
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise ValueError("is not a page token returned by this listing")
    if seen != fingerprint:
        raise ValueError("belongs to a listing with other filters or sort")
    return offset
