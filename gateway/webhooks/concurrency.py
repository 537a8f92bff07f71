"""Per-subscription concurrency: at most `policy.MAX_IN_FLIGHT` requests to one subscription at
a time, across every worker, counted in Redis.

A slot is a member of a sorted set scored by its lease's end (wall clock: leases are about
crashed processes, not business time); a worker that dies holding one loses it when the lease
runs out.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

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


async def acquire(redis: ArqRedis, subscription_id: str) -> str | None:
    """A slot token, or None when the subscription has MAX_IN_FLIGHT requests going."""
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
