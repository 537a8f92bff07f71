"""Consent age: may an initiated text or call still rely on the consent a lead gave?

Consent to be contacted does not last forever in practice. Most TCPA suits over texts come
from purchased "aged" leads: a form filled in months ago, resold, then texted by someone the
lead never heard of. A business therefore sets a maximum age for consent evidence
(`max_age_days`, 90 by default in the gateway) and the gate blocks initiated texts and calls
to leads whose consent is older, with the reason `consent_expired`.

A lead without any consent evidence is the business's call (`require_consent`): when it is
required the gate blocks with `consent_missing`; when not, the contact goes ahead and the
gateway records that it ran without evidence.

Replies inside a conversation the lead continued and opt-out/help confirmations are not
checked: the lead's own message is the newer, stronger sign that contact is wanted (and a
confirmation is owed whatever the consent). Email is not checked either: CAN-SPAM has no
consent-age concept, and the TCPA only covers calls and texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "CONSENT_EXPIRED",
    "CONSENT_MISSING",
    "ConsentCheck",
    "applies",
    "check",
]

CONSENT_EXPIRED = "consent_expired"
CONSENT_MISSING = "consent_missing"

# Only contact the business starts over the phone network is limited by consent age.
CHECKED_CHANNELS = frozenset({"sms", "call"})
CHECKED_PURPOSES = frozenset({"initiated"})


@dataclass(frozen=True)
class ConsentCheck:
    """The outcome: `ok`, and otherwise the gate reason and a sentence for people."""

    ok: bool
    reason: str = ""
    detail: str = ""
    evidence: bool = True  # False: the lead has no consent evidence on record


def applies(channel: str, purpose: str) -> bool:
    """Whether consent is checked for this kind of contact (initiated texts and calls)."""
    return channel in CHECKED_CHANNELS and purpose in CHECKED_PURPOSES


def check(
    captured_at: datetime | None,
    at: datetime,
    *,
    max_age: timedelta | None,
    require: bool = False,
) -> ConsentCheck:
    """Whether consent captured at `captured_at` (None: no evidence) still covers `at`.

    Consent exactly `max_age` old is still valid; a second older is not ("older than 90 days"
    means the 91st day is out). `max_age=None` means no limit.
    """
    if captured_at is None:
        if require:
            return ConsentCheck(
                False, CONSENT_MISSING, "no consent evidence and the account requires it", False
            )
        return ConsentCheck(True, evidence=False)
    if max_age is None:
        return ConsentCheck(True)
    age = at - captured_at
    if age <= max_age:
        return ConsentCheck(True)
    return ConsentCheck(
        False,
        CONSENT_EXPIRED,
        f"consent captured {captured_at.date().isoformat()} is {age.days} days old; "
        f"the limit is {max_age.days} days",
    )
