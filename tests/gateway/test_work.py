"""Durable work (`gateway.work`): a job staged in a transaction reaches Redis once, and only once
the transaction commits; work Redis never got is found again by the one sweep.

Real database, real Redis, the real `sms.send` kind (a queued text stages its send: due now, as
its account's `sms.sends` drain)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from arq.connections import ArqRedis
from arq.constants import default_queue_name, job_key_prefix
from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import accounts, work
from gateway.clock import now, set_clock
from gateway.db import SessionFactory, transaction
from gateway.job_context import as_ctx
from gateway.models import Message, MessageStatus, Purpose
from gateway.settings import Settings
from gateway.sms.outbox import queue_message
from gateway.work import kinds, registry
from gateway.work.sweep import sweep
from gateway.worker import opened_job_context
from tests.support.ports import free_port

LEAD = "+14155550100"


@pytest.fixture
async def account_id(sessions: SessionFactory) -> str:
    async with transaction(sessions) as session:
        account, _key = await accounts.create_account(session, "Acme Lending")
    return account.id


async def text(
    session: AsyncSession, account_id: str, at: datetime | None = None, *, phone: str = LEAD
) -> Message:
    return await queue_message(
        session,
        account_id=account_id,
        phone=phone,
        body="hello",
        purpose=Purpose.INITIATED,
        reason="test",
        send_after=at,
    )


async def queued_jobs(redis: ArqRedis) -> dict[str, float]:
    """arq's queue: job id -> when it is due (ms since the epoch)."""
    entries = await redis.zrange(default_queue_name, 0, -1, withscores=True)
    return {job_id.decode(): score for job_id, score in entries}


async def sweep_once(settings: Settings, sessions: SessionFactory, redis: ArqRedis) -> int:
    async with opened_job_context(settings, sessions, redis) as jc:
        return await sweep(as_ctx(jc))


async def test_a_commit_hands_its_staged_job_to_redis(
    sessions: SessionFactory, redis: ArqRedis, account_id: str
) -> None:
    bound = work.bind(sessions, redis)
    async with transaction(bound) as session:
        message = await text(session, account_id)
        # Not before the commit: a job that ran now would not find its row.
        assert await queued_jobs(redis) == {}
    # A text due now goes as its account's drain (`sms.sends`), not a job of its own.
    assert list(await queued_jobs(redis)) == [f"sends:{account_id}"]
    assert await redis.exists(job_key_prefix + f"sends:{account_id}")
    assert not await redis.exists(job_key_prefix + f"sms:{message.id}")


async def test_texts_of_one_commit_go_as_one_drain_and_a_deferred_one_as_its_own(
    sessions: SessionFactory, redis: ArqRedis, account_id: str
) -> None:
    later = now() + timedelta(seconds=10)
    async with transaction(work.bind(sessions, redis)) as session:
        for phone in ("+14155550001", "+14155550002", "+14155550003"):
            await text(session, account_id, phone=phone)
        deferred = await text(session, account_id, phone="+14155550004", at=later)
    assert sorted(await queued_jobs(redis)) == [
        f"sends:{account_id}",
        f"sms:{deferred.id}@{int(later.timestamp())}",
    ]


async def test_a_rollback_hands_nothing_over(
    sessions: SessionFactory, redis: ArqRedis, account_id: str
) -> None:
    bound = work.bind(sessions, redis)
    with pytest.raises(RuntimeError):
        async with transaction(bound) as session:
            await text(session, account_id)
            raise RuntimeError("the request failed after queuing")
    assert await queued_jobs(redis) == {}


async def test_the_last_staging_of_the_same_work_wins(
    sessions: SessionFactory, redis: ArqRedis, account_id: str
) -> None:
    """Queued for now, then deferred 10 s within the same transaction (as a gate deferral
    does): one job, deferred, not a job now and another later."""
    later = now() + timedelta(seconds=10)
    async with transaction(work.bind(sessions, redis)) as session:
        message = await text(session, account_id)
        work.stage(session, work.SMS_SEND, message.id, at=later)
    jobs = await queued_jobs(redis)
    assert list(jobs) == [f"sms:{message.id}@{int(later.timestamp())}"]
    [due_ms] = jobs.values()
    assert due_ms >= (later - timedelta(seconds=1)).timestamp() * 1000  # deferred, not now


