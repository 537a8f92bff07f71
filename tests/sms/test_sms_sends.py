"""An account's due texts, sent in batches by its `sms.sends` drain: each text once, gated and
claimed as a job of its own would be, a lead's texts in their order, and what does not fit a
batch handed to the text's own job. Real database, Redis, worker and sandbox."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from arq import Retry
from arq.constants import default_queue_name, in_progress_key_prefix
from sqlalchemy import update
from sqlmodel import col, select

from gateway import gate, optouts
from gateway.clock import now
from gateway.db import transaction
from gateway.job_context import as_ctx
from gateway.jobs import sms_send, sms_sends
from gateway.models import (
    Channel,
    Consent,
    LedgerEvent,
    LedgerSource,
    Message,
    MessageEvent,
    MessageStatus,
    Purpose,
)
from gateway.sms import sender
from gateway.sms.outbox import queue_message
from gateway.sms.sender import BACKOFF
from gateway.sms.status import Accepted, advance_accepted
from gateway.work import SMS_SEND, SMS_SENDS
from gateway.worker import opened_job_context
from tests.support.sql import statements
from tests.support.stack import LEAD, Stack


def phones(count: int) -> list[str]:
    return [f"+1415555{3000 + i:04d}" for i in range(count)]


async def queue(stack: Stack, to: list[str], body: str = "hello") -> list[str]:
    """Texts queued in one transaction, as a sweep or an overflowing web process leaves them."""
    async with transaction(stack.sessions) as session:
        return [
            (
                await queue_message(
                    session,
                    account_id=stack.account_id,
                    phone=phone,
                    body=f"{body} {n}",
                    purpose=Purpose.INITIATED,
                    reason="test",
                )
            ).id
            for n, phone in enumerate(to)
        ]


async def queued_jobs(stack: Stack) -> list[str]:
    return sorted(j.decode() for j in await stack.api_redis.zrange(default_queue_name, 0, -1))


async def history(stack: Stack, message_id: str) -> list[str]:
    async with stack.sessions() as session:
        query = (
            select(MessageEvent.status)
            .where(col(MessageEvent.message_id) == message_id)
            .order_by(col(MessageEvent.id))
        )
        return [str(s) for s in (await session.exec(query)).all()]


async def statuses(stack: Stack, ids: list[str]) -> list[str]:
    async with stack.sessions() as session:
        query = select(Message.id, Message.status).where(col(Message.id).in_(ids))
        found = dict((await session.exec(query)).all())
    return [str(found[i]) for i in ids]


async def run_drain(stack: Stack, job_id: str | None = None) -> str:
    """One run of the account's drain, as a worker runs it (under `job_id`, if given)."""
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        ctx: dict[str, Any] = as_ctx(jc)
        if job_id is not None:
            ctx["job_id"] = job_id
        return await sms_sends.send_due(ctx, stack.account_id)


async def test_an_accounts_due_texts_go_in_batches_each_once(stack: Stack) -> None:
    to = phones(2 * sms_sends.BATCH + 3)
    ids = await queue(stack, to)
    # One job for them all, not one each.
    assert [j for j in await queued_jobs(stack) if j.startswith(("sms", "sends"))] == [
        SMS_SENDS.job_id(stack.account_id)
    ]
    with statements("JOIN accounts") as reads:
        await stack.work()
    # Three batches were read: 16, 16 and 3 texts.
    batch_reads = [r for r in reads if "FROM messages JOIN accounts" in r and "LIMIT" in r]
    assert len(batch_reads) == 3, len(batch_reads)
    assert sorted(c.get("To") for c in stack.creates()) == sorted(to)
    assert set(await statuses(stack, ids)) == {MessageStatus.DELIVERED}
    assert (await history(stack, ids[-1]))[:3] == ["queued", "sending", "accepted"]
    # Each text got its account's opt-out notice decided at its claim, as alone.
    assert all(str(c.get("Body")).endswith("Reply STOP to opt out.") for c in stack.creates())


