"""Per-subscription concurrency: at most `policy.MAX_IN_FLIGHT` requests to one subscription at
a time, across every worker, counted in Redis.

A slot is a member of a sorted set scored by its lease's end (wall clock: leases are about
crashed processes, not business time); a worker that dies holding one loses it when the lease
runs out. A batch takes its slots in one round trip and gives them back in one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis

from gateway import webhook_policy as policy

# A request takes at most REQUEST_TIMEOUT; the lease covers it with margin.
LEASE_SECONDS = 60.0

# KEYS[1]: the set; ARGV: now, lease end, the limit, the lease in ms, then the tokens wanted.
# Grants as many of the tokens as there are free slots; returns how many (the first ones).
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
local granted = 0
for i = 5, #ARGV do
    if granted >= free then break end
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    granted = granted + 1
end
if granted > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return granted
"""


def _key(subscription_id: str) -> str:
    return f"webhooks:in_flight:{subscription_id}"


async def acquire(redis: ArqRedis, subscription_id: str, wanted: int) -> list[str]:
    """Up to `wanted` slot tokens: as many as the subscription has free (none when it has
    MAX_IN_FLIGHT requests going)."""
    tokens = [secrets.token_hex(8) for _ in range(wanted)]
    wall = time.time()
    granted: Any = await redis.eval(  # type: ignore[misc]
        _ACQUIRE,
        1,
        _key(subscription_id),
        str(wall),
        str(wall + LEASE_SECONDS),
        str(policy.MAX_IN_FLIGHT),
        str(int(LEASE_SECONDS * 1000)),
        *tokens,
    )
    return tokens[: int(granted)]


async def release(redis: ArqRedis, subscription_id: str, tokens: Sequence[str]) -> None:
    if tokens:
        await redis.zrem(_key(subscription_id), *tokens)
