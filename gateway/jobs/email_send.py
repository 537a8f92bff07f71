"""The `email.send` job: the email channel gates and claims an email (`gateway.email.sender`),
the job hands it to SMTP once, and what the play hears of it (the gate's decision, a failure
for good) goes to the engine in the transaction that records it (`gateway.engine.lifecycle`).

The channel's module docstring says how the job stays idempotent under arq's re-runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import transaction
from gateway.email import sender
from gateway.email.transport import DeliveryError, deliver
from gateway.engine import lifecycle
from gateway.job_context import job_context
from gateway.models import Email, EmailStatus
from gateway.smtp_url import parse_smtp_url
from gateway.work import EMAIL_SEND, job, stage

logger = logging.getLogger(__name__)


async def due(session: AsyncSession, moment: datetime, limit: int) -> Sequence[tuple[str, str]]:
    """The sweep's question: queued emails that are due, and `sending` rows past the grace."""
    query = (
        select(Email.id)
        .where(
            or_(
                (col(Email.status) == EmailStatus.QUEUED)
                & (col(Email.send_after).is_(None) | (col(Email.send_after) <= moment)),
                (col(Email.status) == EmailStatus.SENDING)
                & (col(Email.attempt_started_at) <= moment - sender.IN_FLIGHT_GRACE),
            )
        )
        .order_by(col(Email.created_at))
        .limit(limit)
    )
    return [(EMAIL_SEND.job_id(i), i) for i in (await session.exec(query)).all()]


@job(EMAIL_SEND, due=due)
async def send(ctx: dict[str, Any], email_id: str) -> str:
    """Send (or capture) one queued email (arq job `email.send`); what happened, for the log."""
    jc = job_context(ctx)
    settings, sessions = jc.settings, jc.sessions
    target = parse_smtp_url(settings.smtp_url) if settings.smtp_url else None
    async with transaction(sessions) as session:
        prepared = await sender.prepare(session, settings, email_id, capture=target is None)
        if prepared.decision is not None:
            # A block ends the email's play (the engine decides how); a deferral is logged on it.
            await lifecycle.on_gate_decision(
                session,
                prepared.play_id,
                prepared.decision,
                channel="email",
                step_id=prepared.step_id,
            )
    if isinstance(prepared.result, str):
        return prepared.result
    assert target is not None
    try:
        answer = await deliver(target, prepared.result)
    except DeliveryError as exc:
        return await _failed(ctx, email_id, exc)
    await sender.mark_sent(sessions, email_id)
    logger.info("email sent email=%s server=%s", email_id, answer[:100])
    return "sent"


async def _failed(ctx: dict[str, Any], email_id: str, exc: DeliveryError) -> str:
    """A transient error waits for the next try on the schedule; a permanent one (or the last
    try) fails the email, and the engine decides what its play does (`on_failure`)."""
    jc = job_context(ctx)
    async with transaction(jc.sessions) as session:
        failure = await sender.record_failure(session, email_id, exc)
        if failure.email is None:
            return "not sending"
        if failure.retry_at is None:
            await lifecycle.on_email_failed(session, failure.email)
        else:
            stage(session, EMAIL_SEND, email_id, at=failure.retry_at)
    if failure.retry_at is not None:
        logger.warning(
            "email retry email=%s at=%s: %s", email_id, failure.retry_at.isoformat(), exc
        )
        return f"retry at {failure.retry_at.isoformat()}"
    logger.warning("email failed email=%s code=%s", email_id, exc.code)
    return f"failed: {exc.code}"