@pytest.mark.parametrize(
    ("at_most", "statements_asked"),
    [
        (gate.MANY_AT_MOST, 2),  # the five initiated texts' statement, the reply's
        (2, 4),  # the initiated texts two by two (2, 2, 1), the reply's
    ],
)
async def test_a_batchs_gate_facts_are_asked_together_as_each_alone_would_find_them(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, at_most: int, statements_asked: int
) -> None:
    """The batch asks the gate about its texts in one statement a kind of text (the facts
    correlated to a row of parameters per text), of at most `gate.MANY_AT_MOST` texts: each
    text's facts are what its own statement finds, whatever the phone's history."""
    monkeypatch.setattr(gate, "MANY_AT_MOST", at_most)
    to = phones(6)
    await queue(stack, to[:3], body="first")  # a number each knows, a notice each got
    await stack.work()
    await stack.say("what is this about", to[5])  # it wrote to us: a reply's grace
    ahead = (await queue(stack, [to[4]], body="later"))[0]
    async with transaction(stack.sessions) as session:
        await optouts.record(
            session,
            account_id=stack.account_id,
            phone=to[2],
            event=LedgerEvent.OPT_OUT,
            channel=Channel.SMS,
            source=LedgerSource.API,
        )
        session.add(
            Consent(
                id="cns_batch",
                account_id=stack.account_id,
                phone=to[3],
                captured_at=now() - timedelta(days=2),
            )
        )
        await session.exec(  # an earlier text that waits an hour: the next one waits as long
            update(Message)
            .where(col(Message.id) == ahead)
            .values(send_after=now() + timedelta(hours=1), gate_reason="quiet_hours")
        )
    await queue(stack, to[:5], body="second")
    async with transaction(stack.sessions) as session:  # a reply: a kind of its own
        await queue_message(
            session,
            account_id=stack.account_id,
            phone=to[5],
            body="a reply",
            purpose=Purpose.REPLY,
            reason="test",
        )
    await stack.api_redis.flushdb()
    asked: list[tuple[list[Any], int, list[Any]]] = []  # (together, statements, alone)
    gather_many = gate.gather_many

    async def and_alone(session: Any, account: Any, asks: Any) -> Any:
        with statements("FROM opt_out_events") as ledger_reads:
            together = await gather_many(session, account, asks)
        alone = [(await gather_many(session, account, [ask]))[0] for ask in asks]
        asked.append((together, len(ledger_reads), alone))
        return together

    monkeypatch.setattr(gate, "gather_many", and_alone)
    outcome = await run_drain(stack)
    counted = dict(part.split(" ", 1)[::-1] for part in outcome.split(", "))
    assert counted == {"sent": "4", "blocked": "1", "behind an earlier text": "1"}, outcome
    [(together, reads, alone)] = asked
    assert reads == statements_asked
    assert together == alone
    requests = [gathered.request for gathered in together]
    assert [r.phone for r in requests] == to
    assert [r.opted_out for r in requests] == [False, False, True, False, False, False]
    assert [r.last_inbound_at is not None for r in requests] == [False] * 5 + [True]
    assert [r.consent_captured_at is not None for r in requests[:5]] == [False] * 3 + [True, False]
    # The lead's other texts: whether one is ahead, the last notice, the number it knows.
    _, earliest, last_notice, known = zip(*(gathered.also for gathered in together), strict=True)
    assert [at is not None for at in earliest] == [False] * 4 + [True, False]
    assert [at is not None for at in last_notice] == [True] * 3 + [False] * 3
    assert [number is not None for number in known] == [True] * 3 + [False] * 2 + [True]


async def test_a_leads_texts_leave_in_their_order(stack: Stack) -> None:
    others = phones(3)
    ids = await queue(stack, [LEAD, *others, LEAD, LEAD], body="to Ann")
    await stack.work()
    # The lead's second and third waited for the one before (their own jobs looked again).
    to_lead = [c.get("Body") for c in stack.creates(To=LEAD)]
    assert [b.split(" Reply")[0] for b in to_lead] == ["to Ann 0", "to Ann 4", "to Ann 5"]
    assert set(await statuses(stack, ids)) == {MessageStatus.DELIVERED}
    assert len(stack.creates()) == 6


