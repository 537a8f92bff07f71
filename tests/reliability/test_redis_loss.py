"""Drill: Redis dies in the middle of a burst and comes back empty (every queued job, lock and
result gone); the database still knows what is owed, the sweep re-enqueues it, and every text
reaches Twilio exactly once. The Redis is the drill's own (a temp dir, a unix socket)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.reliability.drill import FULL, Drill, lead_phones
from tests.reliability.private_services import PrivateRedis

pytestmark = pytest.mark.reliability

SENDS = 2000 if FULL else 200
LOSSES = 3 if FULL else 1
DOWNTIME_SECONDS = 3.0 if FULL else 0.5
DEADLINE_SECONDS = 900 if FULL else 150


async def test_redis_lost_mid_burst_every_text_still_sent_once(
    redis_loss_drill: Drill, private_redis: PrivateRedis
) -> None:
    drill = redis_loss_drill
    deadline = time.monotonic() + DEADLINE_SECONDS
    phones = lead_phones(SENDS)
    # Half the burst is queued before the worker runs, so Redis holds a backlog of jobs when
    # it dies: work that only the database still knows about.
    backlog = await drill.post_burst(phones[: SENDS // 2], deadline)
    drill.worker.start()
    rest = asyncio.create_task(drill.post_burst(phones[SENDS // 2 :], deadline))
    moments = sorted(drill.rng.sample(range(SENDS // 10, SENDS // 2), LOSSES))
    lost_jobs: list[int] = []
    try:
        for at in moments:
            await drill.until_creates(at, deadline)
            lost_jobs.append(len(private_redis.keys("arq:job:sms:*")))
            await asyncio.to_thread(private_redis.restart_empty, DOWNTIME_SECONDS)
        burst = await rest
    finally:
        rest.cancel()
    burst.ids.update(backlog.ids)
    await drill.wait_all_sent(phones, deadline)

    drill.assert_ok(await drill.exactly_once(burst))
    assert private_redis.restarts == LOSSES
    # The first loss took queued jobs with it: only the sweep could have sent those texts.
    assert lost_jobs[0] > 0, lost_jobs
    assert drill.worker.starts == 1, "the worker had to be restarted by hand"
