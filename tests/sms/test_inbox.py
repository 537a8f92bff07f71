"""The inbox (gateway/jobs/sms_inbox.py): `POST /twilio/sms` only appends the text, and the
`sms.inbox` job acts on the pending texts in batches, each once and in the order they came,
setting aside a text that fails on its own and leaving everything pending when the trouble is
not the text's. Real signed webhooks through the gateway, the real job, database and Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from arq.constants import default_queue_name
from sqlalchemy.exc import OperationalError
from sqlmodel import col, select

from gateway.db import SessionFactory
from gateway.job_context import as_ctx
from gateway.jobs import sms_inbox
from gateway.models import Message, MessageEvent, OptOutEvent, WebhookClaim
from gateway.work import SMS_INBOX
from gateway.work.sweep import sweep
from gateway.worker import opened_job_context
from tests.engine.test_plays import begin, publish
from tests.support.claims import pending_keys, watched_takes
from tests.support.sql import statements
from tests.support.stack import OUR_NUMBER, Hooks, Stack


def _sid(n: int) -> str:
    return f"SM{n:032d}"


async def _append(stack: Stack, n: int, body: str = "hello", phone: str = "+14155557000") -> str:
    """A signed inbound webhook for text `n`; returns its MessageSid."""
    params = {"MessageSid": _sid(n), "From": phone, "To": OUR_NUMBER, "Body": body}
    response = await stack.post_twilio("/twilio/sms", params)
    assert response.status_code == 200, response.text
    return params["MessageSid"]


async def _inbound(stack: Stack) -> list[str]:
    """The inbound texts written, by SID, in the order they were acted on (their `received`
    history rows are numbered as written)."""
    async with stack.sessions() as session:
        query = (
            select(Message.twilio_sid)
            .join(MessageEvent, col(MessageEvent.message_id) == col(Message.id))
            .where(Message.direction == "inbound", MessageEvent.status == "received")
            .order_by(col(MessageEvent.id))
        )
        return [sid or "" for sid in (await session.exec(query)).all()]


async def _pending(stack: Stack) -> list[str]:
    return await pending_keys(stack.sessions, sms_inbox.CLAIM_KIND)


async def _take(stack: Stack) -> int:
    """One run of the job, as the worker runs it."""
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        return await sms_inbox.take_inbox(as_ctx(jc), sms_inbox.INBOX)


def _failing(monkeypatch: pytest.MonkeyPatch, fails: Callable[[str], Exception | None]) -> None:
    """Make `_receive` raise `fails(sid)` for the texts it names (a fault, injected)."""
    receive = sms_inbox._receive

    async def failing(session: Any, batch: Any, text: sms_inbox.Taken) -> None:
        error = fails(text.key)
        if error is not None:
            raise error
        await receive(session, batch, text)

    monkeypatch.setattr(sms_inbox, "_receive", failing)


async def test_the_webhook_appends_and_a_burst_is_taken_in_batches_each_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 2 * sms_inbox.BATCH + 5
    sids = [await _append(stack, n) for n in range(count)]
    await _append(stack, 0)  # Twilio sends one again: appended once
    assert await _pending(stack) == sids
    assert await _inbound(stack) == []  # nothing acted on in the request
    with watched_takes(monkeypatch, sms_inbox.CLAIM_KIND) as takes:
        await stack.work()
    assert await _inbound(stack) == sids  # each once, in the order they came
    assert await _pending(stack) == []
    # A transaction per batch, not per text (and runs that found nothing left).
    assert [n for n in takes if n] == [sms_inbox.BATCH, sms_inbox.BATCH, 5]


async def test_two_runs_at_once_take_each_text_once_and_keep_a_leads_order(
    stack: Stack,
) -> None:
    lead = "+14155557001"
    for n in range(40):
        await _append(stack, n, body=("STOP", "START")[n % 2], phone=lead)
    done = await asyncio.gather(_take(stack), _take(stack))
    assert sum(done) == 40
    assert await _inbound(stack) == [_sid(n) for n in range(40)]
    async with stack.sessions() as session:
        events = (await session.exec(select(OptOutEvent).order_by(col(OptOutEvent.id)))).all()
    assert [e.event for e in events] == ["opt_out", "opt_in"] * 20
    assert [e.message_sid for e in events] == [_sid(n) for n in range(40)]


async def test_a_text_that_fails_on_its_own_is_set_aside_and_the_rest_go_on(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sids = [await _append(stack, n) for n in range(3)]
    _failing(monkeypatch, lambda sid: ValueError("odd input") if sid == sids[1] else None)
    with caplog.at_level(logging.ERROR, logger=sms_inbox.__name__):
        assert await _take(stack) == 3
    assert await _inbound(stack) == [sids[0], sids[2]]
    assert await _pending(stack) == []
    [aside] = [r for r in caplog.records if "set aside" in r.getMessage()]
    async with stack.sessions() as session:
        claim = (await session.exec(select(WebhookClaim).where(WebhookClaim.key == sids[1]))).one()
    assert str(claim.id) in aside.getMessage() and claim.params["MessageSid"] == sids[1]


async def test_when_every_text_fails_nothing_is_set_aside(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sids = [await _append(stack, n) for n in range(3)]
    _failing(monkeypatch, lambda sid: ValueError("a bug of ours"))
    with pytest.raises(RuntimeError, match="every inbound text of a batch failed"):
        await _take(stack)
    assert await _pending(stack) == sids
    monkeypatch.undo()  # the fix is deployed: the next run acts on every text
    assert await _take(stack) == 3
    assert await _inbound(stack) == sids


async def test_a_database_error_rolls_the_batch_back_and_leaves_it_pending(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sids = [await _append(stack, n) for n in range(3)]
    lost = OperationalError("INSERT", {}, Exception("connection lost"))
    _failing(monkeypatch, lambda sid: lost if sid == sids[1] else None)
    with pytest.raises(OperationalError):
        await _take(stack)
    assert await _inbound(stack) == []  # the first text's rows went with the batch
    assert await _pending(stack) == sids
    monkeypatch.undo()
    assert await _take(stack) == 3
    assert await _inbound(stack) == sids  # each once


async def test_texts_whose_job_redis_lost_are_found_by_the_sweep(stack: Stack) -> None:
    sids = [await _append(stack, n) for n in range(2)]
    await stack.api_redis.flushdb()
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        assert await sweep(as_ctx(jc)) >= 1
    queued = {job.decode() for job in await stack.api_redis.zrange(default_queue_name, 0, -1)}
    assert SMS_INBOX.job_id(sms_inbox.INBOX) in queued
    await stack.work()
    assert await _inbound(stack) == sids


async def test_when_the_plays_fail_each_text_is_still_recorded_and_its_reply_owed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply goes to the lead's plays in the batch's transaction; when that fails, each text
    is taken alone with its reply left to a `plays.reply` job (and the sweep), not set aside."""
    phone = "+14155557002"
    lead = await stack.api.post("/v1/leads", json={"phone": phone, "first_name": "Ann"})
    assert lead.status_code == 201, lead.text
    sids = [await _append(stack, n, body="sounds good", phone=phone) for n in range(2)]

    async def failing(*args: Any) -> list[str]:
        raise ValueError("a play's bug")

    monkeypatch.setattr(sms_inbox, "hand_reply", failing)
    assert await _take(stack) == 2
    assert await _inbound(stack) == sids
    assert await _pending(stack) == []
    async with stack.sessions() as session:
        query = select(Message.dispatched_at).where(Message.direction == "inbound")
        assert (await session.exec(query)).all() == [None, None]  # owed to the plays


