"""Email: every email a play sends (or, without an SMTP server, captures), with its status."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String, Text
from sqlmodel import Column, Field, SQLModel

from gateway.db import UTCDateTime
from gateway.models.defaults import now


class EmailStatus(StrEnum):
    """queued -> sending -> sent | failed (a transient error goes back to queued, later);
    queued -> blocked (the gate refused: opted out) | captured (no SMTP_URL: stored, not sent)."""

    QUEUED = "queued"
    SENDING = "sending"  # an SMTP transaction is in flight; its outcome is not yet recorded
    SENT = "sent"
    FAILED = "failed"
    BLOCKED = "blocked"
    CAPTURED = "captured"


class Email(SQLModel, table=True):
    __tablename__ = "emails"
    __table_args__ = (
        Index("ix_emails_account_created", "account_id", "created_at", "id"),
        Index("ix_emails_account_lead", "account_id", "lead_id"),
        Index("ix_emails_due", "status", "send_after"),
    )

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    lead_id: str = Field(foreign_key="leads.id", max_length=40)
    play_id: str | None = Field(default=None, max_length=40, index=True)
    step_id: str | None = Field(default=None, max_length=64)
    # A notice to this rep about the lead (gateway/engine/rep_notices.py), gated on the rep and
    # never on the lead; None: an email to the lead.
    rep_id: str | None = Field(default=None, max_length=40)
    to_address: str = Field(max_length=320)
    # None: the EMAIL_FROM setting, resolved (and written here) when the email leaves.
    from_address: str | None = Field(default=None, max_length=320)
    reply_to: str | None = Field(default=None, max_length=320)
    subject: str = Field(max_length=998)
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: EmailStatus = Field(sa_column=Column(String(10), nullable=False))
    # The Message-ID header, chosen before the first attempt and kept: a resend after an
    # interrupted attempt carries the same one, so the recipient's mail system sees one email.
    message_id: str | None = Field(default=None, max_length=255, unique=True)
    error: str | None = Field(default=None, max_length=500)
    smtp_code: int | None = None
    gate_reason: str | None = Field(default=None, max_length=60)
    attempts: int = 0
    attempt_started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # A transient SMTP failure waits until then (the sweep re-finds it); None: due now.
    send_after: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
