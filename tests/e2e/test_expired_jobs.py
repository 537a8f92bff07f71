"""A job whose data a Redis flush took ("job expired" in arq) holds nothing back: the next sweep
enqueues the owed work again at once and it runs (issue 18).

The flush is reproduced the way it happens mid-run: the job's entry is in arq's queue (a
running job's `Retry` puts it back there with ZINCRBY even after a flush) but its data key
`arq:job:<id>` is gone. A real worker then meets the id, logs "job … expired" and records the
failure; the old worker kept that failure for an hour under the worker-wide `keep_result`, and
`enqueue_job` refuses an id with a kept result.
"""

from __future__ import annotations

from arq.constants import default_queue_name, job_key_prefix, result_key_prefix
from arq.worker import Worker
from sqlalchemy import update
from sqlmodel import col, select

from gateway.db import transaction
from gateway.job_context import as_ctx
from gateway.models import Direction, Message, MessageStatus, Purpose
from gateway.sms.outbox import queue_message
from gateway.sms.sender import BACKOFF
from gateway.work import PLAY_ADVANCE, SMS_SEND, SMS_SENDS, enqueue_now
from gateway.work.owed import ENQUEUE_AT_ONCE
from gateway.work.sweep import sweep
from gateway.worker import FUNCTIONS, build_worker, opened_job_context
from tests.engine.test_plays import begin, publish_text
from tests.support.stack import LEAD, Stack

# A play whose second step waits an hour: its advance is a `plays.advance` job.
DRIP = """\
name: Drip
steps:
  - id: hello
    kind: send
    text: "Hello from Acme"
  - id: later
    kind: send
    delay: 1h
    text: "An hour later"
"""


async def run_without_cron(stack: Stack) -> Worker:
    """A burst worker with no cron, so no sweep runs before the test asks for one."""
    redis_url = stack.settings.redis_url
    assert redis_url is not None
    worker = build_worker(stack.settings, redis_url, burst=True, handle_signals=False)
    worker.cron_jobs = []
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def lose_job_data(stack: Stack, job_id: str) -> None:
    """What a flush leaves behind mid-run: the id queued and due, its data gone."""
    redis = stack.api_redis
    assert await redis.zscore(default_queue_name, job_id) is not None
    assert await redis.delete(job_key_prefix + job_id) == 1


async def sweep_once(stack: Stack) -> int:
    """One run of the cron sweep, with the context a worker gives it."""
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        return await sweep(as_ctx(jc))


async def flush_queue(stack: Stack) -> None:
    """A Redis flush: every job is gone, the rows that owe them are not."""
    await stack.api_redis.flushdb()


async def outbound(stack: Stack) -> list[Message]:
    async with stack.sessions() as session:
        query = select(Message).where(col(Message.direction) == Direction.OUTBOUND)
        return list((await session.exec(query)).all())


async def test_an_expired_job_of_every_kind_keeps_no_result(stack: Stack) -> None:
    """Every job function: after "job expired" its id is free at once, nothing is kept."""
    redis = stack.api_redis
    ids = [f"{function.name}:lost" for function in FUNCTIONS]
    for function, job_id in zip(FUNCTIONS, ids, strict=True):
        assert await redis.enqueue_job(function.name, "x", _job_id=job_id)
        await lose_job_data(stack, job_id)
    worker = await run_without_cron(stack)
    assert worker.jobs_failed == len(FUNCTIONS)  # every one met the "expired" path
    assert [k async for k in redis.scan_iter(result_key_prefix + "*")] == []
    for function, job_id in zip(FUNCTIONS, ids, strict=True):
        assert await redis.enqueue_job(function.name, "x", _job_id=job_id), job_id


