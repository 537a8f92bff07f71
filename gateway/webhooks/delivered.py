"""Successful deliveries recorded together: one transaction for all the 2xx answers a process
got while the previous such transaction ran (group commit).

A delivery's POST takes a millisecond against a nearby receiver; recording it took a write
transaction of its own (BEGIN, the delivery's UPDATE, the subscription's health, COMMIT), and
on SQLite a process's writers take turns (gateway/db.py). Here every success waiting when a
turn comes is written in one transaction: one executemany UPDATE and one health reset per
subscription. On SQLite a worker
delivered 197-199/s against 147-161 before (bench/RESULTS.md §15).

Each delivery's attempt waits for the transaction that holds its success, so a run that
returns has its deliveries recorded. A process that dies before that commit leaves the
delivery pending, claimed until its lease runs out, and it is sent again (at-least-once, as for
a crash between the POST and the record; receivers deduplicate on the event id). If the
grouped transaction fails, each success is recorded again in a transaction of its own, so one
bad row cannot take the others with it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from weakref import WeakKeyDictionary

from sqlalchemy import bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import SessionFactory, transaction, unindexed
from gateway.models import DeliveryStatus, WebhookDelivery, WebhookSubscription

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
    """Record `successes` in one transaction: one UPDATE for each distinct answer among them
    (most often one, an endpoint answers alike), which returns the deliveries it moved; the
    others were settled meanwhile (replayed, cancelled) and keep what they are."""
    answers: dict[tuple[int | None, str | None, str | None], list[Success]] = {}
    for s in successes:
        answers.setdefault((s.status_code, s.excerpt, s.error), []).append(s)
    async with transaction(sessions, brief=True) as session:
        connection = await session.connection()
        moved: set[str] = set()
        for (status_code, excerpt, error), alike in answers.items():
            params = {
                "ids": [s.delivery_id for s in alike],
                "moment": max(s.moment for s in alike),
                "status_code": status_code,
                "excerpt": excerpt,
                "error": error,
            }
            moved.update((await connection.execute(_DELIVERED, params)).scalars())
        statuses = {s.delivery_id: DeliveryStatus.DELIVERED for s in successes}
        if len(moved) != len(successes):
            statuses.update(await _statuses(session, [i for i in statuses if i not in moved]))
        recorded = [s for s in successes if s.delivery_id in moved]
        # What the breaker held back, or a play's next activity, needs no job of its own: the
        # run that sent these claims again once they are recorded.
        await _healthy(session, recorded)
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


# The UPDATE of delivered deliveries that got the same answer, built once: a Core UPDATE of the
# table (the transaction holds no delivery object for the ORM to sync) that returns the ids it
# moved, so no read asks which were settled meanwhile.
_DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
_DELIVERED = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id.in_(bindparam("ids", expanding=True)),
        unindexed(_DELIVERIES.c.status) == DeliveryStatus.PENDING,
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
    .returning(_DELIVERIES.c.id)
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
