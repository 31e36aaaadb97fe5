"""Page tokens: they round-trip; edited, cut-short, forged, oversized or another listing's tokens are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from todo_contracts.reminder.v1 import reminder_pb2
from todo_contracts.task.v1 import task_service_pb2
from todo_kit import paging
from todo_kit.config import Settings
from todo_kit.paging import PageTokens, Part

TOKENS = PageTokens(b"k" * 32)
FINGERPRINT = paging.query_fingerprint(task_service_pb2.ListTasksRequest(query="rent"), user="alice")
TASK_ID = "01234567-89ab-7def-8123-456789abcdef"
DUE = datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC)


def unpadded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decoded(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


@pytest.mark.parametrize(
    ("position", "shape"),
    [
        ((DUE, TASK_ID), (Part.TIME, Part.TEXT)),
        ((DUE.astimezone(timezone(timedelta(hours=-5))), TASK_ID), (Part.OPTIONAL_TIME, Part.TEXT)),
        ((None, TASK_ID), (Part.OPTIONAL_TIME, Part.TEXT)),
        ((3, TASK_ID), (Part.INTEGER, Part.TEXT)),
        ((0.1 + 0.2, TASK_ID), (Part.REAL, Part.TEXT)),
        (("İstanbul trip ☂ " * 31, TASK_ID), (Part.TEXT, Part.TEXT)),
        (("𝄞" * 500, TASK_ID), (Part.TEXT, Part.TEXT)),
        ((-(2**63), "x"), (Part.INTEGER, Part.TEXT)),
    ],
    ids=["time", "time-in-another-zone", "no-time", "integer", "real", "text", "longest-title", "int64-min"],
)
def test_page_tokens_round_trip_every_kind_of_position(position: paging.Position, shape: tuple[Part, ...]) -> None:
    token = TOKENS.issue(FINGERPRINT, position)
    assert len(token) <= paging.TOKEN_MAX_CHARS
    assert TOKENS.read(token, FINGERPRINT, shape) == position


def test_a_page_token_with_any_byte_edited_is_refused() -> None:
    raw = decoded(TOKENS.issue(FINGERPRINT, (DUE, TASK_ID)))
    for index in range(len(raw)):
        for flip in (0x01, 0x80):
            edited = unpadded(raw[:index] + bytes([raw[index] ^ flip]) + raw[index + 1 :])
            with pytest.raises(ValueError, match="altered or cut short"):
                TOKENS.read(edited, FINGERPRINT, (Part.TIME, Part.TEXT))


def test_a_cut_short_or_lengthened_page_token_is_refused() -> None:
    token = TOKENS.issue(FINGERPRINT, (DUE, TASK_ID))
    for cut in range(len(token)):
        with pytest.raises(ValueError):
            TOKENS.read(token[:cut], FINGERPRINT, (Part.TIME, Part.TEXT))
    for extra in ("A", "AA", "AAAA", "_-_-"):
        with pytest.raises(ValueError):
            TOKENS.read(token + extra, FINGERPRINT, (Part.TIME, Part.TEXT))


def test_a_page_token_signed_with_another_key_is_refused() -> None:
    forged = PageTokens(b"another key, 32 bytes or longer!").issue(FINGERPRINT, (DUE, TASK_ID))
    with pytest.raises(ValueError, match="altered or cut short"):
        TOKENS.read(forged, FINGERPRINT, (Part.TIME, Part.TEXT))


def test_a_page_token_of_another_listing_is_refused() -> None:
    token = TOKENS.issue(FINGERPRINT, (DUE, TASK_ID))
    others = [
        paging.query_fingerprint(task_service_pb2.ListTasksRequest(query="milk"), user="alice"),
        paging.query_fingerprint(task_service_pb2.ListTasksRequest(query="rent"), user="bob"),
        # An empty request of another kind serializes to the same (empty) bytes.
        paging.query_fingerprint(reminder_pb2.ListRemindersRequest(), user="alice"),
    ]
    assert paging.query_fingerprint(task_service_pb2.ListTasksRequest(), user="alice") not in others
    for other in others:
        with pytest.raises(ValueError, match="other filters, sort or user"):
            TOKENS.read(token, other, (Part.TIME, Part.TEXT))
    # Page size and the token itself are not part of the listing.
    same = task_service_pb2.ListTasksRequest(query="rent", page_size=7, page_token=token)
    assert paging.query_fingerprint(same, user="alice") == FINGERPRINT


def test_a_page_token_of_another_shape_is_refused() -> None:
    token = TOKENS.issue(FINGERPRINT, (3, TASK_ID))
    shapes = [(Part.TIME, Part.TEXT), (Part.REAL, Part.TEXT), (Part.INTEGER,), (Part.INTEGER, Part.TEXT, Part.TEXT)]
    for shape in shapes:
        with pytest.raises(ValueError, match="not a page token"):
            TOKENS.read(token, FINGERPRINT, shape)


def test_a_correctly_signed_payload_that_is_not_flat_is_refused() -> None:
    # Whatever the key signs is still parsed field by field: JSON (the old
    # format), unknown tags, lengths beyond the payload and bad UTF-8 are refused.
    key = b"k" * 32
    payloads = [
        b'{"o":[[[[1]]]],"f":"x"}',
        b"\x01" + b"s\x00\x10" + FINGERPRINT.encode() + b"[[[[",
        b"\x01" + b"s\x00\x10" + FINGERPRINT.encode() + b"s\xff\xff",
        b"\x01" + b"s\x00\x10" + FINGERPRINT.encode() + b"s\x00\x02\xff\xfe",
        b"\x01" + b"s\x00\x10" + FINGERPRINT.encode() + b"t\x7f\xff\xff\xff\xff\xff\xff\xff",
        b"\x01" + b"s\x00\x10" + FINGERPRINT.encode() + b"r\x7f\xf8\x00\x00\x00\x00\x00\x00",
        b"\x01" + b"i\x00\x00\x00\x00\x00\x00\x00\x01",
        b"\x02" + b"s\x00\x10" + FINGERPRINT.encode(),
    ]
    for payload in payloads:
        token = unpadded(payload + hmac.new(key, payload, hashlib.sha256).digest())
        with pytest.raises(ValueError, match="not a page token"):
            TOKENS.read(token, FINGERPRINT, (Part.OPTIONAL_TIME, Part.TEXT))


def test_an_oversized_page_token_is_refused_before_it_is_decoded() -> None:
    # Base64 of 100,000 nested JSON arrays: the old format parsed it and failed
    # with a RecursionError (INTERNAL).
    nested = unpadded(b"[" * 100_000 + b"]" * 100_000)
    for token in [nested, "A" * (paging.TOKEN_MAX_CHARS + 1)]:
        with pytest.raises(ValueError, match="not a page token"):
            TOKENS.read(token, FINGERPRINT, (Part.TIME, Part.TEXT))
    for garbage in ["", "x", "!!!!", "a b", "eyJvIjotMSwiZiI6IngifQ", "bnVsbA", "YQ=="]:
        with pytest.raises(ValueError):
            TOKENS.read(garbage, FINGERPRINT, (Part.TIME, Part.TEXT))


def test_positions_no_token_can_carry_are_not_issued() -> None:
    for position in [(datetime(2026, 12, 1), TASK_ID), (float("nan"), TASK_ID), (True, TASK_ID), ("x" * 3000, "")]:
        with pytest.raises(ValueError):
            TOKENS.issue(FINGERPRINT, position)


def test_replicas_with_the_same_signing_key_accept_each_others_page_tokens(tmp_path: Path) -> None:
    secret = "s" * 40

    def settings(jwt_secret: str, data: str) -> Settings:
        return Settings.from_env({"TODO_JWT_SECRET": jwt_secret, "TODO_DATA_DIR": str(tmp_path / data)})

    one = PageTokens.for_settings(settings(secret, "one"))
    other_replica = PageTokens.for_settings(settings(secret, "two"))
    token = one.issue(FINGERPRINT, (DUE, TASK_ID))
    assert other_replica.read(token, FINGERPRINT, (Part.TIME, Part.TEXT)) == (DUE, TASK_ID)
    # Not the signing key itself (a page token reveals nothing about it), and it changes with it.
    assert paging.page_token_key(settings(secret, "one")) != secret.encode()
    with pytest.raises(ValueError, match="altered or cut short"):
        PageTokens.for_settings(settings("t" * 40, "one")).read(token, FINGERPRINT, (Part.TIME, Part.TEXT))