async def test_an_expired_send_is_enqueued_again_by_the_next_sweep(stack: Stack) -> None:
    async with transaction(stack.sessions) as session:
        message = await queue_message(
            session,
            account_id=stack.account_id,
            phone=LEAD,
            body="hello",
            purpose=Purpose.INITIATED,
            reason="test",
        )
    await lose_job_data(stack, SMS_SENDS.job_id(message.account_id))  # enqueued by the commit
    expired = await run_without_cron(stack)
    assert expired.jobs_failed == 1
    assert [m.status for m in await outbound(stack)] == [MessageStatus.QUEUED]

    assert await sweep_once(stack) == 1  # at once, not in an hour
    await stack.work()
    [sent] = await outbound(stack)
    assert sent.status in (MessageStatus.ACCEPTED, MessageStatus.SENT, MessageStatus.DELIVERED)
    assert len(stack.creates()) == 1


async def test_an_expired_play_is_enqueued_again_by_the_next_sweep(stack: Stack) -> None:
    await publish_text(stack, "drip", DRIP)
    play_id = await begin(stack, "drip")  # its first text, queued as the play starts
    await stack.work()
    await stack.sandbox.advance(3600 + 60)  # its second step is due: `play:<id>` is enqueued
    assert await enqueue_now(stack.api_redis, PLAY_ADVANCE, play_id)
    await lose_job_data(stack, PLAY_ADVANCE.job_id(play_id))
    expired = await run_without_cron(stack)
    assert expired.jobs_failed == 1
    assert len(await outbound(stack)) == 1

    assert await sweep_once(stack) == 1
    await stack.work()
    assert len(await outbound(stack)) == 2  # the text the lost job owed
    assert len(stack.creates()) == 2  # each sent once


async def test_a_result_kept_by_an_older_worker_does_not_block_the_sweep(stack: Stack) -> None:
    """A failure an older release's worker kept for an hour under a still-owed row's job id."""
    async with transaction(stack.sessions) as session:
        message = await queue_message(
            session,
            account_id=stack.account_id,
            phone=LEAD,
            body="hello",
            purpose=Purpose.INITIATED,
            reason="test",
        )
    await flush_queue(stack)  # the job the commit enqueued is lost...
    stale = result_key_prefix + SMS_SENDS.job_id(message.account_id)
    await stack.api_redis.set(stale, b"a failed result", px=3_600_000)  # ...this kept

    assert await sweep_once(stack) == 1
    await stack.work()
    [sent] = await outbound(stack)
    assert sent.status in (MessageStatus.ACCEPTED, MessageStatus.SENT, MessageStatus.DELIVERED)
    assert len(stack.creates()) == 1


async def test_a_sweep_enqueues_every_owed_text_without_a_live_job_and_no_other(
    stack: Stack,
) -> None:
    """After a flush most owed rows have no job and some have one again (a web request queued
    it since): the sweep enqueues exactly the others, more of them than it sends at once
    (`ENQUEUE_AT_ONCE`), and a second sweep finds nothing to do. Each text then goes once.

    The texts are backing off (Twilio asked for a later try), which is what their own jobs,
    one per text, are owed for; a text merely due is its account's drain's."""
    phones = [f"+1415555{i:04d}" for i in range(ENQUEUE_AT_ONCE + 13)]
    async with transaction(stack.sessions) as session:
        messages = [
            await queue_message(
                session,
                account_id=stack.account_id,
                phone=phone,
                body="hello",
                purpose=Purpose.INITIATED,
                reason="test",
            )
            for phone in phones
        ]
        await session.exec(
            update(Message)
            .where(col(Message.id).in_([m.id for m in messages]))
            .values(gate_reason=BACKOFF)
        )
    await flush_queue(stack)
    live = messages[:5]
    for message in live:
        assert await enqueue_now(stack.api_redis, SMS_SEND, message.id)
    stale = result_key_prefix + SMS_SEND.job_id(messages[-1].id)
    await stack.api_redis.set(stale, b"a failed result", px=3_600_000)

    assert await sweep_once(stack) == len(phones) - len(live)
    assert await sweep_once(stack) == 0
    queued = await stack.api_redis.zrange(default_queue_name, 0, -1)
    sends = [job for job in queued if job.startswith(b"sms:")]  # not the API key's job
    assert sorted(sends) == sorted(SMS_SEND.job_id(m.id).encode() for m in messages)
    await stack.work()
    assert sorted(c.get("To") for c in stack.creates()) == sorted(phones)
