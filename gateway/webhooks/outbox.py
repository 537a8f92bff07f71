"""The outbox: delivery rows written in the activity's own transaction, and their jobs.

`on_activity` runs inside whatever transaction records an activity; if that transaction rolls
back, no delivery exists, and if it commits, every matching subscription is owed one. After the
commit, a worker process enqueues the new deliveries at once (SQLAlchemy `after_commit`, only in
the loop of a registered worker); anywhere else the `webhooks.sweep` cron finds them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.ids import new_id
from gateway.models import (
    Activity,
    ActivityType,
    DeliveryStatus,
    Lead,
    LedgerEvent,
    OptOutEvent,
    WebhookDelivery,
    WebhookSubscription,
)
from gateway.webhooks import policy
from gateway.webhooks.payloads import build_payload

log = logging.getLogger(__name__)

DELIVER_JOB = "webhooks.deliver"
_PENDING_KEY = "webhook_deliveries"
# (loop, redis) of the worker running in this process, for the after-commit kick.
_kicker: tuple[asyncio.AbstractEventLoop, ArqRedis] | None = None
_tasks: set[asyncio.Task[None]] = set()


def deliver_job_id(delivery_id: str) -> str:
    return f"webhook:{delivery_id}"


def wants(subscription: WebhookSubscription, activity: Activity) -> bool:
    """Whether `subscription` is owed `activity` (labels and playbook filter)."""
    if subscription.labels is not None and activity.label not in subscription.labels:
        return False
    return subscription.playbook_id is None or subscription.playbook_id == activity.playbook_id


def order_key(activity: Activity, phone: str | None = None) -> str | None:
    """What a delivery keeps its order within: the play, else the lead, else the phone."""
    if activity.play_id is not None:
        return activity.play_id
    if activity.lead_id is not None:
        return f"lead:{activity.lead_id}"
    return f"phone:{phone}" if phone else None


def new_delivery(
    subscription: WebhookSubscription,
    activity: Activity,
    payload: dict[str, Any],
    phone: str | None = None,
) -> WebhookDelivery:
    assert activity.id is not None
    moment = now()
    return WebhookDelivery(
        id=new_id("dlv"),
        account_id=activity.account_id,
        subscription_id=subscription.id,
        activity_id=activity.id,
        event_id=activity.public_id,
        order_key=order_key(activity, phone),
        label=activity.label,
        status=DeliveryStatus.PENDING,
        payload=payload,
        next_attempt_at=moment,
        expires_at=moment + policy.retry_window(),
    )


async def on_activity(
    session: AsyncSession, activity: Activity, phone: str | None = None
) -> list[WebhookDelivery]:
    """Write a pending delivery per enabled subscription that wants `activity` (flushed)."""
    subscriptions = (
        await session.exec(
            select(WebhookSubscription).where(
                WebhookSubscription.account_id == activity.account_id,
                WebhookSubscription.enabled == True,  # noqa: E712 - SQL, not Python truth
            )
        )
    ).all()
    wanted = [s for s in subscriptions if wants(s, activity)]
    if not wanted:
        return []
    if activity.id is None:
        await session.flush()
    payload = await build_payload(session, activity)
    deliveries = [new_delivery(s, activity, payload, phone) for s in wanted]
    session.add_all(deliveries)
    await session.flush()
    session.info.setdefault(_PENDING_KEY, []).extend(d.id for d in deliveries)
    return deliveries


async def on_ledger_event(session: AsyncSession, row: OptOutEvent) -> Activity | None:
    """An opt-out or opt-in that changed the phone's status becomes an activity without a play
    (`opted_out` / `opted_in`), with the account's lead for the phone if there is one."""
    previous = (
        await session.exec(
            select(OptOutEvent.event)
            .where(
                OptOutEvent.account_id == row.account_id,
                OptOutEvent.phone == row.phone,
                OptOutEvent.id < row.id,  # type: ignore[operator]
            )
            .order_by(OptOutEvent.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
    ).first()
    opting_out = row.event == LedgerEvent.OPT_OUT
    if previous == row.event or (previous is None and not opting_out):
        return None  # a repeated STOP (or START while subscribed) changes nothing
    lead_id = (
        await session.exec(
            select(Lead.id).where(Lead.account_id == row.account_id, Lead.phone == row.phone)
        )
    ).first()
    activity = Activity(
        public_id=new_id("evt"),
        account_id=row.account_id,
        lead_id=lead_id,
        type=ActivityType.EVENT,
        label="opted_out" if opting_out else "opted_in",
        note=f"{row.channel} {row.source}"[:2000],
        created_at=row.received_at,
    )
    session.add(activity)
    await session.flush()
    await on_activity(session, activity, row.phone)
    return activity


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
    ids: list[str] | None = session.info.pop(_PENDING_KEY, None)
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
    session.info.pop(_PENDING_KEY, None)


async def _kick(redis: ArqRedis, ids: list[str]) -> None:
    await enqueue(redis, ids)


async def flush_kicks() -> None:
    """Wait for kicks in flight (a worker's shutdown, tests)."""
    if _tasks:
        await asyncio.gather(*list(_tasks), return_exceptions=True)


def due(moment: datetime, delivery: WebhookDelivery) -> bool:
    return delivery.next_attempt_at is None or delivery.next_attempt_at <= moment
