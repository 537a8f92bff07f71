"""The opt-out ledger (append-only), its confirmations, and consent evidence.

Ledger rows are never updated or deleted (database triggers refuse it): the current status of a
phone is derived from its latest event. What happens later (the confirmation text) goes into its
own append-only table, so the record a compliance officer exports is exactly what was written.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, ScalarSelect, String
from sqlmodel import Column, Field, SQLModel, col, select

from gateway.db import UTCDateTime
from gateway.models.defaults import empty_dict, now

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
LedgerId = BigInteger().with_variant(Integer(), "sqlite")


class LedgerEvent(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


class Channel(StrEnum):
    SMS = "sms"
    VOICE = "voice"
    API = "api"
    EMAIL = "email"
    WEB = "web"
    MANUAL = "manual"


class LedgerSource(StrEnum):
    KEYWORD = "keyword"
    PHRASE = "phrase"
    API = "api"
    ADMIN = "admin"
    KEYPRESS = "keypress"
    CARRIER_21610 = "carrier_error_21610"
    CARRIER = "carrier"
    TWILIO_OPT_OUT_TYPE = "twilio_opt_out_type"
    UNSUBSCRIBE_LINK = "unsubscribe_link"  # an email's unsubscribe link (page or one-click)


class OptOutEvent(SQLModel, table=True):
    """One opt-out or opt-in, as it happened. Append-only."""

    __tablename__ = "opt_out_events"
    __table_args__ = (
        Index("ix_opt_out_events_account_phone", "account_id", "phone", "id"),
        Index("ix_opt_out_events_account_seq", "account_id", "id"),
        Index("ix_opt_out_events_account_email", "account_id", "email", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(LedgerId, primary_key=True))
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    phone: str = Field(max_length=20)
    # The address an email opt-out is for (source unsubscribe_link); None for the others.
    email: str | None = Field(default=None, max_length=320)
    event: LedgerEvent = Field(sa_column=Column(String(10), nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    # The lead's wall-clock time when it happened, with offset and zone, as evidence of
    # what the lead saw ("2026-11-21T08:15:00-05:00 America/New_York"); "" when unknown.
    local_time: str = Field(default="", max_length=80)
    channel: Channel = Field(sa_column=Column(String(10), nullable=False))
    source: LedgerSource = Field(sa_column=Column(String(30), nullable=False))
    text: str | None = Field(default=None, max_length=2000)
    rule: str | None = Field(default=None, max_length=20)
    keyword: str | None = Field(default=None, max_length=100)
    message_sid: str | None = Field(default=None, max_length=64)
    call_sid: str | None = Field(default=None, max_length=64)
    inbound_number: str | None = Field(default=None, max_length=20)
    actor: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)
    # Suppression takes effect in the transaction that writes the row.
    suppression_applied_at: datetime = Field(
        default_factory=now, sa_column=Column(UTCDateTime, nullable=False)
    )


def ledger_status(account_id: Any, phone: Any) -> ScalarSelect[Any]:
    """The phone's current status as a scalar subquery: its latest ledger event (`opt_out`,
    `opt_in`, ...; NULL: none on record). `phone` is a value or a column of the enclosing query
    (it correlates), so a caller asks it beside its other facts in one statement."""
    return (
        select(OptOutEvent.event)
        .where(OptOutEvent.account_id == account_id, OptOutEvent.phone == phone)
        .order_by(col(OptOutEvent.id).desc())
        .limit(1)
        .scalar_subquery()
    )


class OptOutConfirmation(SQLModel, table=True):
    """The one confirmation text sent for a ledger event. Append-only."""

    __tablename__ = "opt_out_confirmations"

    event_id: int = Field(
        sa_column=Column(LedgerId, primary_key=True)  # one confirmation per event at most
    )
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    sent_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    message_sid: str | None = Field(default=None, max_length=64)
    body: str = Field(max_length=2000)


class Consent(SQLModel, table=True):
    """Evidence of consent a lead gave, as the business captured it."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_account_phone", "account_id", "phone"),)

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    phone: str = Field(max_length=20)
    lead_id: str | None = Field(default=None, max_length=40)
    captured_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    source: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, max_length=5000)
    url: str | None = Field(default=None, max_length=2000)
    extra: dict[str, Any] = Field(
        default_factory=empty_dict, sa_column=Column(JSON, nullable=False)
    )
    recorded_at: datetime = Field(
        default_factory=now, sa_column=Column(UTCDateTime, nullable=False)
    )
