"""Handing one event to a subscription until it is handled: what every runtime that retries by itself does.

The embedded and Kafka runtimes deliver each event to a unit's handler and
retry failures themselves (Dapr's sidecar retries for the Dapr runtime). The
meaning is one: decode, skip types the subscription does not want, call the
handler, retry with capped exponential backoff for `retry_for` seconds, and
say why when the event must go to the dead letters instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from todo_contracts import envelope
from todo_kit.request_context import bind_traceparent
from todo_kit.runtime.port import DropEvent, HandlerOutcome, Subscription

log = logging.getLogger(__name__)

FIRST_RETRY_DELAY = 0.1
"""The first pause after a handler failed; it doubles up to the runtime's maximum."""


@dataclass(frozen=True)
class Undelivered:
    """Why an event ends in the dead letters."""

    reason: str


async def deliver(
    subscription: Subscription, payload: bytes, *, consumer: str, retry_for: float, max_retry_delay: float
) -> Undelivered | None:
    """Hands the encoded event to the subscription's handler until it succeeds.

    Returns None when it was handled (or is of a type the subscription does not
    want), or why it must be dead-lettered: undecodable, dropped by the handler,
    or still failing after retry_for seconds. consumer names the consumer in logs.
    """
    try:
        event = envelope.decode(payload)
    except envelope.EnvelopeError as exc:
        return Undelivered(f"undecodable: {exc}")
    if subscription.event_types and event.type not in subscription.event_types:
        return None
    bind_traceparent(event.traceparent)
    loop = asyncio.get_running_loop()
    started = loop.time()
    delay = FIRST_RETRY_DELAY
    attempt = 0
    while True:
        attempt += 1
        try:
            outcome = await subscription.handler(event)
        except DropEvent as exc:
            return Undelivered(f"dropped by the handler: {exc.reason}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = HandlerOutcome.RETRY
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "event handler failed; retrying",
                extra={"consumer": consumer, "event_id": event.id, "type": event.type, "attempt": attempt,
                       "error": error},
                exc_info=attempt == 1,
            )  # fmt: skip
        else:
            error = "the handler asked to retry"
        if outcome is None or outcome is HandlerOutcome.SUCCESS:
            return None
        if outcome is HandlerOutcome.DROP:
            return Undelivered("dropped by the handler")
        if loop.time() - started >= retry_for:
            return Undelivered(f"kept failing for {retry_for:.0f} s ({attempt} attempts): {error}")
        await asyncio.sleep(delay * random.uniform(0.75, 1.0))
        delay = min(delay * 2, max_retry_delay)
