"""Outbound webhooks: subscriptions (an account's URL and the activities it wants), deliveries
(one activity to one subscription, with its attempts: the outbox), and the operator's
per-account allowance for private network addresses."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from gateway.db import UTCDateTime
from gateway.models.compliance import LedgerId
from gateway.models.defaults import now


class WebhookSubscription(SQLModel, table=True):
    """An account's webhook URL, the activity labels it wants, and its delivery health."""

    __tablename__ = "webhook_subscriptions"

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40, index=True)
    url: str = Field(max_length=2000)
    # None: every activity; otherwise the labels wanted (validated against the playbooks).
    labels: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    playbook_id: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=200)
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=500)
    # HMAC keys: kept in clear because signing needs them; never shown after creation/rotation.
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_secret_expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # Circuit breaker: open while breaker_probe_at is set; a probe goes out when it is due.
    consecutive_failures: int = 0
    breaker_opened_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    breaker_probe_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # owed: due at next_attempt_at
    DELIVERED = "delivered"  # the endpoint answered 2xx
    DEAD = "dead"  # dead letter: the retry schedule ran out (replayable)
    CANCELLED = "cancelled"  # the subscription was disabled (410 or by the account)


class WebhookDelivery(SQLModel, table=True):
    """One activity sent to one subscription; created in the activity's transaction."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("activity_id", "subscription_id", name="uq_webhook_deliveries_activity"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # In-order delivery: "is an earlier delivery with this order key still owed?"
        Index(
            "ix_webhook_deliveries_order", "subscription_id", "order_key", "status", "activity_id"
        ),
        Index("ix_webhook_deliveries_listing", "subscription_id", "activity_id"),
        # `webhooks.deliver`'s claim: a subscription's owed deliveries, oldest activity first.
        Index("ix_webhook_deliveries_claim", "subscription_id", "status", "activity_id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    account_id: str = Field(foreign_key="accounts.id", max_length=40)
    subscription_id: str = Field(foreign_key="webhook_subscriptions.id", max_length=40)
    activity_id: int = Field(
        sa_column=Column(LedgerId, ForeignKey("activities.id"), nullable=False)
    )
    event_id: str = Field(max_length=40, description="the activity's stable public id")
    # Deliveries with the same key go in activity order: the play; for a status change without
    # a play, the lead (or the phone): an opt-out and the opt-in after it never swap places.
    order_key: str | None = Field(default=None, max_length=60)
    label: str = Field(max_length=64)
    status: DeliveryStatus = Field(sa_column=Column(String(10), nullable=False))
    # The JSON body, fixed when the activity was recorded: every retry and replay sends these bytes.
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    attempts: int = Field(default=0, description="tries since queued or last replayed")
    total_attempts: int = 0
    replays: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    # A delivery still owed at this time is dead-lettered (covers time spent behind a breaker).
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    last_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    last_status_code: int | None = None
    last_response: str | None = Field(default=None, max_length=500)
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime))
    created_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))


class WebhookPolicy(SQLModel, table=True):
    """What the operator (not the account's API key) allows an account's webhooks to reach."""

    __tablename__ = "webhook_policies"

    account_id: str = Field(foreign_key="accounts.id", primary_key=True, max_length=40)
    allow_private_addresses: bool = False
    updated_at: datetime = Field(default_factory=now, sa_column=Column(UTCDateTime, nullable=False))
