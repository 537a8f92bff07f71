"""Drills: Redis dies in the middle of a burst and comes back empty (every queued job, lock and
result gone), or is flushed while the worker runs jobs; the database still knows what is owed,
the sweep re-enqueues it, and every text reaches Twilio exactly once. The Redis is the drill's
own (a temp dir, a unix socket)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlmodel import col, select

from gateway.models import Message
from tests.reliability.drill import FULL, Drill, lead_phones, wait_for
from tests.reliability.private_services import PrivateRedis
from twilio_sandbox.faults import RestFault

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SENDS = 2000 if FULL else 200
LOSSES = 3 if FULL else 1
DOWNTIME_SECONDS = 3.0 if FULL else 0.5
DEADLINE_SECONDS = 900 if FULL else 150
FLUSHES = 3 if FULL else 2
# A flush delays nothing beyond a sweep or two (every 10 s): what it caught is sent within this.
FLUSH_SETTLE_SECONDS = 60.0


def send_jobs(private_redis: PrivateRedis) -> int:
    """The jobs in Redis that send texts: an account's drain (`sends:`, queued or running) and
    texts' own (`sms:`)."""
    return len(private_redis.keys("arq:job:sends:*") + private_redis.keys("arq:job:sms:*"))


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
            lost_jobs.append(send_jobs(private_redis))
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


def refused_creates(drill: Drill) -> list[Any]:
    return [c for c in drill.creates() if c.status == 429]


async def flush_inside_answer(
    drill: Drill, private_redis: PrivateRedis, at: int, deadline: float
) -> str:
    """FLUSHALL while the sandbox answers a Messages.create with a 429, after the `at`-th one.

    The job sending it is mid-run when Redis empties. A text's own job would go on to raise
    arq's `Retry`, whose ZINCRBY puts its id back in the emptied queue without its data, and
    the worker then meets it as "job expired" (the issue-18 path, which
    tests/e2e/test_expired_jobs.py drills); an account's drain hands the refused text to its own
    job, enqueued after the flush, and runs on. Returns the phone of the refused text.
    """
    await drill.until_creates(at, deadline)
    earlier = len(refused_creates(drill))
    refused: list[str] = []

    def hook() -> None:
        answers = refused_creates(drill)[earlier:]
        if answers and not refused:
            drill.tap.hook = None
            private_redis.flush()
            refused.append(str(answers[0].get("To")))

    drill.tap.hook = hook
    drill.sandbox.faults.add_rest(RestFault("rate_limit", kind="messages.create", times=1))

    async def flushed() -> bool:
        return bool(refused)

    await wait_for("a refused Messages.create", flushed, deadline, drill.worker.log_tail)
    return refused[0]


async def sent_by(drill: Drill, phone: str, within: float, flushed_at: float) -> None:
    """The phone's text has Twilio's SID within `within` seconds of its flush."""

    async def sent() -> bool:
        async with drill.sessions() as session:
            query = select(Message.twilio_sid).where(col(Message.lead_phone) == phone)
            return (await session.exec(query)).first() is not None

    await wait_for(
        f"the text to {phone}, caught by a flush, to be sent within {within:.0f} s",
        sent,
        flushed_at + within,
        lambda: f"seed {drill.seed}\n{drill.worker.log_tail()}",
    )


async def test_redis_flushed_while_jobs_run_every_text_sent_within_a_minute(
    redis_loss_drill: Drill, private_redis: PrivateRedis
) -> None:
    drill = redis_loss_drill
    deadline = time.monotonic() + DEADLINE_SECONDS
    phones = lead_phones(SENDS)
    backlog = await drill.post_burst(phones[: SENDS // 2], deadline)
    drill.worker.start()
    rest = asyncio.create_task(drill.post_burst(phones[SENDS // 2 :], deadline))
    moments = sorted(drill.rng.sample(range(SENDS // 10, SENDS // 2), FLUSHES))
    caught: list[tuple[str, float]] = []
    queued_at_flush: list[int] = []
    try:
        for at in moments:
            queued_at_flush.append(send_jobs(private_redis))
            phone = await flush_inside_answer(drill, private_redis, at, deadline)
            caught.append((phone, time.monotonic()))
        burst = await rest
    finally:
        rest.cancel()
    burst.ids.update(backlog.ids)
    for phone, flushed_at in caught:
        await sent_by(drill, phone, FLUSH_SETTLE_SECONDS, flushed_at)
    # The short form's whole burst is done within the minute after the last flush; the full
    # form's is longer than a minute of sending, so it has the drill's deadline.
    last = caught[-1][1] + FLUSH_SETTLE_SECONDS
    await drill.wait_all_sent(phones, deadline if FULL else min(deadline, last))
    # Every message at its final status: Twilio's callbacks carry each text on to `delivered`
    # (they reach the web app, which a flush doesn't touch) within the drill's deadline; how
    # soon after the sends depends on the sandbox's scheduler, which runs behind under load.
    await drill.wait_delivered(burst, deadline)

    # Twilio refused the caught creates (429s, one per flush) and took each text once later:
    # the exactly-once check counts the creates Twilio took.
    assert len(refused_creates(drill)) == FLUSHES
    drill.sandbox.record.request_log[:] = [
        c for c in drill.sandbox.record.request_log if c.status != 429
    ]
    drill.assert_ok(await drill.exactly_once(burst))
    assert private_redis.flushes == FLUSHES
    assert drill.worker.starts == 1, "the worker had to be restarted by hand"
    # The flushes took queued or running jobs with them.
    assert queued_at_flush[0] > 0, queued_at_flush
