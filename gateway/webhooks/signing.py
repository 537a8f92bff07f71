"""Signing a webhook: HMAC-SHA256 over `timestamp.body` with the subscription's secret(s).

Headers sent with every request:

    Gateway-Event-Id:    evt_...      the activity's stable id (same on every retry and replay)
    Gateway-Delivery-Id: dlv_...      this (activity, subscription) delivery
    Gateway-Timestamp:   1763496000   Unix seconds when this attempt was signed
    Gateway-Signature:   v1=<hex>[,v1=<hex>]

During the 24 hours after a secret rotation the request carries one `v1=` signature per valid
secret (new first), so a receiver holding either secret verifies it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from gateway.models import WebhookSubscription

SECRET_PREFIX = "whsec_"
ROTATION_OVERLAP = timedelta(hours=24)
# Receivers should refuse requests signed longer ago than this (replay protection).
TOLERANCE_SECONDS = 300

EVENT_ID_HEADER = "Gateway-Event-Id"
DELIVERY_ID_HEADER = "Gateway-Delivery-Id"
TIMESTAMP_HEADER = "Gateway-Timestamp"
SIGNATURE_HEADER = "Gateway-Signature"
USER_AGENT = "partyline-gateway-webhooks/1"


def new_secret() -> str:
    """A fresh signing secret (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `timestamp.body` under `secret`."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def valid_secrets(subscription: WebhookSubscription, at: datetime) -> list[str]:
    """The secrets to sign with at `at`: the current one, and the previous one while it lasts."""
    found = [subscription.secret]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and at < expires:
        found.append(subscription.previous_secret)
    return found


def headers(
    signing_secrets: Iterable[str], event_id: str, delivery_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every header of a webhook request."""
    signatures = ",".join(f"v1={signature(s, timestamp, body)}" for s in signing_secrets)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event_id,
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signatures,
    }


def verify(
    secret: str, received: Mapping[str, str], body: bytes, now: float, tolerance: int = 300
) -> bool:
    """The receiver's check (what README.md documents): a `v1=` signature matches under
    `secret`, and the timestamp is within `tolerance` seconds of `now`."""
    try:
        timestamp = int(received[TIMESTAMP_HEADER])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    offered = [
        part.strip().removeprefix("v1=")
        for part in received.get(SIGNATURE_HEADER, "").split(",")
        if part.strip().startswith("v1=")
    ]
    return any(hmac.compare_digest(expected, given) for given in offered)
