"""Signing a webhook, two ways over the same bytes with the subscription's secret(s).

Headers sent with every request:

    Gateway-Event-Id:    evt_...      the activity's stable id (same on every retry and replay)
    Gateway-Delivery-Id: dlv_...      this (activity, subscription) delivery
    Gateway-Timestamp:   1763496000   Unix seconds when this attempt was signed
    Gateway-Signature:   v1=<hex>[,v1=<hex>]
    webhook-id:          evt_...      Standard Webhooks (standardwebhooks.com): the same event id
    webhook-timestamp:   1763496000   the same timestamp
    webhook-signature:   v1,<base64>[ v1,<base64>]

`Gateway-Signature` is HMAC-SHA256 over `timestamp.body` keyed with the secret's text, as it
always was, so receivers built on it keep working with every secret we issue. `webhook-signature`
is HMAC-SHA256 over `id.timestamp.body` keyed with the bytes the secret's base64 spells
(`whsec_<base64>`), so any Standard Webhooks library verifies it with the secret as issued.

During the 24 hours after a secret rotation each header carries one signature per valid secret
(new first), so a receiver holding either secret verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from gateway.models import WebhookSubscription

SECRET_PREFIX = "whsec_"
ROTATION_OVERLAP = timedelta(hours=24)

EVENT_ID_HEADER = "Gateway-Event-Id"
DELIVERY_ID_HEADER = "Gateway-Delivery-Id"
TIMESTAMP_HEADER = "Gateway-Timestamp"
SIGNATURE_HEADER = "Gateway-Signature"
STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
USER_AGENT = "partyline-gateway-webhooks/1"


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and the standard, padded base64 of 256 random bits, the
    form every Standard Webhooks library takes as is."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def standard_key(secret: str) -> bytes:
    """The Standard Webhooks HMAC key of a secret: the bytes its base64 spells.

    Secrets issued before Standard Webhooks signing spell their 256 bits in the URL-safe
    alphabet without padding (`whsec_` + 43 characters, often with `-` or `_`); they keep those
    same bits as their key, and `standard_secret` spells them the way libraries read them.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error included: not standard base64, so an older secret
        pass
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        # Not base64 at all (no secret we issue): sign with its text rather than fail a delivery.
        return secret.encode()


def standard_secret(secret: str) -> str:
    """The `whsec_<base64>` spelling of a secret that Standard Webhooks libraries read; the
    secret itself for every secret issued since they sign with it."""
    return SECRET_PREFIX + base64.b64encode(standard_key(secret)).decode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `timestamp.body` under `secret`."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def standard_signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """Base64 HMAC-SHA256 of `event_id.timestamp.body` under the secret's Standard key."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


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
    """Every header of a webhook request: ours and the Standard Webhooks ones."""
    keys = list(signing_secrets)
    signatures = ",".join(f"v1={signature(s, timestamp, body)}" for s in keys)
    standard = " ".join(f"v1,{standard_signature(s, event_id, timestamp, body)}" for s in keys)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event_id,
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signatures,
        STANDARD_ID_HEADER: event_id,
        STANDARD_TIMESTAMP_HEADER: str(timestamp),
        STANDARD_SIGNATURE_HEADER: standard,
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
