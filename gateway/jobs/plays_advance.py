"""The `plays.advance` job: a play's steps whose time has come (a drip's next text, a
re-engagement, the step after a delay), with the due query by which the sweep re-finds them
after a Redis flush. It runs under the lead's contact lock, so a reply and a timed step of the
same lead never interleave.

A text a step queues is gated and claimed in the step's own transaction when this process
sends it (`sms_send.claim_staged`, as `POST /v1/plays` does for a lead's first text): once it
commits, only the request to Twilio and its outcome are left. As a job of its own, the text
was read again, gated and claimed in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.contact_lock import lock_contact, reread
from gateway.db import transaction
from gateway.engine.stepper import run_due
from gateway.job_context import job_context
from gateway.jobs import sms_send
from gateway.models import Account, Lead, Play, PlayState
from gateway.work import PLAY_ADVANCE, job, stage


async def due_plays(
    session: AsyncSession, moment: datetime, limit: int
) -> Sequence[tuple[str, str]]:
    """The sweep's question: running plays whose time has come."""
    query = (
        select(Play.id)
        .where(
            Play.state == PlayState.RUNNING,
            col(Play.paused).is_(False),
            col(Play.due_at) <= moment,
        )
        .order_by(col(Play.due_at))
        .limit(limit)
    )
    return [(PLAY_ADVANCE.job_id(i), i) for i in (await session.exec(query)).all()]


# `advance`'s read: the play with its lead and account (the play's own), built once.
_PLAY_AND_LEAD = (
    select(Play, Lead, Account)
    .join(Lead, col(Lead.id) == col(Play.lead_id))
    .join(Account, col(Account.id) == col(Play.account_id))
    .where(Play.id == bindparam("play_id"), col(Lead.account_id) == col(Play.account_id))
)


@job(PLAY_ADVANCE, due=due_plays, inline=True)
async def advance(ctx: dict[str, Any], play_id: str) -> str:
    """Run a play's due steps (arq job `plays.advance`)."""
    jc = job_context(ctx)
    async with transaction(jc.sessions, brief=True) as session:
        found = (await session.exec(_PLAY_AND_LEAD, params={"play_id": play_id})).first()
        if found is None or found[0].state != PlayState.RUNNING:
            return "not running"
        play, lead, account = found
        await lock_contact(session, play.account_id, lead.phone)
        await reread(session, play)
        queued = await run_due(session, play, lead)
        if play.state == PlayState.RUNNING and not play.paused and play.due_at is not None:
            stage(session, PLAY_ADVANCE, play_id, at=play.due_at)  # its next step
        if queued:
            await sms_send.claim_staged(session, account)
    return f"{len(queued)} queued"
