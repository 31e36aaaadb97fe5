"""The ways a notification leaves the service: a signed webhook (webhook.py) and an e-mail (email.py).

Each sender delivers one message and says how it went in a DeliveryResult; it never
raises for anything the receiver or the network does, and it never retries: when to
try again is the caller's decision (permanent and retry_after inform it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryResult:
    """How one delivery attempt went."""

    succeeded: bool
    error: str = ""
    """What went wrong, in plain English; never the secret, the password or the body."""
    response_code: int = 0
    """The HTTP status of a webhook or the SMTP reply code of an e-mail; 0 when there was none."""
    permanent: bool = False
    """Retrying cannot help: 410 Gone, a refused recipient, an address the service does not call."""
    retry_after: float | None = None
    """Seconds the receiver asked to wait before the next attempt (Retry-After), when it asked."""


def network_error_reason(error: BaseException | None) -> str:
    """A plain reason for a failed connection ("connection refused"), from the system's error number only.

    The exception's own text is not used: it may carry addresses and library details.
    """
    number = error.errno if isinstance(error, OSError) else None
    if isinstance(number, int) and number > 0:
        return os.strerror(number).lower()
    return "network error"
