"""Sending activities again: one delivery, or everything a subscription wanted in a time range
(after the customer's outage). A replay sends the stored payload with the same event id."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import webhook_policy as policy
from gateway.activity_webhooks import new_delivery, wants
from gateway.clock import now
from gateway.errors import ApiError
from gateway.models import Activity, DeliveryStatus, WebhookDelivery, WebhookSubscription
from gateway.webhook_payloads import build_payload

# One replay request re-queues at most this many activities; narrow the range for more.
MAX_REPLAY = 10_000


def requeue(delivery: WebhookDelivery, moment: datetime) -> None:
    """Owed again from now, with a fresh retry schedule; its history counters stay."""
    if delivery.status != DeliveryStatus.PENDING:
        delivery.replays += 1
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = moment
    delivery.expires_at = moment + policy.retry_window()
    delivery.updated_at = moment


async def replay_range(
    session: AsyncSession,
    subscription: WebhookSubscription,
    since: datetime,
    until: datetime | None,
) -> list[str]:
    """Queue every activity of [since, until) the subscription wants; ids of the deliveries.

    Activities that never had a delivery to it (it was disabled, or created later) get one now.
    """
    query = select(Activity).where(
        Activity.account_id == subscription.account_id, col(Activity.created_at) >= since
    )
    if until is not None:
        query = query.where(col(Activity.created_at) < until)
    if subscription.labels is not None:
        query = query.where(col(Activity.label).in_(subscription.labels))
    if subscription.playbook_id is not None:
        query = query.where(Activity.playbook_id == subscription.playbook_id)
    activities = [
        a
        for a in (await session.exec(query.order_by(col(Activity.id)).limit(MAX_REPLAY + 1))).all()
        if wants(subscription, a)
    ]
    if len(activities) > MAX_REPLAY:
        raise ApiError(
            422,
            "too_many",
            f"more than {MAX_REPLAY} activities in the range: replay it in smaller pieces",
            "until",
        )
    ids = [a.id for a in activities if a.id is not None]
    existing = {
        d.activity_id: d
        for d in (
            await session.exec(
                select(WebhookDelivery).where(
                    WebhookDelivery.account_id == subscription.account_id,
                    WebhookDelivery.subscription_id == subscription.id,
                    col(WebhookDelivery.activity_id).in_(ids),
                )
            )
        ).all()
    }
    moment = now()
    queued: list[str] = []
    for activity in activities:
        assert activity.id is not None
        delivery = existing.get(activity.id)
        if delivery is None:
            delivery = new_delivery(subscription, activity, await build_payload(session, activity))
        else:
            requeue(delivery, moment)
        session.add(delivery)
        queued.append(delivery.id)
    await session.flush()
    return queued
