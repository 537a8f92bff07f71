"""The engine's `plays.reply` job (a lead's text, to its running plays), with the due query by
which the sweep re-finds it after a Redis flush. It runs under the lead's contact lock, so a
reply and a timed step of the same lead (`gateway.jobs.plays_advance`) never interleave."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.contact_lock import lock_contact
from gateway.db import UTCDateTime, transaction
from gateway.engine.replies import on_reply
from gateway.job_context import job_context
from gateway.leads import lead_of_message
from gateway.models import Direction, Lead, Message, Play, PlayState
from gateway.work import PLAY_REPLY, job

log = logging.getLogger(__name__)

# An inbound text's own job normally runs within a second; past this the sweep re-sends it.
REPLY_GRACE = timedelta(seconds=30)


async def due_replies(
    session: AsyncSession, moment: datetime, limit: int
) -> Sequence[tuple[str, str]]:
    """The sweep's question: inbound texts no play has heard yet, past their own job's grace."""
    query = (
        select(Message.id)
        .where(
            Message.direction == Direction.INBOUND,
            col(Message.dispatched_at).is_(None),
            col(Message.created_at) <= moment - REPLY_GRACE,
        )
        .order_by(col(Message.created_at))
        .limit(limit)
    )
    return [(PLAY_REPLY.job_id(i), i) for i in (await session.exec(query)).all()]


@job(PLAY_REPLY, due=due_replies, inline=True)
async def reply(ctx: dict[str, Any], message_id: str) -> str:
    """Hand an inbound text to the lead's running plays (arq job `plays.reply`)."""
    jc = job_context(ctx)
    async with transaction(jc.sessions, brief=True) as session:
        found = (
            await session.exec(
                select(Message, Lead)
                .outerjoin(Lead, lead_of_message())
                .where(Message.id == message_id)
            )
        ).first()
        if found is None or found[0].direction != Direction.INBOUND:
            return "not inbound"
        message, lead = found
        if message.dispatched_at is not None:
            return "already handled"
        if lead is None:
            message.dispatched_at = now()
            session.add(message)
            return "no lead"
        heard_by = await hand_reply(session, lead, message.body, message.created_at)
        if heard_by and message.play_id is None:
            message.play_id = heard_by[0]  # shown with the play's messages
        message.dispatched_at = now()
        session.add(message)
    return f"{len(heard_by)} plays"


async def hand_reply(
    session: AsyncSession, lead: Lead, body: str, received_at: datetime
) -> list[str]:
    """An inbound text to every play of `lead` that was running when it came; returns their
    ids. The caller marks the text dispatched in the same transaction (this job, or the inbox
    that received it, gateway/jobs/sms_inbox.py)."""
    await lock_contact(session, lead.account_id, lead.phone)
    params = {"account_id": lead.account_id, "lead_id": lead.id, "received_at": received_at}
    plays = (await session.exec(_RUNNING_PLAYS, params=params)).all()
    for play in plays:
        await on_reply(session, play, lead, body)
    return [play.id for play in plays]


# `hand_reply`'s read: the lead's plays running when the text came, built once.
_RUNNING_PLAYS = select(Play).where(
    Play.account_id == bindparam("account_id"),
    Play.lead_id == bindparam("lead_id"),
    Play.state == PlayState.RUNNING,
    col(Play.created_at) <= bindparam("received_at", type_=UTCDateTime),
)
