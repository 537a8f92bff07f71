"""The webhook body: exactly the fields customers integrate against, fixed when the activity
is recorded so that every retry and replay sends the same bytes.

Below the channels: an activity's deliveries are staged with their payload in the activity's
own transaction (`gateway.activity_webhooks`), wherever it is recorded, as that transaction
commits: the lead in the payload is the lead as the transaction leaves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, func, literal
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import numbered, numbered_values
from gateway.models import (
    Activity,
    Lead,
    LeadOriginator,
    LedgerEvent,
    Play,
    Rep,
    WebhookSubscription,
    ledger_status,
)


class OriginatorField(BaseModel):
    origin: str
    key: str


class WebhookPayload(BaseModel):
    """One activity, as POSTed to a subscription. Times are ISO-8601 UTC."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="stable event id: identical on every retry and replay")
    account_id: str
    activity_type: Literal["event", "outcome"]
    activity_label: str
    activity_play_id: str | None = Field(description="null for opt-out/opt-in status changes")
    activity_note: str | None
    activity_created_at: datetime
    lead_id: str | None
    lead_first_name: str | None
    lead_last_name: str | None
    lead_email: str | None
    lead_opted_out: bool | None
    lead_created_at: datetime | None
    lead_additional_info: dict[str, Any] | None
    lead_originators: list[OriginatorField]


async def build_payload(session: AsyncSession, activity: Activity) -> dict[str, Any]:
    """The payload of `activity` as things stand in this transaction (JSON-ready)."""
    return (await build_payloads(session, [activity]))[activity.public_id]


async def build_payloads(
    session: AsyncSession,
    activities: Sequence[Activity],
    read: dict[str, FoundLeads] | None = None,
) -> dict[str, dict[str, Any]]:
    """`build_payload` of each activity, by its public id: their leads read in one statement
    per account (a batch of texts records its plays' activities together). `read`: the leads
    of some accounts, as the caller read them in this transaction (`with_subscriptions`); the
    others' are read here."""
    read = read or {}
    leads = await _leads(session, [a for a in activities if a.account_id not in read])
    for found in read.values():
        leads.update(found)
    payloads: dict[str, dict[str, Any]] = {}
    for activity in activities:
        lead, status, originators = leads.get((activity.account_id, activity.lead_id), _NO_LEAD)
        opted_out: bool | None = None
        if lead is not None:
            opted_out = status == LedgerEvent.OPT_OUT
        elif activity.label in ("opted_out", "opted_in") and activity.play_id is None:
            opted_out = activity.label == "opted_out"
        payload = WebhookPayload(
            id=activity.public_id,
            account_id=activity.account_id,
            activity_type="outcome" if activity.type == "outcome" else "event",
            activity_label=activity.label,
            activity_play_id=activity.play_id,
            activity_note=activity.note,
            activity_created_at=activity.created_at,
            lead_id=lead.id if lead else None,
            lead_first_name=lead.first_name if lead else None,
            lead_last_name=lead.last_name if lead else None,
            lead_email=lead.email if lead else None,
            lead_opted_out=opted_out,
            lead_created_at=lead.created_at if lead else None,
            lead_additional_info=dict(lead.additional_info) if lead else None,
            lead_originators=originators,
        )
        fields = payload.model_dump(mode="json")
        payloads[activity.public_id] = {**fields, **await _rep_fields(session, activity)}
    return payloads


# A lead as its payload shows it: the row, its phone's ledger status, its originators.
_Found = tuple[Lead | None, str | None, list[OriginatorField]]
_NO_LEAD: _Found = (None, None, [])
# Leads by (account, lead id), as payloads show them.
FoundLeads = dict[tuple[str, str | None], _Found]


async def _leads(
    session: AsyncSession, activities: Sequence[Activity]
) -> dict[tuple[str, str | None], _Found]:
    """The activities' leads, by (account, lead id): one statement per account, never another
    account's lead, whatever an activity says."""
    wanted: dict[str, dict[str, None]] = {}  # per account, its lead ids (a dict: in order, once)
    for activity in activities:
        if activity.lead_id is not None:
            wanted.setdefault(activity.account_id, {})[activity.lead_id] = None
    found: FoundLeads = {}
    for account_id, lead_ids in wanted.items():
        params = {"account_id": account_id, **numbered_values("lead", lead_ids)}
        rows = (await session.exec(_leads_statement(len(lead_ids)), params=params)).all()
        for row in rows:
            _found_row(found, account_id, row)
    return found


