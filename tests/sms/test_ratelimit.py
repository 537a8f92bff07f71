"""The per-sender rate limit (GCRA in Redis): a burst from one sender gets consecutive slots
exactly one interval apart, whatever the speed of the machine that asks."""

from __future__ import annotations

import itertools

import pytest
from redis.asyncio import Redis

from gateway.models import NumberKind
from gateway.sms.ratelimit import RATES, SenderRateLimiter, rate_for

SENDER = "+14155550100"
KEY = f"ratelimit:sms:{SENDER}"


@pytest.mark.parametrize("kind", list(NumberKind))
async def test_a_burst_takes_consecutive_slots_one_interval_apart(
    clean_redis: str, kind: NumberKind
) -> None:
    redis = Redis.from_url(clean_redis)
    try:
        limiter = SenderRateLimiter(redis)
        per_second = rate_for(kind, messaging_service=False)
        waits, slots = [], []
        for _ in range(60):
            waits.append(await limiter.reserve(SENDER, per_second))
            # The key holds the next free slot (ms): one interval past the slot just taken.
            slots.append(float(await redis.get(KEY) or 0))
    finally:
        await redis.aclose()
    interval_ms = 1000.0 / RATES[kind]
    assert waits[0] == 0.0  # an idle sender sends at once
    # (Lua keeps 14 significant digits of the ms stamp: equal to a hundredth of a millisecond.)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    # Never two slots closer than one interval, however the asks were timed.
    assert min(gaps) >= interval_ms - 0.01
    # An ask made before the sender's next slot (it waits) takes exactly that slot, one interval
    # after the last. An ask made after it (a machine slower than the rate: a 10 ms short-code
    # interval on a loaded machine) starts from its own moment instead, so its gap is longer.
    queued = [gap for gap, wait in zip(gaps, waits[1:], strict=True) if wait > 0]
    assert queued == pytest.approx([interval_ms] * len(queued), abs=0.01)
    if interval_ms >= 300:
        # 60 asks come far faster than one a third of a second: all but the first queue, and
        # later asks wait longer.
        assert len(queued) == len(gaps)
        assert waits[-1] > waits[1] > 0


async def test_senders_do_not_share_slots(clean_redis: str) -> None:
    redis = Redis.from_url(clean_redis)
    try:
        limiter = SenderRateLimiter(redis)
        assert await limiter.reserve(SENDER, 1.0) == 0.0
        assert await limiter.reserve("+14155550199", 1.0) == 0.0
        assert await limiter.reserve(SENDER, 1.0) > 0.0
    finally:
        await redis.aclose()
