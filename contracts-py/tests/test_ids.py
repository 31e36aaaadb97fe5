"""UUIDv7 event ids are valid, unique and sort in creation order."""

from __future__ import annotations

import time
import uuid

from todo_contracts.ids import new_id, uuid7


def test_version_and_variant() -> None:
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_ids_made_in_a_burst_are_unique_and_sorted() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_timestamp_is_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    stamp = uuid7().int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= stamp <= after + 10  # the counter may run a few ms ahead in a burst