async def test_two_runs_of_an_account_send_each_text_once(stack: Stack) -> None:
    """A run and its follow-up may overlap (the follow-up is enqueued while the run ends):
    they read the same texts, and each text is claimed by one of them."""
    to = phones(3 * sms_sends.BATCH)
    ids = await queue(stack, to)
    await stack.api_redis.flushdb()
    outcomes = await asyncio.gather(run_drain(stack), run_drain(stack))
    # An outcome counts each kind ("16 claimed elsewhere, 16 sent"): a run that lost a race
    # for a batch says so beside what it sent.
    sent = [sum(int(n) for n in re.findall(r"(\d+) sent", o)) for o in outcomes]
    assert sum(sent) == len(to), outcomes
    assert sorted(c.get("To") for c in stack.creates()) == sorted(to)
    assert set(await statuses(stack, ids)) == {MessageStatus.ACCEPTED}


async def test_a_batch_that_fails_to_claim_hands_each_text_to_its_own_job(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    to = phones(4)
    bad = to[2]
    gather_many = gate.gather_many

    async def broken(*args: Any, **kwargs: Any) -> Any:
        if any(ask.phone == bad for ask in args[2]):
            raise RuntimeError("the gate broke on this lead's data")
        return await gather_many(*args, **kwargs)

    monkeypatch.setattr(gate, "gather_many", broken)
    ids = await queue(stack, to)
    await stack.api_redis.flushdb()
    with caplog.at_level(logging.ERROR, logger="gateway.jobs.sms_sends"):
        assert await run_drain(stack) == "4 left to its own job"
    assert any("failed to claim" in r.getMessage() for r in caplog.records)
    assert sorted(await queued_jobs(stack)) == sorted(SMS_SEND.job_id(i) for i in ids)
    # Each alone: the others go; the text the gate breaks on stays queued for the sweep.
    await stack.work()
    assert sorted(c.get("To") for c in stack.creates()) == sorted(p for p in to if p != bad)
    assert (await statuses(stack, ids))[2] == MessageStatus.QUEUED


async def test_a_text_backing_off_is_its_own_jobs_not_the_drains(stack: Stack) -> None:
    [backing_off, due] = await queue(stack, phones(2))
    async with transaction(stack.sessions) as session:
        await session.exec(
            update(Message).where(col(Message.id) == backing_off).values(gate_reason=BACKOFF)
        )
    await stack.api_redis.flushdb()
    assert await run_drain(stack) == "1 sent"
    assert await statuses(stack, [backing_off, due]) == ["queued", "accepted"]
    # The sweep: the backing-off text is owed its own job; the account no drain.
    async with stack.sessions() as session:
        assert await sms_sends.due(session, now(), 100) == []
        assert await sms_send.due(session, now(), 100) == [
            (SMS_SEND.job_id(backing_off), backing_off)
        ]


async def test_the_sweep_owes_a_drain_per_account_with_due_texts(stack: Stack) -> None:
    await queue(stack, phones(3))
    async with stack.sessions() as session:
        owed = await sms_sends.due(session, now(), 100)
        assert owed == [(SMS_SENDS.job_id(stack.account_id), stack.account_id)]
        # Not a text deferred to later, nor a text being sent.
        later = now() + timedelta(hours=1)
    async with transaction(stack.sessions) as session:
        await session.exec(update(Message).values(send_after=later))
    async with stack.sessions() as session:
        assert await sms_sends.due(session, now(), 100) == []
    assert await run_drain(stack) == "none due"


async def test_a_batchs_answers_are_recorded_in_one_statement(stack: Stack) -> None:
    """Twilio took three texts of a batch: one UPDATE moves them on. A status callback that
    came first (the text is `sent` already) keeps its status; the text still gets its SID and
    count, and its history says the acceptance came late."""
    ids = await queue(stack, phones(3))
    async with transaction(stack.sessions) as session:
        await session.exec(update(Message).values(status=MessageStatus.SENDING))
        await session.exec(
            update(Message).where(col(Message.id) == ids[2]).values(status=MessageStatus.SENT)
        )
    answers = [Accepted(i, f"SM{n:032d}", n + 1, "twilio status queued") for n, i in enumerate(ids)]
    with statements("UPDATE messages") as updates:
        async with transaction(stack.sessions) as session:
            await advance_accepted(session, answers)
    assert len(updates) == 2  # all three, then the late one's SID and count
    async with stack.sessions() as session:
        rows = {
            m.id: m
            for m in (await session.exec(select(Message).where(col(Message.id).in_(ids)))).all()
        }
    assert [rows[i].status for i in ids] == ["accepted", "accepted", "sent"]
    assert [(rows[i].twilio_sid, rows[i].num_segments) for i in ids] == [
        (f"SM{n:032d}", n + 1) for n in range(3)
    ]
    assert (await history(stack, ids[0]))[-1] == "accepted"
    assert (await history(stack, ids[2]))[-1] == "accepted (late)"


async def test_a_batch_takes_one_text_per_lead(stack: Stack) -> None:
    """A lead's second text in a batch is not gated there: its own job looks again shortly,
    so a batch never holds two texts' rows of one lead."""
    ids = await queue(stack, [LEAD, phones(1)[0], LEAD])
    await stack.api_redis.flushdb()
    before_ms = time.time() * 1000
    outcome = dict(part.split(" ", 1)[::-1] for part in (await run_drain(stack)).split(", "))
    assert outcome == {"sent": "2", "behind an earlier text": "1"}
    assert await statuses(stack, ids) == ["accepted", "accepted", "queued"]
    # Its own job, held a moment in Redis (as arq holds a retried job, under its id).
    [(job, due_ms)] = await stack.api_redis.zrange(default_queue_name, 0, -1, withscores=True)
    assert job.decode() == SMS_SEND.job_id(ids[2])
    assert due_ms >= before_ms + sender.EARLIER_TEXT_POLL_SECONDS * 1000


async def test_a_follow_up_waits_for_the_accounts_run(stack: Stack) -> None:
    """Staged while the account's run runs, a follow-up (`sends:<account>@<time>`) comes back
    once that run has ended, rather than read the same texts beside it."""
    [message_id] = await queue(stack, phones(1))
    await stack.api_redis.flushdb()
    run_id = SMS_SENDS.job_id(stack.account_id)
    follow_up = f"{run_id}@{int(time.time()) + 1}"
    await stack.api_redis.set(in_progress_key_prefix + run_id, b"1", px=60_000)
    with pytest.raises(Retry):
        await run_drain(stack, follow_up)
    assert await statuses(stack, [message_id]) == ["queued"]
    await stack.api_redis.delete(in_progress_key_prefix + run_id)
    assert await run_drain(stack, follow_up) == "1 sent"


async def test_a_batchs_texts_are_claimed_in_one_statement_and_a_text_taken_meanwhile_is_not(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch gates its texts one by one, then claims those the gate allowed in one UPDATE,
    by compare-and-set: a text another run claimed after this one gated it is left to that
    run (here, a fault: the text is moved to `sending` once gated)."""
    to = phones(5)
    ids = await queue(stack, to)
    await stack.api_redis.flushdb()
    prepare = sender.prepare

    async def taken_meanwhile(*args: Any, **kwargs: Any) -> sender.Prepared:
        prepared = await prepare(*args, **kwargs)
        session, message_id = args[1], args[2]
        if message_id == ids[3]:
            moved = update(Message).where(col(Message.id) == message_id)
            await session.exec(moved.values(status=MessageStatus.SENDING))
        return prepared

    monkeypatch.setattr(sender, "prepare", taken_meanwhile)
    with statements("messages.attempts +") as claims:
        outcome = await run_drain(stack)
    assert len(claims) == 1, claims
    counted = dict(part.split(" ", 1)[::-1] for part in outcome.split(", "))
    assert counted == {"sent": "4", "claimed elsewhere": "1"}
    assert sorted(c.get("To") for c in stack.creates()) == sorted(to[:3] + to[4:])
    assert await statuses(stack, ids) == ["accepted"] * 3 + ["sending", "accepted"]
    assert (await history(stack, ids[0]))[:3] == ["queued", "sending", "accepted"]
    assert await history(stack, ids[3]) == ["queued"]  # its claimer writes its history
