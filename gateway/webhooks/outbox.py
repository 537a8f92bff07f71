"""The outbox's jobs: the delivery rows an activity staged in its own transaction
(`gateway.activity_webhooks.on_activity`) get their `webhooks.deliver` job.

After the commit, a worker process enqueues the new deliveries at once (SQLAlchemy
`after_commit`, only in the loop of a registered worker); anywhere else the `webhooks.sweep`
cron finds them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime

from arq.connections import ArqRedis
from sqlalchemy import event
from sqlalchemy.orm import Session

from gateway.activity_webhooks import PENDING_KEY
from gateway.models import WebhookDelivery

log = logging.getLogger(__name__)

DELIVER_JOB = "webhooks.deliver"
# (loop, redis) of the worker running in this process, for the after-commit kick.
_kicker: tuple[asyncio.AbstractEventLoop, ArqRedis] | None = None
_tasks: set[asyncio.Task[None]] = set()


def deliver_job_id(delivery_id: str) -> str:
    return f"webhook:{delivery_id}"


async def enqueue(redis: ArqRedis, delivery_ids: Iterable[str]) -> int:
    """Enqueue the deliver job of each delivery (refused by arq while one is live)."""
    enqueued = 0
    for delivery_id in delivery_ids:
        try:
            job = await redis.enqueue_job(
                DELIVER_JOB, delivery_id, _job_id=deliver_job_id(delivery_id)
            )
        except Exception:  # Redis down: the rows are committed; the sweep finds them
            log.warning("could not enqueue delivery %s; the sweep will", delivery_id, exc_info=True)
            return enqueued
        enqueued += job is not None
    return enqueued


def register(redis: ArqRedis) -> None:
    """Kick new deliveries from this loop's commits (a worker calls this on startup)."""
    global _kicker  # noqa: PLW0603 - one worker per loop owns the kick
    _kicker = (asyncio.get_running_loop(), redis)


def unregister(redis: ArqRedis) -> None:
    global _kicker  # noqa: PLW0603
    if _kicker is not None and _kicker[1] is redis:
        _kicker = None


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    ids: list[str] | None = session.info.pop(PENDING_KEY, None)
    if not ids or _kicker is None:
        return
    loop, redis = _kicker
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return
    if running is not loop:
        return  # another loop (a web thread in tests): the sweep picks these up
    task = loop.create_task(_kick(redis, ids))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


async def _kick(redis: ArqRedis, ids: list[str]) -> None:
    await enqueue(redis, ids)


async def flush_kicks() -> None:
    """Wait for kicks in flight (a worker's shutdown, tests)."""
    if _tasks:
        await asyncio.gather(*list(_tasks), return_exceptions=True)


def due(moment: datetime, delivery: WebhookDelivery) -> bool:
    return delivery.next_attempt_at is None or delivery.next_attempt_at <= moment
