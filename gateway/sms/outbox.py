"""Queuing outbound texts: the row first (the database is the source of truth), then its job."""

from __future__ import annotations

import logging
from datetime import datetime

from arq.connections import ArqRedis
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now, stamp
from gateway.ids import new_id
from gateway.models import Direction, Message, MessageEvent, MessageStatus, Purpose
from gateway.sms import segments

log = logging.getLogger(__name__)

SEND_JOB = "sms.send"
# Work due further out than this is left to the sweep (every 10 s): Redis holds no long-dated
# jobs, so a flush loses nothing and a burst worker in tests never waits for tomorrow.
MAX_DEFER_SECONDS = 30.0


def send_job_id(message_id: str) -> str:
    return f"sms:{message_id}"


async def queue_message(
    session: AsyncSession,
    *,
    account_id: str,
    phone: str,
    body: str,
    purpose: Purpose,
    reason: str,
    lead_id: str | None = None,
    send_after: datetime | None = None,
    ledger_event_id: int | None = None,
    retry_of: str | None = None,
) -> Message:
    """A new outbound message in state `queued`; call `enqueue_send` after the commit."""
    message = Message(
        id=new_id("msg"),
        account_id=account_id,
        lead_id=lead_id,
        lead_phone=phone,
        direction=Direction.OUTBOUND,
        to_number=phone,
        body=body,
        purpose=purpose,
        reason=reason,
        status=MessageStatus.QUEUED,
        num_segments=segments.count(body).count,
        send_after=send_after,
        ledger_event_id=ledger_event_id,
        retry_of=retry_of,
        created_at=stamp(),
    )
    session.add(message)
    session.add(MessageEvent(message_id=message.id, status=MessageStatus.QUEUED, detail=reason))
    await session.flush()
    return message


async def enqueue_send(redis: ArqRedis, message_id: str, at: datetime | None = None) -> None:
    """Ask the worker to send (at `at`). Losing this enqueue loses nothing: the sweep finds
    every queued message that is due and has no live job."""
    job_id = send_job_id(message_id)
    # arq waits by the wall clock; a relative delay keeps that right under a test's clock too.
    delay = (at - now()).total_seconds() if at is not None else 0.0
    if delay > MAX_DEFER_SECONDS:
        return
    if delay > 0:
        job_id = f"{job_id}@{int(at.timestamp()) if at else 0}"
    try:
        await redis.enqueue_job(
            SEND_JOB, message_id, _job_id=job_id, _defer_by=delay if delay > 0 else None
        )
    except Exception:  # Redis down: the row is committed and the sweep will pick it up
        log.warning("could not enqueue %s; the sweep will", job_id, exc_info=True)