async def test_far_off_work_and_an_unbound_factory_are_left_to_the_sweep(
    settings: Settings, sessions: SessionFactory, redis: ArqRedis, account_id: str
) -> None:
    start = now()
    set_clock(lambda: start)
    try:
        async with transaction(work.bind(sessions, redis)) as session:
            tomorrow = await text(session, account_id, at=start + timedelta(days=1))
        async with transaction(sessions) as session:  # a CLI or a test's own factory
            unbound = await text(session, account_id)
        assert await queued_jobs(redis) == {}  # Redis holds no long-dated jobs

        # The unbound text is due: its account's drain is owed.
        assert await sweep_once(settings, sessions, redis) == 1
        assert list(await queued_jobs(redis)) == [f"sends:{account_id}"]
        assert await sweep_once(settings, sessions, redis) == 0  # its job is live

        # The drain ran and sent it; tomorrow's text is owed nothing until tomorrow.
        await redis.flushdb()
        async with transaction(sessions) as session:
            await session.exec(
                update(Message)
                .where(col(Message.id) == unbound.id)
                .values(status=MessageStatus.ACCEPTED)
            )
        assert await sweep_once(settings, sessions, redis) == 0
        set_clock(lambda: start + timedelta(days=1, seconds=1))
        assert await sweep_once(settings, sessions, redis) == 1
        assert list(await queued_jobs(redis)) == [f"sends:{account_id}"]
        assert tomorrow.account_id == account_id
    finally:
        set_clock(None)


async def test_a_commit_stands_when_redis_is_down(
    sessions: SessionFactory, account_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody listens on the port: the hand-off logs it, the row is committed for the sweep."""
    gone = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.work.staging"):
            async with transaction(work.bind(sessions, gone)) as session:
                message = await text(session, account_id)
    finally:
        await gone.aclose()
    async with sessions() as session:
        assert await session.get(Message, message.id) is not None
    assert any("the sweep will" in r.getMessage() for r in caplog.records)


async def test_one_kind_failing_does_not_keep_the_sweep_from_the_others(
    settings: Settings,
    sessions: SessionFactory,
    redis: ArqRedis,
    account_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(
        _session: AsyncSession, _moment: datetime, _limit: int
    ) -> Sequence[tuple[str, str]]:
        raise RuntimeError("a broken due query")

    # The first kind the sweep asks (the worker imports the engine's jobs first) breaks.
    first = next(e for e in registry.registered() if e.due is not None)
    assert first.kind != work.SMS_SEND
    monkeypatch.setitem(registry._REGISTRY, first.kind.name, dataclasses.replace(first, due=broken))
    async with transaction(sessions) as session:
        message = await text(session, account_id)
    with pytest.raises(RuntimeError, match="broken due query"):
        await sweep_once(settings, sessions, redis)
    assert list(await queued_jobs(redis)) == [f"sends:{message.account_id}"]


def test_every_job_id_rule() -> None:
    """The ids arq deduplicates on: the same work is the same id; a deferral or a new version of
    a party line is a new one."""
    at = datetime.fromisoformat("2026-12-03T12:00:00+00:00")
    assert work.SMS_SEND.job_id("msg_1") == "sms:msg_1"
    assert work.SMS_SEND.job_id("msg_1", at=at) == f"sms:msg_1@{int(at.timestamp())}"
    assert work.PARTY_LINE_RUN.job_id("pl_1", variant=3) == "pl:pl_1:3"
    names = [k.name for k in vars(kinds).values() if isinstance(k, kinds.Kind)]
    prefixes = [k.prefix for k in vars(kinds).values() if isinstance(k, kinds.Kind)]
    assert len(set(names)) == len(names) and len(set(prefixes)) == len(prefixes)


async def test_a_burst_of_commits_staging_one_drain_shares_its_enqueues(
    sessions: SessionFactory, redis: ArqRedis
) -> None:
    """Every inbound text's commit stages the one inbox drain: the first enqueues it at once,
    the rest within the kind's coalesce_seconds share one enqueue at its end, which still comes
    after each of their commits."""
    bound = work.bind(sessions, redis)
    job_id = work.SMS_INBOX.job_id("sms")
    await work.hand_off(bound, work.SMS_INBOX, "sms")
    assert list(await queued_jobs(redis)) == [job_id]
    # The run starts and ends (its id is free again) while commits keep coming.
    await redis.delete(job_key_prefix + job_id)
    await redis.zrem(default_queue_name, job_id)
    for _ in range(10):
        await work.hand_off(bound, work.SMS_INBOX, "sms")
    assert await queued_jobs(redis) == {}  # none of them enqueued on its own
    await asyncio.sleep(work.SMS_INBOX.coalesce_seconds * 4)
    assert list(await queued_jobs(redis)) == [job_id]  # the one at the spell's end
