"""Which deliveries are owed now (the sweep's question of `webhooks.deliver`, and the deliver
job's after a breaker closes), and dead-lettering those past their retry window (the sweep's
housekeeping before it asks).

"Can go now": the subscription is enabled; no earlier delivery of the same play to it is still
owed (in-order delivery); and its breaker is closed, or open with a probe due, in which case
only one delivery per subscription goes (the probe).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from gateway.work import WEBHOOK_DELIVER


def subscription_of_delivery() -> ColumnElement[bool]:
    """The join of a delivery to its subscription, within the delivery's own account."""
    return and_(
        col(WebhookSubscription.id) == col(WebhookDelivery.subscription_id),
        col(WebhookSubscription.account_id) == col(WebhookDelivery.account_id),
    )


async def due_deliveries(
    session: AsyncSession,
    moment: datetime,
    *,
    subscription_id: str | None = None,
    limit: int,
) -> list[str]:
    """Ids of deliveries that may be attempted at `moment`, oldest activity first."""
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        and_(
            col(earlier.subscription_id) == col(WebhookDelivery.subscription_id),
            col(earlier.order_key) == col(WebhookDelivery.order_key),
            col(earlier.status) == DeliveryStatus.PENDING,
            col(earlier.activity_id) < col(WebhookDelivery.activity_id),
        )
    )
    query = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.subscription_id,
            WebhookSubscription.breaker_probe_at,
        )
        .join(WebhookSubscription, subscription_of_delivery())
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            col(WebhookDelivery.next_attempt_at) <= moment,
            col(WebhookSubscription.enabled).is_(True),
            or_(
                col(WebhookSubscription.breaker_probe_at).is_(None),
                col(WebhookSubscription.breaker_probe_at) <= moment,
            ),
            ~blocked,
        )
        .order_by(col(WebhookDelivery.activity_id))
        .limit(limit)
    )
    if subscription_id is not None:
        query = query.where(WebhookDelivery.subscription_id == subscription_id)
    found: list[str] = []
    probing: set[str] = set()
    for delivery_id, sub_id, probe_at in (await session.exec(query)).all():
        if probe_at is not None:  # breaker open, probe due: one delivery is the probe
            if sub_id in probing:
                continue
            probing.add(sub_id)
        found.append(delivery_id)
    return found


async def expire(session: AsyncSession, moment: datetime) -> int:
    """Dead-letter owed deliveries whose retry window has ended (e.g. behind an open breaker)."""
    result = await session.exec(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.status) == DeliveryStatus.PENDING,
            col(WebhookDelivery.expires_at) <= moment,
        )
        .values(
            status=DeliveryStatus.DEAD,
            next_attempt_at=None,
            last_error="retry window ended before the endpoint accepted it",
            updated_at=moment,
        )
    )
    return int(result.rowcount or 0)


async def due(session: AsyncSession, moment: datetime, limit: int) -> Sequence[tuple[str, str]]:
    """The sweep's question: every delivery that may be attempted now."""
    return [
        (WEBHOOK_DELIVER.job_id(i), i) for i in await due_deliveries(session, moment, limit=limit)
    ]
