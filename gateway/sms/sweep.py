"""The cron sweep: every queued message that is due and every stale `sending` row gets a job.

Redis only carries jobs; the database says what is owed. After a Redis flush, a lost enqueue
or a worker killed mid-job, this finds the work again. arq refuses a job id that is already
queued or running, so the sweep never doubles a live job.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlmodel import col, or_, select

from gateway.clock import now
from gateway.job_context import job_context
from gateway.job_results import enqueue_owed
from gateway.models import Message, MessageStatus
from gateway.sms.outbox import SEND_JOB, send_job_id

log = logging.getLogger(__name__)

SWEEP_LIMIT = 2000
STALE_SENDING = timedelta(minutes=2)


async def sweep(ctx: dict[str, Any]) -> int:
    """Enqueue `sms.send` for due work that has no live job; returns how many were enqueued."""
    jc = job_context(ctx)
    moment = now()
    query = (
        select(Message.id)
        .where(
            or_(
                (col(Message.status) == MessageStatus.QUEUED)
                & (col(Message.send_after).is_(None) | (col(Message.send_after) <= moment)),
                (col(Message.status) == MessageStatus.SENDING)
                & (col(Message.attempt_started_at) <= moment - STALE_SENDING),
            )
        )
        .order_by(col(Message.created_at))
        .limit(SWEEP_LIMIT)
    )
    async with jc.sessions() as session:
        due = list((await session.exec(query)).all())
    enqueued = await enqueue_owed(jc.redis, SEND_JOB, [(send_job_id(i), i) for i in due])
    if enqueued:
        log.info("sweep enqueued %d of %d due messages", enqueued, len(due))
    return enqueued
