"""SMS: the account's sender numbers, every message in and out with its status history, and the
claims that make each Twilio webhook count once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, String, UniqueConstraint, text
from sqlmodel import Column, Field, SQLModel

from gateway.db import UTCDateTime
from gateway.models.compliance import LedgerId
from gateway.models.defaults import empty_dict, empty_list, now


class NumberKind(StrEnum):
    LONG_CODE = "long_code"
    TOLL_FREE = "toll_free"
    SHORT_CODE = "short_code"


class SenderStatus(StrEnum):
    """Whether Twilio accepts a sender number as `From` (see gateway/sms/sender_status.py)."""

    OK = "ok"
    # Twilio refused it as a sender (21606 not SMS-capable / not this account's, 30032
    # unverified toll-free, 30034 unregistered 10DLC): the account must fix its set-up.
    UNAVAILABLE = "unavailable"


class SenderNumber(SQLModel, table=True):
    """A Twilio number (or messaging service) an account sends from and receives on."""

    __tablename__ = "sender_numbers"

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40, index=True)
    # Globally unique: an inbound text is routed to its account by the number it came in on.
    number: str = Field(max_length=20, unique=True)
    kind: NumberKind = Field(
        default=NumberKind.LONG_CODE, sa_column=Column(String(12), nullable=False)
    )
    messaging_service_sid: str | None = Field(default=None, max_length=34)
    status: SenderStatus = Field(
        default=SenderStatus.OK,
        sa_column=Column(String(12), nullable=False, server_default=SenderStatus.OK.value),
    )
    status_code: int | None = Field(default=None, description="the Twilio error that flagged it")
    # When it was last flagged: texts held for it are tried again a while after this.
    status_changed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


class MessagingService(SQLModel, table=True):
    """A Twilio Messaging Service and the one account it belongs to: the primary key is what
    keeps a service out of two accounts (its numbers are the account's SenderNumbers)."""

    __tablename__ = "messaging_services"

    sid: str = Field(primary_key=True, max_length=34)
    account_id: str = Field(foreign_key="accounts.id", max_length=40, index=True)
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class MessageStatus(StrEnum):
    """Our statuses, a superset of Twilio's; `RANK` says which may follow which."""

    QUEUED = "queued"  # ours: waiting for its send job (or deferred by the gate until send_after)
    SENDING = "sending"  # ours: a Messages.create is in flight; outcome unknown until recorded
    ACCEPTED = "accepted"  # Twilio took it (SID stored; Twilio's own status "queued")
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    BLOCKED = "blocked"  # ours: the gate refused it (opt-out, no window); never sent
    CANCELED = "canceled"  # ours: stopped before sending (play stopped, lead opted out)
    RECEIVED = "received"  # inbound


class Purpose(StrEnum):
    INITIATED = "initiated"
    REPLY = "reply"
    CONFIRMATION = "confirmation"
    STAFF = "staff"  # a notice to one of the account's reps (gateway/engine/rep_notices.py)


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_account_lead", "account_id", "lead_id", "id"),
        Index("ix_messages_due", "status", "send_after"),
        Index("ix_messages_account_phone", "account_id", "lead_phone", "created_at"),
        # The plays sweep: inbound texts not yet handed to their plays, oldest first (see
        # migration 0011 for why it is partial).
        Index(
            "ix_messages_undispatched",
            "direction",
            "created_at",
            sqlite_where=text("dispatched_at IS NULL"),
            postgresql_where=text("dispatched_at IS NULL"),
        ),
        # An account's drain: its queued texts, oldest first (partial: a text leaves it when
        # claimed; the query names the status as a literal, so the planner can use it).
        Index(
            "ix_messages_queued",
            "account_id",
            "created_at",
            "id",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        # The status checks: sent texts without a final status, by when they are next due
        # (partial: almost every row is final or inbound and has none; see migration 0015).
        Index(
            "ix_messages_status_check",
            "status_check_at",
            sqlite_where=text("status_check_at IS NOT NULL"),
            postgresql_where=text("status_check_at IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    lead_id: str | None = Field(default=None, foreign_key="leads.id", max_length=40)
    lead_phone: str = Field(max_length=20)
    play_id: str | None = Field(default=None, max_length=40, index=True)
    # Inbound: when the text was handed to the lead's plays (None: still owed; the plays
    # sweep re-enqueues it, so a Redis flush can't lose a reply).
    dispatched_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    step_id: str | None = Field(default=None, max_length=64)
    direction: Direction = Field(sa_column=Column(String(8), nullable=False))
    from_number: str | None = Field(default=None, max_length=20)
    to_number: str | None = Field(default=None, max_length=20)
    body: str = Field(max_length=1600)
    media: list[str] = Field(default_factory=empty_list, sa_column=Column(JSON, nullable=False))
    purpose: Purpose = Field(
        default=Purpose.INITIATED, sa_column=Column(String(12), nullable=False)
    )
    reason: str = Field(default="manual", max_length=40, description="why it exists")
    sent_by: str | None = Field(default=None, max_length=200, description="the person, if one")
    status: MessageStatus = Field(sa_column=Column(String(12), nullable=False))
    twilio_sid: str | None = Field(default=None, max_length=64, unique=True)
    error_code: int | None = None
    error_message: str | None = Field(default=None, max_length=500)
    gate_reason: str | None = Field(default=None, max_length=60)
    num_segments: int | None = None
    # The opt-out notice, decided when the message is claimed for sending (gateway/sms/notice.py):
    # appended / in_text (the body says it) / recent (one went out within 30 days) /
    # not_required (confirmations); `notice` is the text appended, when it was.
    notice_decision: str | None = Field(default=None, max_length=16)
    notice: str | None = Field(default=None, max_length=120)
    # What the message as sent costs: GSM-7 or UCS-2, and the segments the notice added.
    encoding: str | None = Field(default=None, max_length=8)
    notice_segments: int | None = None
    send_after: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    attempts: int = 0
    attempt_started_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    validity_period: int | None = None
    # A resend after 30003/30008 is a new row (its own SID and callbacks) pointing at the first.
    retry_of: str | None = Field(default=None, max_length=40)
    # A confirmation answers this ledger event; once sent, it is written to the ledger.
    ledger_event_id: int | None = Field(default=None, sa_column=Column(LedgerId))
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # When Twilio is next asked for this text's status (its callbacks may have been lost while
    # the gateway was down): set while it is sent without a final status, None otherwise
    # (gateway/jobs/sms_status_checks.py).
    status_check_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))


class MessageEvent(SQLModel, table=True):
    """One step of a message's history (created, gate decisions, attempts, Twilio statuses)."""

    __tablename__ = "message_events"

    id: int | None = Field(default=None, sa_column=Column(LedgerId, primary_key=True))
    message_id: str = Field(foreign_key="messages.id", max_length=40, index=True)
    status: str = Field(max_length=20)
    at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    error_code: int | None = None
    detail: str | None = Field(default=None, max_length=500)


class ContactLock(SQLModel, table=True):
    """One row per (account, phone): touching it serializes the gate-then-send of a contact with
    an opt-out arriving for the same contact, on PostgreSQL (row lock) and SQLite (write lock)."""

    __tablename__ = "contact_locks"

    account_id: str = Field(primary_key=True, max_length=40)
    phone: str = Field(primary_key=True, max_length=20)
    touches: int = 0


class WebhookClaim(SQLModel, table=True):
    """A Twilio webhook seen once: inserted before any side effect; a redelivery conflicts.

    Most are acted on in their request and are done when inserted. An inbound text or a status
    callback is only appended by its request and acted on by the `sms.inbox` or `sms.statuses`
    job (gateway/jobs/claim_batches.py): `done_at` is empty until then. A done claim is kept
    30 days (`gateway.claims.RETENTION`)."""

    __tablename__ = "webhook_claims"
    __table_args__ = (
        UniqueConstraint("kind", "key", name="uq_webhook_claims_kind_key"),
        # A job's take: the pending rows of a kind, oldest first (partial: all but a few
        # rows are done; migration 0024).
        Index(
            "ix_webhook_claims_pending",
            "kind",
            "id",
            sqlite_where=text("done_at IS NULL"),
            postgresql_where=text("done_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(LedgerId, primary_key=True))
    kind: str = Field(max_length=20)
    key: str = Field(max_length=200)
    received_at: datetime = Field(
        default_factory=now, sa_column=Column(UTCDateTime, nullable=False)
    )
    params: dict[str, Any] = Field(
        default_factory=empty_dict, sa_column=Column(JSON, nullable=False)
    )
    done_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
