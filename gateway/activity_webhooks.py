"""An activity's webhook deliveries, written in the activity's own transaction (the outbox's
write half).

`on_activity` runs inside whatever transaction records an activity (`gateway.engine.records`,
the opt-out ledger's status changes): if that transaction rolls back, no delivery exists, and if
it commits, every matching subscription is owed one, and its `webhooks.deliver` job (staged
here) goes to Redis. Below the channels, so the opt-out ledger can stage its own status
changes; the webhooks channel delivers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import webhook_policy as policy
from gateway.clock import now
from gateway.db import for_this_transaction
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
from gateway.rows import column_values, fresh, insert_rows
from gateway.webhook_payloads import build_payloads
from gateway.work import WEBHOOK_DELIVER, stage


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
    return fresh(
        WebhookDelivery,
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


_INSERT_DELIVERY = insert(WebhookDelivery.__table__)  # type: ignore[attr-defined]


async def write_activity(session: AsyncSession, activity: Activity) -> None:
    """Write `activity` now and set its id (the order activities are delivered in); the object
    stays out of the session (`insert_row`)."""
    await write_activities(session, [activity])


async def write_activities(session: AsyncSession, activities: Sequence[Activity]) -> None:
    """`write_activity` for several, in one INSERT whatever their count."""
    await insert_rows(session, activities, by="public_id")


# `on_activities`'s read (every activity's account asks it), built once.
_SUBSCRIBED = select(WebhookSubscription).where(
    WebhookSubscription.account_id == bindparam("account_id"),
    WebhookSubscription.enabled == True,  # noqa: E712 - SQL, not Python truth
)


# session.info key (`for_this_transaction`): the enabled subscriptions of each account whose
# activities this transaction recorded. A batch of replies records an activity or more per
# reply, mostly of one account, and nothing that records activities changes subscriptions.
_READ = "gateway.activity_webhooks.subscriptions"


async def _subscriptions(session: AsyncSession, account_id: str) -> Sequence[WebhookSubscription]:
    """The account's enabled subscriptions, read once a transaction."""
    read: dict[str, Sequence[WebhookSubscription]] = for_this_transaction(session, _READ, dict)
    if account_id not in read:
        read[account_id] = (
            await session.exec(_SUBSCRIBED, params={"account_id": account_id})
        ).all()
    return read[account_id]


async def on_activity(
    session: AsyncSession, activity: Activity, phone: str | None = None
) -> list[WebhookDelivery]:
    """`on_activities` for one activity."""
    return await on_activities(session, [activity], phone)


async def on_activities(
    session: AsyncSession, activities: Sequence[Activity], phone: str | None = None
) -> list[WebhookDelivery]:
    """Write a pending delivery per enabled subscription that wants each activity (written by
    `write_activities`): at once, by one Core INSERT, with one read of each account's
    subscriptions a transaction and one of its leads whatever the count (a batch of texts
    records its plays' activities together); the objects returned are not in the session."""
    wanted: list[tuple[WebhookSubscription, Activity]] = []
    for account_id in dict.fromkeys(a.account_id for a in activities):
        subscriptions = await _subscriptions(session, account_id)
        wanted += [
            (s, a)
            for a in activities
            if a.account_id == account_id
            for s in subscriptions
            if wants(s, a)
        ]
    if not wanted:
        return []
    payloads = await build_payloads(session, list({a.public_id: a for _, a in wanted}.values()))
    deliveries = [new_delivery(s, a, payloads[a.public_id], phone) for s, a in wanted]
    await session.exec(_INSERT_DELIVERY, params=[column_values(d) for d in deliveries])
    for subscription_id in dict.fromkeys(s.id for s, _ in wanted):
        stage(session, WEBHOOK_DELIVER, subscription_id)
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
    activity = fresh(
        Activity,
        public_id=new_id("evt"),
        account_id=row.account_id,
        lead_id=lead_id,
        type=ActivityType.EVENT,
        label="opted_out" if opting_out else "opted_in",
        note=f"{row.channel} {row.source}"[:2000],
        created_at=row.received_at,
    )
    await write_activity(session, activity)
    await on_activity(session, activity, row.phone)
    return activity
