"""The `webhooks.deliver` job: one attempt of one delivery, and what its outcome means.

2xx: delivered. 410: the endpoint is gone; the subscription is disabled and what it was owed
is cancelled. A URL that can never work (refused by its text, e.g. a stored URL with a line
break): dead-lettered at once, with the reason. Anything else (other statuses, timeouts, refused
addresses): retried on `policy.RETRY_SCHEDULE` with jitter, Retry-After as a floor, then
dead-lettered.

Idempotent under arq's re-runs: a delivery that is no longer pending is left alone; a crash
after the POST and before the record sends the same event id again (at-least-once; receivers
deduplicate on `Gateway-Event-Id`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from arq import Retry
from sqlalchemy import bindparam, update
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import webhook_policy as policy
from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.job_context import job_context
from gateway.models import DeliveryStatus, WebhookDelivery, WebhookPolicy, WebhookSubscription
from gateway.webhooks import concurrency, delivered, due, sending, signing
from gateway.webhooks.due import subscription_of_delivery
from gateway.work import WEBHOOK_DELIVER, job, kinds, stage

log = logging.getLogger(__name__)

# Clock skew between the worker that scheduled a retry and the one running it.
DUE_TOLERANCE = timedelta(seconds=1)


@dataclass(frozen=True)
class Recorded:
    status: DeliveryStatus
    retry_in: float | None = None


# Waits for a slot or an earlier delivery are arq Retries; the row counts real attempts.
@job(WEBHOOK_DELIVER, due=due.due, tidy=due.expire, max_tries=10_000)
async def deliver(ctx: dict[str, Any], delivery_id: str) -> str:
    """Attempt one delivery (arq job `webhooks.deliver`); returns what happened, for the log."""
    jc = job_context(ctx)
    sessions, redis = jc.sessions, jc.redis
    moment = now()
    async with sessions() as session:
        loaded = await _load(session, delivery_id)
    if loaded is None:
        return "not pending"
    delivery, subscription, allow_private, waiting_on = loaded
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > moment + DUE_TOLERANCE:
        return "not due"
    if not subscription.enabled or delivery.expires_at <= moment:
        final = DeliveryStatus.CANCELLED if not subscription.enabled else DeliveryStatus.DEAD
        await _close_unsent(sessions, delivery, final)
        return str(final)
    if waiting_on is not None:
        # An earlier activity of the same play is still owed: it goes first. Soon-due: poll;
        # otherwise its own completion (or the sweep) brings this one back. With the breaker
        # open the earlier one waits for the probe, however due it is: polling would spin.
        soon = waiting_on <= moment + timedelta(seconds=kinds.MAX_DEFER_SECONDS)
        if soon and subscription.breaker_probe_at is None:
            raise Retry(defer=policy.BUSY_RETRY_SECONDS)
        return "waiting for an earlier activity of the play"
    token = await concurrency.acquire(redis, subscription.id)
    if token is None:
        raise Retry(defer=policy.BUSY_RETRY_SECONDS)
    try:
        if subscription.breaker_probe_at is not None and not await _claim_probe(
            sessions, subscription, moment
        ):
            return "breaker open"
        outcome = await sending.post(
            jc.http,
            subscription.url,
            delivery.payload,
            signing_secrets=signing.valid_secrets(subscription, now()),
            delivery_id=delivery.id,
            https_required=jc.settings.environment != "development",
            allow_private=allow_private,
        )
    finally:
        await concurrency.release(redis, subscription.id, token)
    recorded = await _record(sessions, delivery, subscription, outcome)
    log.info(
        "webhook delivery=%s event=%s subscription=%s account=%s: %s -> %s",
        delivery.id,
        delivery.event_id,
        subscription.id,
        delivery.account_id,
        sending.describe(outcome),
        recorded.status,
    )
    if recorded.retry_in is not None and recorded.retry_in <= kinds.MAX_DEFER_SECONDS:
        raise Retry(defer=recorded.retry_in)
    return f"{sending.describe(outcome)}: {recorded.status}"


# `_load`'s statement, built once: building it (an aliased, correlated subquery) cost more CPU
# than running it.
_earlier = aliased(WebhookDelivery)
_PENDING = (
    select(
        WebhookDelivery,
        WebhookSubscription,
        WebhookPolicy.allow_private_addresses,
        select(_earlier.id)
        .where(
            col(_earlier.account_id) == col(WebhookDelivery.account_id),
            col(_earlier.subscription_id) == col(WebhookDelivery.subscription_id),
            col(_earlier.order_key) == col(WebhookDelivery.order_key),
            col(_earlier.status) == DeliveryStatus.PENDING,
            col(_earlier.activity_id) < col(WebhookDelivery.activity_id),
        )
        .order_by(col(_earlier.activity_id))
        .limit(1)
        .correlate(WebhookDelivery)
        .scalar_subquery(),
    )
    .join(WebhookSubscription, subscription_of_delivery())
    .outerjoin(WebhookPolicy, col(WebhookPolicy.account_id) == col(WebhookDelivery.account_id))
    .where(
        col(WebhookDelivery.id) == bindparam("delivery_id"),
        col(WebhookDelivery.status) == DeliveryStatus.PENDING,
    )
)


async def _load(
    session: AsyncSession, delivery_id: str
) -> tuple[WebhookDelivery, WebhookSubscription, bool, datetime | None] | None:
    """In one round trip: the pending delivery, its subscription (same account), whether the
    account may reach private addresses, and when the earliest still-owed delivery of an
    earlier activity of the same play is due (None when nothing earlier is owed)."""
    row = (await session.exec(_PENDING, params={"delivery_id": delivery_id})).first()
    if row is None:
        return None
    delivery, subscription, allow_private, earlier_id = row
    waiting_on: datetime | None = None
    if earlier_id is not None:
        owed = await session.get(WebhookDelivery, earlier_id)
        waiting_on = (owed.next_attempt_at if owed else None) or now()
    return delivery, subscription, bool(allow_private), waiting_on


async def _claim_probe(
    sessions: SessionFactory, subscription: WebhookSubscription, moment: datetime
) -> bool:
    """Breaker open: whoever moves the probe time forward sends the one probe."""
    async with transaction(sessions) as session:
        claimed = await session.exec(
            update(WebhookSubscription)
            .where(
                col(WebhookSubscription.id) == subscription.id,
                col(WebhookSubscription.breaker_probe_at).is_not(None),
                col(WebhookSubscription.breaker_probe_at) <= moment,
            )
            .values(breaker_probe_at=moment + policy.BREAKER_PROBE_EVERY)
        )
    return claimed.rowcount == 1


async def _close_unsent(
    sessions: SessionFactory, delivery: WebhookDelivery, status: DeliveryStatus
) -> None:
    """Settle a delivery that will not be sent; what may go after it goes."""
    why = "subscription disabled" if status == DeliveryStatus.CANCELLED else "retry window ended"
    async with transaction(sessions) as session:
        await session.exec(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery.id,
                col(WebhookDelivery.status) == DeliveryStatus.PENDING,
            )
            .values(status=status, next_attempt_at=None, last_error=why, updated_at=now())
        )
        await _stage_following(session, delivery)


async def _record(
    sessions: SessionFactory,
    delivery: WebhookDelivery,
    subscription: WebhookSubscription,
    outcome: sending.Outcome,
) -> Recorded:
    """Write the attempt's outcome onto the delivery and the subscription's health.

    A success (the common case) is recorded together with the process's other successes of the
    moment (gateway/webhooks/delivered.py). A failure locks the subscription row only for a 410
    (rare); its failure counter moves by atomic UPDATEs, so deliveries to one busy subscription
    don't queue on its row.
    """
    moment = now()
    if outcome.delivered:
        success = delivered.Success(
            delivery_id=delivery.id,
            account_id=delivery.account_id,
            subscription_id=subscription.id,
            order_key=delivery.order_key,
            probing=subscription.breaker_probe_at is not None,
            moment=moment,
            status_code=outcome.status_code,
            excerpt=outcome.excerpt,
            error=outcome.error,
        )
        return Recorded(await delivered.record(sessions, success))
    # Brief unless the endpoint is gone: that cancels everything owed to it.
    async with transaction(sessions, brief=not outcome.gone) as session:
        locked = await session.get(
            WebhookSubscription, subscription.id, with_for_update=outcome.gone
        )
        counted = (
            await session.exec(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.id) == delivery.id,
                    col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                )
                .values(
                    attempts=col(WebhookDelivery.attempts) + 1,
                    total_attempts=col(WebhookDelivery.total_attempts) + 1,
                    last_attempt_at=moment,
                    updated_at=moment,
                    last_status_code=outcome.status_code,
                    last_response=outcome.excerpt,
                    last_error=outcome.error,
                )
                .returning(col(WebhookDelivery.attempts))
            )
        ).first()
        if locked is None or counted is None:
            return Recorded(await _status(session, delivery.id))
        attempts = int(counted[0])
        if outcome.gone:
            await _settle(session, delivery.id, DeliveryStatus.CANCELLED, moment)
            await _disable(session, locked, moment)
            return Recorded(DeliveryStatus.CANCELLED)
        await _failed(session, locked, moment, outcome.retry_after)
        delay = None if outcome.permanent else policy.retry_delay(attempts, outcome.retry_after)
        if delay is None:
            end = (
                "not retried: the URL can never work" if outcome.permanent else "retries exhausted"
            )
            why = f"{sending.describe(outcome)}; {end}"[:500]
            await _settle(session, delivery.id, DeliveryStatus.DEAD, moment, why)
            await _stage_following(session, delivery)
            return Recorded(DeliveryStatus.DEAD)
        await session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == delivery.id)
            .values(next_attempt_at=moment + timedelta(seconds=delay))
        )
        return Recorded(DeliveryStatus.PENDING, retry_in=delay)


async def _status(session: AsyncSession, delivery_id: str) -> DeliveryStatus:
    found = await session.get(WebhookDelivery, delivery_id)
    return found.status if found is not None else DeliveryStatus.CANCELLED


async def _settle(
    session: AsyncSession,
    delivery_id: str,
    status: DeliveryStatus,
    moment: datetime,
    why: str | None = None,
) -> None:
    values: dict[str, Any] = {"status": status, "next_attempt_at": None, "updated_at": moment}
    if why is not None:
        values["last_error"] = why
    await session.exec(
        update(WebhookDelivery).where(col(WebhookDelivery.id) == delivery_id).values(**values)
    )


async def _failed(
    session: AsyncSession,
    subscription: WebhookSubscription,
    moment: datetime,
    retry_after: float | None,
) -> None:
    """Count a failure; the one that reaches BREAKER_THRESHOLD opens the breaker."""
    counted = await session.exec(
        update(WebhookSubscription)
        .where(col(WebhookSubscription.id) == subscription.id)
        .values(
            consecutive_failures=col(WebhookSubscription.consecutive_failures) + 1,
            updated_at=moment,
        )
        .returning(col(WebhookSubscription.consecutive_failures))
    )
    failures = int(counted.scalar_one())
    if failures < policy.BREAKER_THRESHOLD:
        return
    wait = max(policy.BREAKER_PROBE_EVERY.total_seconds(), retry_after or 0.0)
    opened = await session.exec(
        update(WebhookSubscription)
        .where(
            col(WebhookSubscription.id) == subscription.id,
            col(WebhookSubscription.breaker_probe_at).is_(None),
        )
        .values(breaker_opened_at=moment, breaker_probe_at=moment + timedelta(seconds=wait))
    )
    if opened.rowcount == 1:
        log.warning(
            "webhook breaker open subscription=%s account=%s after %d failures",
            subscription.id,
            subscription.account_id,
            failures,
        )


async def _disable(
    session: AsyncSession, subscription: WebhookSubscription, moment: datetime
) -> None:
    """410 Gone: stop sending; what was owed is cancelled (replayable once re-enabled)."""
    subscription.enabled = False
    subscription.disabled_reason = f"the endpoint answered 410 Gone at {moment.isoformat()}"
    log.warning("webhook subscription=%s disabled by 410 Gone", subscription.id)
    await cancel_owed(session, subscription, moment, "subscription disabled: endpoint 410 Gone")


async def cancel_owed(
    session: AsyncSession, subscription: WebhookSubscription, moment: datetime, why: str
) -> None:
    """Cancel every delivery still owed to `subscription`."""
    await session.exec(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.account_id) == subscription.account_id,
            col(WebhookDelivery.subscription_id) == subscription.id,
            col(WebhookDelivery.status) == DeliveryStatus.PENDING,
        )
        .values(
            status=DeliveryStatus.CANCELLED, next_attempt_at=None, last_error=why, updated_at=moment
        )
    )


async def _stage_following(session: AsyncSession, delivery: WebhookDelivery) -> None:
    """This delivery is settled: the next owed, due activity of its play to its subscription
    goes now."""
    for delivery_id in await delivered.following(session, [delivery]):
        stage(session, WEBHOOK_DELIVER, delivery_id)