def _found_row(found: FoundLeads, account_id: str, row: Sequence[Any]) -> None:
    """A row of a lead (its status, one of its originators or none) into `found`."""
    lead, status, origin, key = row
    _, _, originators = found.setdefault((account_id, lead.id), (lead, status, []))
    if origin is not None and key is not None:
        originators.append(OriginatorField(origin=origin, key=key))


async def with_subscriptions(
    session: AsyncSession, account_id: str, lead_ids: Sequence[str]
) -> tuple[list[WebhookSubscription], FoundLeads]:
    """The account's enabled webhook subscriptions, and the leads `lead_ids` as their payloads
    show them (`build_payloads`' `read`), in one statement where there were two: the
    subscriptions outer-joined to the leads' rows, which stand beside the first subscription
    only (or beside none, when there is none)."""
    params = {"account_id": account_id, **numbered_values("lead", lead_ids)}
    rows = (await session.exec(_with_subscriptions(len(lead_ids)), params=params)).all()
    subscriptions: dict[str, WebhookSubscription] = {}
    found: FoundLeads = {}
    for subscription, *lead_row in rows:
        if subscription is not None:  # the first repeats beside each of the leads' rows
            subscriptions.setdefault(subscription.id, subscription)
        if lead_row[0] is not None:
            _found_row(found, account_id, lead_row)
    return list(subscriptions.values()), found


def enabled_subscription(account_id: Any) -> ColumnElement[bool]:
    """The join or filter of an account's enabled subscriptions."""
    return and_(
        col(WebhookSubscription.account_id) == account_id,
        col(WebhookSubscription.enabled) == True,  # noqa: E712 - SQL, not Python truth
    )


@cache
def _with_subscriptions(count: int) -> Any:
    """`with_subscriptions`' read of `count` leads, built once per count: from one row, the
    account's enabled subscriptions and, beside the first (by id) or beside none,
    `_leads_statement`'s rows. Beside each subscription they would be a product: an account's
    25 subscriptions times a lead's 100 originators, 2,500 rows for one lead's activity."""
    account_id: BindParameter[str] = bindparam("account_id")
    one = select(literal(1).label("one")).subquery("one")
    first = (
        select(func.min(WebhookSubscription.id))
        .where(enabled_subscription(account_id))
        .scalar_subquery()
    )
    columns: list[Any] = [
        WebhookSubscription,
        Lead,
        ledger_status(account_id, col(Lead.phone)),
        col(LeadOriginator.origin),
        col(LeadOriginator.key),
    ]
    return (
        select(*columns)
        .select_from(one)
        .outerjoin(WebhookSubscription, enabled_subscription(account_id))
        .outerjoin(
            Lead,
            col(Lead.id).in_(numbered("lead", count))
            & (col(Lead.account_id) == account_id)
            & (col(WebhookSubscription.id).is_(None) | (col(WebhookSubscription.id) == first)),
        )
        .outerjoin(
            LeadOriginator,
            (col(LeadOriginator.lead_id) == col(Lead.id))
            & (col(LeadOriginator.account_id) == col(Lead.account_id)),
        )
        .order_by(col(WebhookSubscription.id), col(LeadOriginator.id))
    )


@cache
def _leads_statement(count: int) -> Any:
    """`_leads`'s read of `count` leads, built once per count: each lead's row repeats beside
    each of its originators, in their order."""
    return (
        select(
            Lead,
            ledger_status(bindparam("account_id"), col(Lead.phone)),
            col(LeadOriginator.origin),
            col(LeadOriginator.key),
        )
        .outerjoin(
            LeadOriginator,
            (col(LeadOriginator.lead_id) == col(Lead.id))
            & (col(LeadOriginator.account_id) == col(Lead.account_id)),
        )
        .where(
            col(Lead.id).in_(numbered("lead", count)), Lead.account_id == bindparam("account_id")
        )
        .order_by(col(LeadOriginator.id))
    )


async def _rep_fields(session: AsyncSession, activity: Activity) -> dict[str, Any]:
    """`rep_id`, `rep_name`, `rep_phone` of the play's assigned rep, when it has one.

    Extra fields beside the documented ones (which stay exactly as they are): present only
    when a rep is assigned, so a receiver that compares the documented shape sees no change.
    """
    play = await session.get(Play, activity.play_id) if activity.play_id is not None else None
    if play is None or play.account_id != activity.account_id or play.rep_id is None:
        return {}
    rep = await session.get(Rep, play.rep_id)
    if rep is None or rep.account_id != activity.account_id:
        return {}
    return {"rep_id": rep.id, "rep_name": rep.name, "rep_phone": rep.phone}
