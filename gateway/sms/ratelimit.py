"""Per-sender send rate shared by every worker process, kept in Redis (GCRA).

Twilio queues what a number can't send at once and rejects bursts beyond its queue; spacing
sends here means a burst waits in our queue, in order, instead of failing at Twilio.
"""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.models import NumberKind

# Messages per second Twilio (and the carriers) accept from one sender.
RATES: dict[NumberKind, float] = {
    NumberKind.LONG_CODE: 1.0,
    NumberKind.TOLL_FREE: 3.0,
    NumberKind.SHORT_CODE: 100.0,
}
MESSAGING_SERVICE_RATE = 10.0

# Generic cell rate algorithm, reserving: one key per sender holds the theoretical arrival time
# (ms) of the next free slot. Each call takes the next slot and answers how long until it comes,
# so a burst of N messages is spread over N intervals in one pass, with no retry storm.
_RESERVE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat - now + interval) + 1000)
return math.floor(tat - now)
"""


class SenderRateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_RESERVE)

    async def reserve(self, sender: str, per_second: float) -> float:
        """Take `sender`'s next send slot; seconds until it comes (0: send now)."""
        time_s, time_us = await self._redis.time()
        now_ms = int(time_s) * 1000 + int(time_us) // 1000
        interval_ms = 1000.0 / per_second
        wait_ms = await self._script(keys=[f"ratelimit:sms:{sender}"], args=[now_ms, interval_ms])
        return float(wait_ms) / 1000.0


def rate_for(kind: NumberKind, messaging_service: bool) -> float:
    return MESSAGING_SERVICE_RATE if messaging_service else RATES[kind]
