"""Successful deliveries recorded together: one transaction for all the 2xx answers a process
got while the previous such transaction ran (group commit).

A delivery's POST takes a millisecond against a nearby receiver; recording it took a write
transaction of its own (BEGIN, the delivery's UPDATE, the subscription's health, the play's
next activity, COMMIT), and on SQLite a process's writers take turns (gateway/db.py). Here
every success waiting when a turn comes is written in one transaction: one executemany UPDATE,
one health reset per subscription, and a read per play of what it owes next. On SQLite a worker
delivered 197-199/s against 147-161 before (bench/RESULTS.md §15).

Each delivery's job waits for the transaction that holds its success, so a job that returns
has its delivery recorded, as before. A process that dies before that commit leaves the
delivery pending and it is sent again (at-least-once, as for a crash between the POST and the
record; receivers deduplicate on the event id). If the grouped transaction fails, each success
is recorded again in a transaction of its own, so one bad row cannot take the others with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from weakref import WeakKeyDictionary

from sqlalchemy import bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from gateway.webhooks.due import due_deliveries
from gateway.work import WEBHOOK_DELIVER, stage
from gateway.work.sweep import SWEEP_LIMIT

log = logging.getLogger(__name__)

# The most successes one transaction records: its statements stay short on SQLite's one writer.
MAX_GROUP = 200


@dataclass(frozen=True)
class Success:
    """A 2xx answer to record, in plain values (no ORM object crosses sessions)."""

    delivery_id: str
    account_id: str
    subscription_id: str
    order_key: str | None
    probing: bool  # the subscription's breaker was open: this was its probe
    moment: datetime
    status_code: int | None
    excerpt: str | None
    error: str | None


@dataclass
class _Group:
    """The successes of one session factory waiting for their transaction."""

    loop: asyncio.AbstractEventLoop
    waiting: list[tuple[Success, asyncio.Future[DeliveryStatus]]] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None  # the task writing them, while one is


_GROUPS: WeakKeyDictionary[SessionFactory, _Group] = WeakKeyDictionary()


async def record(sessions: SessionFactory, success: Success) -> DeliveryStatus:
    """Record `success`, with the others waiting; the delivery's status after it (`delivered`,
    or what another hand made of it meanwhile: replayed, cancelled)."""
    loop = asyncio.get_running_loop()
    group = _GROUPS.get(sessions)
    if group is None or group.loop is not loop:
        group = _GROUPS[sessions] = _Group(loop)
    done: asyncio.Future[DeliveryStatus] = loop.create_future()
    group.waiting.append((success, done))
    if group.writer is None:
        # The writer is a task of its own: a job cancelled while it waits cannot cancel the
        # transaction that holds the other jobs' successes.
        group.writer = loop.create_task(_write_all(sessions, group))
    return await asyncio.shield(done)


async def _write_all(sessions: SessionFactory, group: _Group) -> None:
    batch: list[tuple[Success, asyncio.Future[DeliveryStatus]]] = []
    try:
        while group.waiting:
            batch, group.waiting = group.waiting[:MAX_GROUP], group.waiting[MAX_GROUP:]
            await _settle(sessions, batch)
    finally:
        group.writer = None
        for _, done in batch:  # cancelled mid-batch (the loop is closing): no job waits forever
            if not done.done():
                done.set_exception(RuntimeError("recording the delivery was cancelled"))


async def _settle(
    sessions: SessionFactory, batch: list[tuple[Success, asyncio.Future[DeliveryStatus]]]
) -> None:
    """One transaction for the batch; one each if that fails. Every future gets an answer."""
    try:
        statuses = await _in_one(sessions, [success for success, _ in batch])
    except Exception:
        log.exception("recording %d webhook deliveries together failed: one by one", len(batch))
        for success, done in batch:
            try:
                alone = await _in_one(sessions, [success])
            except Exception as exc:
                done.set_exception(exc)
            else:
                done.set_result(alone[success.delivery_id])
        return
    for success, done in batch:
        done.set_result(statuses[success.delivery_id])


async def _in_one(sessions: SessionFactory, successes: list[Success]) -> dict[str, DeliveryStatus]:
    # Brief unless a probe got through: that releases everything the breaker held back.
    brief = not any(success.probing for success in successes)
    async with transaction(sessions, brief=brief) as session:
        params = [
            {
                "delivery_id": s.delivery_id,
                "moment": s.moment,
                "status_code": s.status_code,
                "excerpt": s.excerpt,
                "error": s.error,
            }
            for s in successes
        ]
        connection = await session.connection()
        moved = await connection.execute(_DELIVERED, params)
        statuses = {s.delivery_id: DeliveryStatus.DELIVERED for s in successes}
        # PostgreSQL's driver does not count an executemany's rows (-1): ask then, too.
        if moved.rowcount != len(successes):
            # Some were settled meanwhile (replayed, cancelled): say what they are, and leave
            # them be.
            statuses.update(await _statuses(session, list(statuses)))
        recorded = [s for s in successes if statuses[s.delivery_id] == DeliveryStatus.DELIVERED]
        await _healthy(session, recorded)
        for success in recorded:
            if success.probing:
                # The probe got through: the breaker is closed, everything it held back goes.
                held = await due_deliveries(
                    session,
                    success.moment,
                    subscription_id=success.subscription_id,
                    limit=SWEEP_LIMIT,
                )
                for delivery_id in held:
                    stage(session, WEBHOOK_DELIVER, delivery_id)
        for delivery_id in await following(session, recorded):
            stage(session, WEBHOOK_DELIVER, delivery_id)
    return statuses


async def _statuses(session: AsyncSession, ids: list[str]) -> dict[str, DeliveryStatus]:
    rows = await session.exec(
        select(WebhookDelivery.id, WebhookDelivery.status).where(col(WebhookDelivery.id).in_(ids))
    )
    found = {delivery_id: DeliveryStatus(status) for delivery_id, status in rows.all()}
    return {i: found.get(i, DeliveryStatus.CANCELLED) for i in ids}


async def _healthy(session: AsyncSession, recorded: list[Success]) -> None:
    """A success resets its subscription's failure count and closes its breaker (no write while
    healthy); once per subscription."""
    latest: dict[str, datetime] = {}
    for success in recorded:
        latest[success.subscription_id] = success.moment
    if latest:
        params = [{"subscription_id": s, "moment": m} for s, m in latest.items()]
        connection = await session.connection()
        await connection.execute(_HEALTHY, params)


async def following(
    session: AsyncSession, settled: Sequence[Success | WebhookDelivery]
) -> list[str]:
    """These deliveries are settled: for each play among them, the next owed activity to the
    same subscription goes now if it is due (one not due yet goes at its time, and the later
    ones wait behind it). A read per play, on the index that orders its activities (one read
    for all of them, by row values, scanned every pending delivery on SQLite)."""
    keys = {
        (s.account_id, s.subscription_id, s.order_key) for s in settled if s.order_key is not None
    }
    moment = now()
    found = []
    for account_id, subscription_id, order_key in sorted(keys):
        params = {
            "account_id": account_id,
            "subscription_id": subscription_id,
            "order_key": order_key,
        }
        first = (await session.exec(_FOLLOWING, params=params)).first()
        if first is not None and (first[1] is None or first[1] <= moment):
            found.append(first[0])
    return found


# `following`'s read, built once. Its time is compared after: with `next_attempt_at <= ?` in
# the WHERE, SQLite's planner (which has no statistics) took the index of due deliveries and
# read every pending, due delivery of every subscription for each one settled.
_FOLLOWING = (
    select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
    .where(
        WebhookDelivery.account_id == bindparam("account_id"),
        WebhookDelivery.subscription_id == bindparam("subscription_id"),
        WebhookDelivery.order_key == bindparam("order_key"),
        WebhookDelivery.status == DeliveryStatus.PENDING,
    )
    .order_by(col(WebhookDelivery.activity_id))
    .limit(1)
)


# The UPDATE of a delivered delivery, built once: a Core UPDATE of the table (the transaction
# holds no delivery object for the ORM to sync), run for the whole batch at once.
_DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
_DELIVERED = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id == bindparam("delivery_id"),
        _DELIVERIES.c.status == DeliveryStatus.PENDING,
    )
    .values(
        attempts=_DELIVERIES.c.attempts + 1,
        total_attempts=_DELIVERIES.c.total_attempts + 1,
        last_attempt_at=bindparam("moment"),
        updated_at=bindparam("moment"),
        last_status_code=bindparam("status_code"),
        last_response=bindparam("excerpt"),
        last_error=bindparam("error"),
        status=DeliveryStatus.DELIVERED,
        delivered_at=bindparam("moment"),
        next_attempt_at=None,
    )
)

# The health reset after a success, built once, as `_DELIVERED` is.
_SUBSCRIPTIONS = WebhookSubscription.__table__  # type: ignore[attr-defined]
_HEALTHY = (
    update(_SUBSCRIPTIONS)
    .where(
        _SUBSCRIPTIONS.c.id == bindparam("subscription_id"),
        (_SUBSCRIPTIONS.c.consecutive_failures != 0)
        | _SUBSCRIPTIONS.c.breaker_probe_at.is_not(None),
    )
    .values(
        consecutive_failures=0,
        breaker_opened_at=None,
        breaker_probe_at=None,
        updated_at=bindparam("moment"),
    )
)
