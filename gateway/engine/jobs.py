"""The engine's jobs: `plays.advance` (run what is due), `plays.reply` (a lead's text), and the
sweep that re-finds due plays after a Redis flush. Each runs under the lead's contact lock, so
a reply and a timed step of the same lead never interleave."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from sqlmodel import col, select

from gateway.clock import now
from gateway.contact_lock import lock_contact
from gateway.db import transaction
from gateway.email.outbox import enqueue_pending
from gateway.engine import rep_notices
from gateway.engine.replies import on_reply
from gateway.engine.stepper import run_due
from gateway.job_context import job_context
from gateway.job_results import enqueue_owed
from gateway.models import Direction, Lead, Message, Play, PlayState
from gateway.sms.outbox import MAX_DEFER_SECONDS, enqueue_send
from voice.starting import enqueue_run, started_ids

log = logging.getLogger(__name__)

ADVANCE_JOB = "plays.advance"
REPLY_JOB = "plays.reply"
SWEEP_LIMIT = 2000
# An inbound text's own job normally runs within a second; past this the sweep re-sends it.
REPLY_GRACE = timedelta(seconds=30)


async def enqueue_advance(redis: ArqRedis, play_id: str) -> None:
    try:
        await redis.enqueue_job(ADVANCE_JOB, play_id, _job_id=f"play:{play_id}")
    except Exception:  # the sweep finds it
        log.warning("could not enqueue play %s; the sweep will", play_id, exc_info=True)


async def enqueue_reply(redis: ArqRedis, message_id: str) -> None:
    try:
        await redis.enqueue_job(REPLY_JOB, message_id, _job_id=f"reply:{message_id}")
    except Exception:
        log.warning("could not enqueue reply %s", message_id, exc_info=True)


async def advance(ctx: dict[str, Any], play_id: str) -> str:
    """Run a play's due steps (arq job `plays.advance`)."""
    jc = job_context(ctx)
    async with transaction(jc.sessions) as session:
        play = await session.get(Play, play_id)
        if play is None or play.state != PlayState.RUNNING:
            return "not running"
        lead = await session.get(Lead, play.lead_id)
        assert lead is not None
        await lock_contact(session, play.account_id, lead.phone)
        await session.refresh(play)
        queued = await run_due(session, play, lead)
        due_at = play.due_at if play.state == PlayState.RUNNING and not play.paused else None
    for message in queued:
        await enqueue_send(jc.redis, message.id)
    await enqueue_pending(jc.redis, session)  # emails the steps queued
    await rep_notices.enqueue_pending(jc.redis, session)  # talk_to_human told the rep
    for party_line_id in started_ids(session):
        await enqueue_run(jc.redis, party_line_id, 0)
    delay = (due_at - now()).total_seconds() if due_at is not None else 0.0
    if due_at is not None and 0 < delay <= MAX_DEFER_SECONDS:
        await jc.redis.enqueue_job(
            ADVANCE_JOB,
            play_id,
            _job_id=f"play:{play_id}@{int(due_at.timestamp())}",
            _defer_by=delay,
        )
    return f"{len(queued)} queued"


async def reply(ctx: dict[str, Any], message_id: str) -> str:
    """Hand an inbound text to the lead's running plays (arq job `plays.reply`)."""
    jc = job_context(ctx)
    async with transaction(jc.sessions) as session:
        message = await session.get(Message, message_id)
        if message is None or message.direction != Direction.INBOUND:
            return "not inbound"
        if message.dispatched_at is not None:
            return "already handled"
        if message.lead_id is None:
            message.dispatched_at = now()
            session.add(message)
            return "no lead"
        lead = await session.get(Lead, message.lead_id)
        assert lead is not None
        await lock_contact(session, lead.account_id, lead.phone)
        plays = (
            await session.exec(
                select(Play).where(
                    Play.account_id == lead.account_id,
                    Play.lead_id == lead.id,
                    Play.state == PlayState.RUNNING,
                    col(Play.created_at) <= message.created_at,
                )
            )
        ).all()
        queued = []
        for play in plays:
            queued += await on_reply(session, play, lead, message.body)
        if plays and message.play_id is None:
            message.play_id = plays[0].id  # shown with the play's messages
        message.dispatched_at = now()
        session.add(message)
    for sent in queued:
        await enqueue_send(jc.redis, sent.id)
    await enqueue_pending(jc.redis, session)  # emails the steps queued
    await rep_notices.enqueue_pending(jc.redis, session)  # talk_to_human told the rep
    for party_line_id in started_ids(session):
        await enqueue_run(jc.redis, party_line_id, 0)
    return f"{len(plays)} plays"


async def sweep(ctx: dict[str, Any]) -> int:
    """Enqueue `plays.advance` for running plays whose time has come (no-op if a job is live)."""
    jc = job_context(ctx)
    query = (
        select(Play.id)
        .where(
            Play.state == PlayState.RUNNING,
            col(Play.paused).is_(False),
            col(Play.due_at) <= now(),
        )
        .order_by(col(Play.due_at))
        .limit(SWEEP_LIMIT)
    )
    replies = (
        select(Message.id)
        .where(
            Message.direction == Direction.INBOUND,
            col(Message.dispatched_at).is_(None),
            col(Message.created_at) <= now() - REPLY_GRACE,
        )
        .order_by(col(Message.created_at))
        .limit(SWEEP_LIMIT)
    )
    async with jc.sessions() as session:
        due = list((await session.exec(query)).all())
        owed = list((await session.exec(replies)).all())
    advanced = await enqueue_owed(jc.redis, ADVANCE_JOB, [(f"play:{i}", i) for i in due])
    replied = await enqueue_owed(jc.redis, REPLY_JOB, [(f"reply:{i}", i) for i in owed])
    return advanced + replied
