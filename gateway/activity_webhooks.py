"""An activity's webhook deliveries, written in the activity's own transaction (the outbox's
write half).

`record` keeps an activity to its transaction's commit (`gateway.engine.records`, the opt-out
ledger's status changes), when it is written with the transaction's other activities and a
pending delivery per matching subscription: if the transaction rolls back, neither exists, and
if it commits, every matching subscription is owed one, and its `webhooks.deliver` job (staged
here) goes to Redis. Below the channels, so the opt-out ledger can stage its own status
changes; the webhooks channel delivers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import commit_rows
from gateway import webhook_policy as policy
from gateway.clock import now
from gateway.db import before_commit, for_this_transaction
from gateway.ids import new_id
from gateway.models import (
    Activity,
    ActivityType,
    DeliveryStatus,
    Lead,
    LedgerEvent,
    OptOutEvent,
    Play,
    WebhookDelivery,
    WebhookSubscription,
)
from gateway.rows import column_values, fresh, insert_rows
from gateway.webhook_payloads import (
    FoundLeads,
    build_payloads,
    enabled_subscription,
    with_subscriptions,
)
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


_DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]


# session.info key (`for_this_transaction`): the activities recorded in this transaction and not
# yet written, each with the phone its deliveries keep their order within (`order_key`).
_KEPT = "gateway.activity_webhooks.kept"


def record(
    session: AsyncSession,
    activity: Activity,
    phone: str | None = None,
    *,
    play: Play | None = None,
) -> None:
    """`activity` and its webhook deliveries, written when the transaction commits (or at
    `write_kept`), with every other activity the transaction recorded: one INSERT of the
    activities, one read of each account's subscriptions and one of its leads, one INSERT of
    the deliveries (at the commit, with the transaction's other rows of record: on PostgreSQL
    in their statement), whatever their count. A batch of plays or replies recorded an activity or
    two each, at four statements apiece. Their ids (the order they are delivered in) follow
    the order they were recorded; their payloads show their leads as the transaction leaves
    them. The object is not in the session; its id is set when it is written.

    `play`: the activity's play as the session holds it, held here until the activity is
    written, for its payload's look at the play's rep (the session's identity map holds an
    unchanged object only weakly: let go, it is read again)."""
    if not session.in_transaction():
        # Begun now, so that what is kept belongs to the transaction that will commit it.
        session.sync_session.begin()
    _kept(session).append((activity, phone, play))
    before_commit(session, write_kept)


def kept(session: AsyncSession) -> list[Activity]:
    """The activities this transaction recorded that are not written yet."""
    return [activity for activity, _, _ in _kept(session)]


# A kept activity: with its phone (`order_key`) and its play (held, see `record`).
_Kept = tuple[Activity, str | None, Play | None]


def _kept(session: AsyncSession) -> list[_Kept]:
    return for_this_transaction(session, _KEPT, list)


async def write_kept(session: AsyncSession) -> None:
    """Write the activities recorded so far now, and keep their deliveries for the commit: for
    a statement that reads the activities (the play that the response shows)."""
    taken = list(_kept(session))
    if not taken:
        return
    _kept(session).clear()
    await insert_rows(session, [activity for activity, _, _ in taken], by="public_id")
    await _deliveries(session, taken)


# `_deliveries`' read of an account's subscriptions when none of its activities has a lead.
_SUBSCRIBED = select(WebhookSubscription).where(enabled_subscription(bindparam("account_id")))


# session.info key (`for_this_transaction`): the enabled subscriptions of each account whose
# activities this transaction wrote (`write_kept` may run more than once), and nothing that
# records activities changes subscriptions.
_READ = "gateway.activity_webhooks.subscriptions"


async def _deliveries(session: AsyncSession, written: Sequence[_Kept]) -> None:
    """A pending delivery per enabled subscription that wants each written activity, kept for
    the commit (`commit_rows`, not in the session), and each subscription's `webhooks.deliver`
    staged. An account's subscriptions are read once a transaction, with its activities' leads
    the first time (one statement, not two)."""
    read: dict[str, Sequence[WebhookSubscription]] = for_this_transaction(session, _READ, dict)
    leads: dict[str, FoundLeads] = {}  # the leads read with the subscriptions, by account
    wanted: list[tuple[WebhookSubscription, Activity, str | None]] = []
    for account_id in dict.fromkeys(a.account_id for a, _, _ in written):
        if account_id not in read:
            lead_ids = [a.lead_id for a, _, _ in written if a.account_id == account_id]
            ids = list(dict.fromkeys(i for i in lead_ids if i is not None))
            if ids:
                read[account_id], leads[account_id] = await with_subscriptions(
                    session, account_id, ids
                )
            else:
                params = {"account_id": account_id}
                read[account_id] = (await session.exec(_SUBSCRIBED, params=params)).all()
        wanted += [
            (s, a, phone)
            for a, phone, _ in written
            if a.account_id == account_id
            for s in read[account_id]
            if wants(s, a)
        ]
    if not wanted:
        return
    activities = list({a.public_id: a for _, a, _ in wanted}.values())
    payloads = await build_payloads(session, activities, leads)
    # Written at the commit with the transaction's other rows of record (on PostgreSQL in one
    # statement with them, gateway/commit_rows.py): nothing reads them before.
    for subscription, activity, phone in wanted:
        delivery = new_delivery(subscription, activity, payloads[activity.public_id], phone)
        commit_rows.add(session, _DELIVERIES, column_values(delivery), order="subscription_id")
    for subscription_id in dict.fromkeys(s.id for s, _, _ in wanted):
        stage(session, WEBHOOK_DELIVER, subscription_id)


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
    record(session, activity, row.phone)
    return activity
