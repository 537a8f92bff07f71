"""Per-subscription concurrency: at most `policy.MAX_IN_FLIGHT` requests to one subscription at
a time, across every worker, counted in Redis.

A slot is a member of a sorted set scored by its lease's end (wall clock: leases are about
crashed processes, not business time); a worker that dies holding one loses it when the lease
runs out.

A job that finds the slots taken waits a moment in its own process (up to `policy.SLOT_WAIT`,
at most `policy.SLOT_WAITERS` jobs per subscription) for one of the process's own requests to
that subscription to end, instead of going back to the queue at once. Against a fast endpoint a
slot frees within milliseconds, and each trip through the queue cost about a millisecond of
worker CPU: at 8 slots and 10 jobs, those trips were most of a delivery's CPU (bench/RESULTS.md
§4). A slow endpoint holds the waiting jobs no longer than the wait.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from arq.connections import ArqRedis

from gateway import webhook_policy as policy

# A request takes at most REQUEST_TIMEOUT; the lease covers it with margin.
LEASE_SECONDS = 60.0

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
    return 1
end
return 0
"""


def _key(subscription_id: str) -> str:
    return f"webhooks:in_flight:{subscription_id}"


@dataclass
class _Waiting:
    """This process's jobs waiting for a slot of one subscription."""

    released: asyncio.Condition = field(default_factory=asyncio.Condition)
    count: int = 0


# Per event loop (a process has one; tests run several), per subscription.
_WAITING: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Waiting]] = WeakKeyDictionary()


async def acquire(redis: ArqRedis, subscription_id: str, *, wait: float = 0.0) -> str | None:
    """A slot token, or None when the subscription has MAX_IN_FLIGHT requests going and none
    ended within `wait` seconds (or SLOT_WAITERS jobs of this process wait already)."""
    token = await _try(redis, subscription_id)
    if token is not None or wait <= 0:
        return token
    loop = asyncio.get_running_loop()
    waiting = _WAITING.setdefault(loop, {})
    entry = waiting.setdefault(subscription_id, _Waiting())
    if entry.count >= policy.SLOT_WAITERS:
        return None
    entry.count += 1
    deadline = loop.time() + wait
    try:
        async with entry.released:
            while token is None and loop.time() < deadline:
                # Woken by this process's own release; another process's is seen at the
                # deadline's last try.
                try:
                    async with asyncio.timeout_at(deadline):
                        await entry.released.wait()
                except TimeoutError:
                    pass
                token = await _try(redis, subscription_id)
    finally:
        entry.count -= 1
        if entry.count == 0:
            waiting.pop(subscription_id, None)
    return token


async def _try(redis: ArqRedis, subscription_id: str) -> str | None:
    token = secrets.token_hex(8)
    wall = time.time()
    granted: Any = await redis.eval(  # type: ignore[misc]
        _ACQUIRE,
        1,
        _key(subscription_id),
        str(wall),
        str(wall + LEASE_SECONDS),
        str(policy.MAX_IN_FLIGHT),
        token,
        str(int(LEASE_SECONDS * 1000)),
    )
    return token if int(granted) == 1 else None


async def release(redis: ArqRedis, subscription_id: str, token: str) -> None:
    await redis.zrem(_key(subscription_id), token)
    entry = _WAITING.get(asyncio.get_running_loop(), {}).get(subscription_id)
    if entry is not None:
        async with entry.released:
            entry.released.notify()
