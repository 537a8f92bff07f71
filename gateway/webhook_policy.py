"""How hard, how often and how many at once: the webhook delivery policy, as module constants.

Below the channels: the outbox rows an activity stages carry their expiry from it
(`gateway.activity_webhooks`), and the webhooks channel delivers by it.

Tests shrink these (they are read at call time) and move `gateway.clock` instead of waiting.
"""

from __future__ import annotations

import random
from datetime import timedelta

# Seconds before each retry (before jitter): 11 retries spread over about 24 hours, so an
# endpoint down for a night still gets everything. The try after the last delay is the last.
RETRY_SCHEDULE: tuple[float, ...] = (
    10,
    30,
    120,
    300,
    900,
    1800,
    3600,
    7200,
    14400,
    28800,
    28800,
)
JITTER = 0.2
# A Retry-After further out than this is capped: a misconfigured header must not park a delivery
# for a month.
MAX_RETRY_AFTER = 6 * 3600.0
REQUEST_TIMEOUT = 10.0

# Circuit breaker: after this many consecutive failed attempts to one subscription it opens;
# while open, one probe goes out every BREAKER_PROBE_EVERY, and the first success closes it.
BREAKER_THRESHOLD = 5
BREAKER_PROBE_EVERY = timedelta(minutes=1)

# Requests in flight per subscription (across all workers): a slow endpoint holds at most this
# many of its requests open, in one delivery run, so other subscriptions keep moving.
MAX_IN_FLIGHT = 8
# A delivery run that finds every one of the subscription's slots taken (by another run) comes
# back after about this long.
BUSY_RETRY_SECONDS = 0.25


def retry_delay(attempt: int, retry_after: float | None = None) -> float | None:
    """Seconds before try `attempt + 1` (attempt counts from 1), or None when tries are used up.

    Jitter spreads a burst of failures; the endpoint's Retry-After is a floor.
    """
    schedule = RETRY_SCHEDULE
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # jitter, not a secret
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def retry_window() -> timedelta:
    """How long a queued delivery may stay owed before it is dead-lettered regardless."""
    return timedelta(seconds=sum(RETRY_SCHEDULE) * (1 + JITTER) + 3600)
