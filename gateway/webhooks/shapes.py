"""The API's shapes for webhooks: what `/v1/webhooks` and `/v1/deliveries` take and return."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.clock import Instant
from gateway.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from gateway.playbooks.activities import Label
from gateway.webhook_payloads import WebhookPayload

ActivityFilter = Annotated[list[Label], Field(min_length=1, max_length=200)] | Literal["all"]
ACTIVITIES_DESCRIPTION = (
    '"all", or the activity labels wanted (validated against what the account\'s playbooks '
    "can record, plus the status changes opted_out and opted_in)"
)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, description="where to POST (https)")
    activities: ActivityFilter = Field(default="all", description=ACTIVITIES_DESCRIPTION)
    playbook_id: str | None = Field(
        default=None, max_length=64, description="only activities of plays of this playbook"
    )
    description: str | None = Field(default=None, max_length=200)
    enabled: bool = True


class WebhookUpdate(BaseModel):
    """Fields to change; `playbook_id: null` and `description: null` clear them."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    activities: ActivityFilter | None = Field(default=None, description=ACTIVITIES_DESCRIPTION)
    playbook_id: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=200)
    enabled: bool | None = Field(
        default=None, description="false cancels what is owed; true clears a 410 disable"
    )


class BreakerPublic(BaseModel):
    state: Literal["closed", "open"]
    consecutive_failures: int
    opened_at: datetime | None
    next_probe_at: datetime | None


class WebhookPublic(BaseModel):
    id: str
    url: str
    activities: ActivityFilter
    playbook_id: str | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="after a rotation, the old secret still signs until then"
    )
    breaker: BreakerPublic
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="the signing secret: shown only in this response")


class WebhookList(BaseModel):
    data: list[WebhookPublic]


class DeliveryPublic(BaseModel):
    id: str
    webhook_id: str
    event_id: str
    activity_label: str
    play_id: str | None
    status: DeliveryStatus
    attempts: int = Field(description="tries since queued or last replayed")
    total_attempts: int
    replays: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_response: str | None = Field(description="the first 500 characters the endpoint sent")
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryList(BaseModel):
    data: list[DeliveryPublic]
    next_before: str | None = Field(description="pass as `before` for the next (older) page")


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: DeliveryStatus | None = None
    limit: int = Field(default=100, ge=1, le=500)
    before: str | None = Field(
        default=None, max_length=40, description="a delivery id: only older ones"
    )


class ReplayQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Instant = Field(description="activities recorded at or after this time")
    until: Instant | None = Field(default=None, description="and before this time")


class ReplayResult(BaseModel):
    replayed: int = Field(description="deliveries queued again (or for the first time)")


class WebhookTestQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbook_id: str | None = Field(default=None, max_length=64)
    activity: Label | None = Field(default=None, description="the label to send")


class WebhookTestResult(BaseModel):
    delivered: bool = Field(description="the endpoint answered 2xx")
    status_code: int | None
    response: str | None = Field(description="the first 500 characters the endpoint sent")
    error: str | None
    duration_ms: int
    payload: WebhookPayload


def breaker(subscription: WebhookSubscription) -> BreakerPublic:
    return BreakerPublic(
        state="open" if subscription.breaker_probe_at is not None else "closed",
        consecutive_failures=subscription.consecutive_failures,
        opened_at=subscription.breaker_opened_at,
        next_probe_at=subscription.breaker_probe_at,
    )


def public_webhook(subscription: WebhookSubscription, secret: bool = False) -> WebhookPublic:
    """The subscription as the API shows it; with `secret`, a WebhookCreated that shows it."""
    model = WebhookCreated if secret else WebhookPublic
    data = {
        name: getattr(subscription, name)
        for name in WebhookPublic.model_fields
        if name not in ("activities", "breaker")
    }
    data["activities"] = "all" if subscription.labels is None else subscription.labels
    data["breaker"] = breaker(subscription)
    if secret:
        data["secret"] = subscription.secret
    return model.model_validate(data)


def public_delivery(delivery: WebhookDelivery) -> DeliveryPublic:
    data = {
        name: getattr(delivery, name)
        for name in DeliveryPublic.model_fields
        if name not in ("webhook_id", "activity_label", "play_id")
    }
    data["webhook_id"], data["activity_label"] = delivery.subscription_id, delivery.label
    data["play_id"] = delivery.payload.get("activity_play_id")
    return DeliveryPublic.model_validate(data)