@pytest.mark.parametrize("count", [1, 2, sms_inbox.BATCH])
async def test_a_batchs_leads_are_read_by_their_unique_index(
    sessions: SessionFactory, count: int
) -> None:
    """SQLite read the whole leads table for a row-value `IN` of (account, phone) pairs: the
    batch's read must look each pair up by the leads' unique index, whatever the batch's size."""
    async with sessions() as session:
        connection = await session.connection()
        if connection.dialect.name != "sqlite":
            pytest.skip("SQLite's planner")
        sql = str(sms_inbox._leads_among(count).compile(dialect=connection.dialect))
        plan = await connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {sql}", ("x",) * sql.count("?")
        )
        steps = [row[3] for row in plan]
    searches = [s for s in steps if not s.startswith(("MULTI-INDEX OR", "INDEX "))]
    assert (
        searches
        == ["SEARCH leads USING INDEX sqlite_autoindex_leads_2 (account_id=? AND phone=?)"] * count
    ), steps


async def test_a_batch_of_replies_moves_each_play_once_and_marks_the_texts_in_one_execution(
    stack: Stack,
) -> None:
    leads = [f"+1415555{7100 + n:04d}" for n in range(5)]
    await publish(stack, "mortgage-qualification")
    plays = [await begin(stack, "mortgage-qualification", phone) for phone in leads]
    await stack.work()  # each lead's first question
    for n, phone in enumerate(leads):
        await _append(stack, 100 + n, body="Yes!", phone=phone)
    with statements() as seen:
        assert await _take(stack) == len(leads)
    # A reply's play is written once (the time of the lead's reply with the step it moved
    # to), and the batch's texts are marked handed to their plays by one execution.
    moves = [s for s in seen if s.startswith("UPDATE plays SET")]
    marks = [s for s in seen if s.startswith("UPDATE messages SET play_id")]
    assert (len(moves), len(marks)) == (len(leads), 1), seen
    async with stack.sessions() as session:
        query = select(Message.play_id, Message.dispatched_at).where(Message.direction == "inbound")
        handed = (await session.exec(query)).all()
    assert sorted(play_id or "" for play_id, _ in handed) == sorted(plays)
    assert all(at is not None for _, at in handed)


async def test_a_batchs_payloads_show_each_lead_as_the_batch_left_it(
    stack: Stack, hooks: Hooks
) -> None:
    """Activities are written, with their payloads, when their transaction commits: a reply
    and the lead's STOP taken in one batch both show the lead opted out (README, "The
    payload")."""
    lead = "+14155557200"
    await publish(stack, "mortgage-qualification")
    play_id = await begin(stack, "mortgage-qualification", lead)
    await stack.work()
    await _append(stack, 200, body="Yes!", phone=lead)
    await _append(stack, 201, body="STOP", phone=lead)
    assert await _take(stack) == 2  # one batch
    await stack.work()
    [replied] = hooks.of(play_id, "interested")
    [ended] = hooks.of(play_id, "opted_out")
    assert replied["lead_opted_out"] is True and ended["lead_opted_out"] is True
