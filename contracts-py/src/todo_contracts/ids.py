"""Time-ordered unique ids (UUID version 7, RFC 9562) for events and rows."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_COUNTER_MAX = 0xFFF  # 12 bits of rand_a serve as a per-millisecond counter


def uuid7() -> uuid.UUID:
    """Returns a new UUIDv7.

    Ids made by one process sort in the order they were made, also within one
    millisecond (RFC 9562 method 1: a counter in rand_a), and ids made by
    different processes sort by their millisecond.
    """
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, 0
        else:
            # Same millisecond, or the clock stepped back: keep counting on the
            # last timestamp so order is kept.
            _counter += 1
            if _counter > _COUNTER_MAX:
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def new_id() -> str:
    """Returns a new UUIDv7 as its canonical 36-character string."""
    return str(uuid7())
