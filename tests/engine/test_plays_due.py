"""An account's due plays, run in batches by its `plays.due` drain: each play's step once, under
its contact's lock, as a job of its own would run it; a batch that fails hands each play to its
own job. A day of silence makes each play's re-engagement text due (the example playbook's
`reengagement.after`). Real database, Redis, worker and sandbox."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from arq.constants import default_queue_name
from sqlalchemy import update
from sqlmodel import col

from gateway.clock import now
from gateway.db import transaction
from gateway.job_context import as_ctx
from gateway.jobs import plays_advance
from gateway.models import Lead, Play
from gateway.work import PLAY_ADVANCE, PLAYS_DUE
from gateway.worker import opened_job_context
from tests.engine.test_plays import begin, publish
from tests.support.party_line import labels, play_row, texts_to
from tests.support.sql import statements
from tests.support.stack import Stack

DAY = 24 * 3600 + 60  # past the example's `reengagement.after`
NUDGE = "Still happy to help with a home loan"


def phones(count: int) -> list[str]:
    return [f"+1415555{4000 + i:04d}" for i in range(count)]


async def started(stack: Stack, to: list[str]) -> list[str]:
    """A play for each phone, its first question sent; then a day of silence."""
    await publish(stack, "mortgage-qualification")
    play_ids = [await begin(stack, "mortgage-qualification", phone) for phone in to]
    await stack.work()
    await stack.sandbox.advance(DAY)
    return play_ids


async def queued_jobs(stack: Stack) -> list[str]:
    return sorted(j.decode() for j in await stack.api_redis.zrange(default_queue_name, 0, -1))


async def run_drain(stack: Stack) -> str:
    """One run of the account's drain, as a worker runs it."""
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        return await plays_advance.advance_due(as_ctx(jc), stack.account_id)


async def test_an_accounts_due_plays_go_in_batches_each_once(stack: Stack) -> None:
    to = phones(plays_advance.BATCH + 3)
    play_ids = await started(stack, to)
    # The sweep owes the account one drain for them all, not a job a play.
    async with stack.sessions() as session:
        owed = await plays_advance.due(session, now(), 100)
    assert owed == [(PLAYS_DUE.job_id(stack.account_id), stack.account_id)]
    with statements("FROM plays JOIN leads") as reads:
        await stack.work()  # a worker's sweep runs when it starts
    # Two batches were read (16 plays and 3), and a last read found none left.
    assert sum("LIMIT" in r for r in reads) == 2, reads
    for phone, play_id in zip(to, play_ids, strict=True):
        [_question, nudge] = texts_to(stack, phone)
        assert NUDGE in nudge
        assert await labels(stack, play_id) == ["started", "reengagement_sent"]
        assert (await play_row(stack, play_id)).reengagements_sent == 1
    await stack.work()  # nothing is due again until tomorrow
    assert len(stack.creates()) == 2 * len(to)


async def test_a_play_its_drain_and_its_own_job_reach_runs_its_step_once(stack: Stack) -> None:
    """The account's drain and the play's own job (a deferred one whose time came, or one a
    failed batch handed on) run at once: the contact's lock, and the play read again under it,
    let one of them run the step."""
    [play_id] = await started(stack, phones(1))
    await stack.api_redis.flushdb()
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        ctx: dict[str, Any] = as_ctx(jc)
        await asyncio.gather(
            plays_advance.advance_due(ctx, stack.account_id),
            plays_advance.advance(dict(ctx), play_id),
        )
    await stack.work()
    assert len(texts_to(stack, phones(1)[0])) == 2  # the question, and one nudge
    assert (await play_row(stack, play_id)).reengagements_sent == 1


async def test_a_batch_that_fails_hands_each_play_to_its_own_job(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    to = phones(4)
    bad = to[2]
    play_ids = await started(stack, to)
    run_due = plays_advance.run_due

    async def broken(session: Any, play: Play, lead: Lead) -> Any:
        if lead.phone == bad:
            raise RuntimeError("a step broke on this lead's data")
        return await run_due(session, play, lead)

    monkeypatch.setattr(plays_advance, "run_due", broken)
    await stack.api_redis.flushdb()
    with caplog.at_level(logging.ERROR, logger="gateway.jobs.plays_advance"):
        assert await run_drain(stack) == "4 left to its own job"
    assert any("each goes to its own job" in r.getMessage() for r in caplog.records)
    assert await queued_jobs(stack) == sorted(PLAY_ADVANCE.job_id(i) for i in play_ids)
    # Each alone: the others go on; the play whose step breaks stays due, for the sweep.
    await stack.work()
    for phone, play_id in zip(to, play_ids, strict=True):
        assert len(texts_to(stack, phone)) == (1 if phone == bad else 2)
        assert (await play_row(stack, play_id)).reengagements_sent == (phone != bad)


async def test_a_paused_play_is_not_due(stack: Stack) -> None:
    [play_id] = await started(stack, phones(1))
    async with transaction(stack.sessions) as session:
        await session.exec(update(Play).where(col(Play.id) == play_id).values(paused=True))
    async with stack.sessions() as session:
        assert await plays_advance.due(session, now(), 100) == []
    await stack.api_redis.flushdb()
    assert await run_drain(stack) == "none due"


async def test_a_batchs_plays_are_moved_and_their_activities_written_one_statement_a_kind(
    stack: Stack,
) -> None:
    to = phones(plays_advance.BATCH)
    play_ids = await started(stack, to)
    await stack.api_redis.flushdb()
    with statements() as seen:
        await run_drain(stack)
    # Each play's move (its next due time, its count of nudges) waits for the session's next
    # flush, and its activity for the commit: the batch's go out together.
    moved = [s for s in seen if s.startswith("UPDATE plays SET due_at") and "reengagements" in s]
    written = [s for s in seen if s.startswith("INSERT INTO activities")]
    assert (len(moved), len(written)) == (1, 1), seen
    await stack.work()
    for phone, play_id in zip(to, play_ids, strict=True):
        assert NUDGE in texts_to(stack, phone)[1]
        assert await labels(stack, play_id) == ["started", "reengagement_sent"]
        assert (await play_row(stack, play_id)).reengagements_sent == 1
