"""The one backoff policy of the deliveries queue, for every transport."""

from __future__ import annotations

import random
from datetime import timedelta

# One backoff policy for every transport: capped exponential with jitter in [0.5, 1]. The
# cap is short because the bot sends little: a recovered server is found quickly.
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(minutes=5)


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """The backoff before the next try after the `attempts`-th failure (1-based)."""
    exponent = min(max(attempts - 1, 0), 20)
    delay = min(RETRY_BASE * (2**exponent), RETRY_CAP)
    # Jitter spreads retries so a recovering server is not hit by every row at once.
    factor: float = 0.5 + (rng or random).random() / 2
    return timedelta(seconds=delay.total_seconds() * factor)
