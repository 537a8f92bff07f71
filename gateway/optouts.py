"""The opt-out ledger: recording events, the current status, and reading it back for export."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from compliance.zones import phone_zones
from gateway.activity_webhooks import on_ledger_event
from gateway.clock import now
from gateway.db import SessionFactory
from gateway.models import (
    Channel,
    LedgerEvent,
    LedgerSource,
    OptOutConfirmation,
    OptOutEvent,
    ledger_status,
)

EXPORT_BATCH = 1000


def local_time(phone: str, at: datetime) -> str:
    """The lead's wall-clock time at `at`, with offset and zone; "" when the number has none."""
    zones = phone_zones(phone)
    if not zones:
        return ""
    zone = zones[0]
    return f"{at.astimezone(ZoneInfo(zone)).isoformat(timespec='seconds')} {zone}"


async def record(
    session: AsyncSession,
    *,
    account_id: str,
    phone: str,
    event: LedgerEvent,
    channel: Channel,
    source: LedgerSource,
    received_at: datetime | None = None,
    text: str | None = None,
    rule: str | None = None,
    keyword: str | None = None,
    message_sid: str | None = None,
    call_sid: str | None = None,
    inbound_number: str | None = None,
    actor: str | None = None,
    note: str | None = None,
    email: str | None = None,
) -> OptOutEvent:
    """Append one opt-out or opt-in. Suppression is in force once the transaction commits."""
    moment = received_at or now()
    row = OptOutEvent(
        account_id=account_id,
        phone=phone,
        event=event,
        received_at=moment,
        local_time=local_time(phone, moment),
        channel=channel,
        source=source,
        text=text,
        rule=rule,
        keyword=keyword,
        message_sid=message_sid,
        call_sid=call_sid,
        inbound_number=inbound_number,
        actor=actor,
        note=note,
        email=email.strip().lower() if email else None,
        suppression_applied_at=now(),
    )
    session.add(row)
    await session.flush()
    await on_ledger_event(session, row)  # opted_out/opted_in activity and its webhooks
    return row


async def record_confirmation(
    session: AsyncSession, event: OptOutEvent, *, body: str, message_sid: str | None
) -> OptOutConfirmation:
    assert event.id is not None
    row = OptOutConfirmation(
        event_id=event.id,
        account_id=event.account_id,
        sent_at=now(),
        message_sid=message_sid,
        body=body,
    )
    session.add(row)
    await session.flush()
    return row


async def latest_opt_outs(
    session: AsyncSession, account_id: str, phones: Sequence[str]
) -> dict[str, OptOutEvent]:
    """The latest ledger event of each phone that has one, in one query (lists of leads)."""
    if not phones:
        return {}
    newest = (
        select(func.max(OptOutEvent.id))
        .where(OptOutEvent.account_id == account_id, col(OptOutEvent.phone).in_(phones))
        .group_by(col(OptOutEvent.phone))
    )
    query = select(OptOutEvent).where(
        OptOutEvent.account_id == account_id, col(OptOutEvent.id).in_(newest)
    )
    return {event.phone: event for event in (await session.exec(query)).all()}


async def is_opted_out(session: AsyncSession, account_id: str, phone: str) -> bool:
    params = {"account_id": account_id, "phone": phone}
    status = (await session.execute(_STATUS, params)).scalar()
    return status == LedgerEvent.OPT_OUT


# `is_opted_out`'s statement, built once (every inbound text asks it).
_STATUS = select(ledger_status(bindparam("account_id"), bindparam("phone")))


async def email_unsubscribed(session: AsyncSession, account_id: str, address: str) -> bool:
    """Whether `address` opted out of the account's email (its latest email event says so).

    Kept apart from the phone's status: a START by text resubscribes texts, not email."""
    query = (
        select(OptOutEvent.event)
        .where(
            OptOutEvent.account_id == account_id,
            OptOutEvent.email == address.strip().lower(),  # stored lowercased
        )
        .order_by(col(OptOutEvent.id).desc())
        .limit(1)
    )
    return (await session.exec(query)).first() == LedgerEvent.OPT_OUT


@dataclass(frozen=True)
class LedgerFilter:
    since: datetime | None = None
    until: datetime | None = None
    phone: str | None = None
    channel: Channel | None = None
    source: LedgerSource | None = None


@dataclass(frozen=True)
class LedgerRow:
    event: OptOutEvent
    confirmation: OptOutConfirmation | None


async def page(
    session: AsyncSession,
    account_id: str,
    filters: LedgerFilter,
    *,
    after_id: int = 0,
    limit: int = 100,
) -> list[LedgerRow]:
    """Ledger events in the order they were recorded, after `after_id` (keyset pagination)."""
    query = (
        select(OptOutEvent, OptOutConfirmation)
        .join(
            OptOutConfirmation,
            col(OptOutConfirmation.event_id) == col(OptOutEvent.id),
            isouter=True,
        )
        .where(OptOutEvent.account_id == account_id, col(OptOutEvent.id) > after_id)
        .order_by(col(OptOutEvent.id))
        .limit(limit)
    )
    if filters.since is not None:
        query = query.where(col(OptOutEvent.received_at) >= filters.since)
    if filters.until is not None:
        query = query.where(col(OptOutEvent.received_at) < filters.until)
    if filters.phone is not None:
        query = query.where(OptOutEvent.phone == filters.phone)
    if filters.channel is not None:
        query = query.where(OptOutEvent.channel == filters.channel)
    if filters.source is not None:
        query = query.where(OptOutEvent.source == filters.source)
    rows: Sequence[tuple[OptOutEvent, OptOutConfirmation | None]] = (
        await session.exec(query)
    ).all()
    return [LedgerRow(event, confirmation) for event, confirmation in rows]


async def iterate(
    sessions: SessionFactory, account_id: str, filters: LedgerFilter, batch: int = EXPORT_BATCH
) -> AsyncIterator[LedgerRow]:
    """Every matching event, in batches with a short session each: constant memory, and no
    transaction held open while a slow client reads a million rows."""
    after_id = 0
    while True:
        async with sessions() as session:
            rows = await page(session, account_id, filters, after_id=after_id, limit=batch)
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        assert rows[-1].event.id is not None
        after_id = rows[-1].event.id
