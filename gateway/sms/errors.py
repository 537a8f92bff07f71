"""What to do about each Twilio error: one table, one row per code, tested row by row.

Codes at `Messages.create` come as TwilioRestException; 30xxx codes arrive later in status
callbacks as ErrorCode. Both go through `policy_for`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from gateway.models.leads import PhoneStatus


class Action(StrEnum):
    RETRY = "retry"  # transient: back off and try again (rate limits, Twilio 5xx, timeouts)
    RETRY_LATER = "retry_later"  # the handset or carrier is away: a few spaced retries
    OPT_OUT = "opt_out"  # the recipient unsubscribed at Twilio or the carrier: record it
    PERMANENT = "permanent"  # this number can't get texts: flag the lead's phone
    FILTERED = "filtered"  # carrier filtering: retrying makes it worse; alert a human
    FAIL = "fail"  # any other error: fail this message, leave the lead alone


@dataclass(frozen=True)
class ErrorPolicy:
    action: Action
    phone_status: PhoneStatus | None = None
    note: str = ""


# Back-off between tries of a transient failure (seconds, before jitter); the last try records
# the failure and returns.
RETRY_DELAYS: tuple[float, ...] = (2, 10, 30, 120, 600)
# A handset that is off or out of coverage (30003/30008) gets a few hours to come back.
RETRY_LATER_DELAYS: tuple[float, ...] = (300, 1800, 7200)
JITTER = 0.2
# Twilio's Retry-After is honoured up to this: a bad header must not park a text for a day.
MAX_RETRY_AFTER = 600.0

POLICIES: dict[int, ErrorPolicy] = {
    20429: ErrorPolicy(Action.RETRY, note="too many requests"),
    20500: ErrorPolicy(Action.RETRY, note="Twilio internal error"),
    20503: ErrorPolicy(Action.RETRY, note="Twilio service unavailable"),
    21610: ErrorPolicy(Action.OPT_OUT, note="recipient replied STOP to this sender"),
    30004: ErrorPolicy(Action.OPT_OUT, note="blocked by the recipient or carrier"),
    21211: ErrorPolicy(Action.PERMANENT, PhoneStatus.INVALID, "invalid 'To' number"),
    21612: ErrorPolicy(Action.PERMANENT, PhoneStatus.INVALID, "'To' not reachable by SMS"),
    21606: ErrorPolicy(Action.PERMANENT, PhoneStatus.INVALID, "no capable sender for 'To'"),
    30005: ErrorPolicy(Action.PERMANENT, PhoneStatus.INVALID, "unknown or inactive destination"),
    21614: ErrorPolicy(Action.PERMANENT, PhoneStatus.LANDLINE, "'To' is not a mobile number"),
    30006: ErrorPolicy(Action.PERMANENT, PhoneStatus.LANDLINE, "landline or unreachable carrier"),
    30003: ErrorPolicy(Action.RETRY_LATER, note="unreachable destination handset"),
    30008: ErrorPolicy(Action.RETRY_LATER, note="unknown error from the carrier"),
    30007: ErrorPolicy(Action.FILTERED, note="carrier filtering: review content and registration"),
}


def policy_for(code: int | None, http_status: int | None = None) -> ErrorPolicy:
    """The policy for a Twilio error code; unknown 5xx/429 statuses are transient."""
    if code is not None and code in POLICIES:
        return POLICIES[code]
    if http_status is not None and (http_status == 429 or http_status >= 500):
        return ErrorPolicy(Action.RETRY, note=f"HTTP {http_status}")
    return ErrorPolicy(Action.FAIL, note=f"Twilio error {code}" if code else "unknown error")


def retry_delay(
    schedule: tuple[float, ...], attempt: int, retry_after: float | None = None
) -> float | None:
    """Seconds before try `attempt + 1` (attempt counts from 1), or None when tries are used up.

    Jitter spreads a burst of failures so they don't all come back at the same instant; a
    server's Retry-After is a floor.
    """
    if attempt > len(schedule):
        return None
    base = schedule[attempt - 1]
    delay = base * random.uniform(1 - JITTER, 1 + JITTER)  # not a secret: jitter
    return max(delay, min(retry_after or 0.0, MAX_RETRY_AFTER))
