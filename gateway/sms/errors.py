"""What to do about each Twilio error: one table, one row per code, tested row by row.

Codes at `Messages.create` come as TwilioRestException; 30xxx codes arrive later in status
callbacks as ErrorCode. Both go through `policy_for`; `apply_error_policy` does what a failure
teaches about the lead, for the sender and the status path alike.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import optouts
from gateway.clock import now
from gateway.contact_lock import lock_contact
from gateway.models import Channel, Lead, LedgerEvent, LedgerSource, Message
from gateway.models.leads import PhoneStatus
from gateway.sms.status import TextOutcome

log = logging.getLogger(__name__)


class Action(StrEnum):
    """Whose fault an error is decides what we do; nobody else's fault may land on the lead."""

    RETRY = "retry"  # transient: back off and try again (rate limits, Twilio 5xx, timeouts)
    RETRY_LATER = "retry_later"  # the handset or carrier is away: a few spaced retries
    OPT_OUT = "opt_out"  # the recipient unsubscribed at Twilio or the carrier: record it
    PERMANENT = "permanent"  # the lead's number can't get texts: flag the lead's phone
    SENDER = "sender"  # our sender number's set-up: flag it, alert, keep the text for later
    ACCOUNT = "account"  # the Twilio account's set-up: fail the text, alert, leave the lead
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
# A text held because Twilio refused its sender (Action.SENDER) is tried again after these
# (about 17 hours in all, so an account fixed the next morning still reaches its leads); a
# success from the number on any try releases the others at once (gateway/sms/sender_status.py).
# After the last one it fails, leaving the lead alone.
SENDER_RETRY_DELAYS: tuple[float, ...] = (900, 3600, 4 * 3600, 12 * 3600)
JITTER = 0.2
# Twilio's Retry-After is honoured up to this: a bad header must not park a text for a day.
MAX_RETRY_AFTER = 600.0

# One row per code, each saying whose fault it is (Twilio's error pages, twilio.com/docs/api/
# errors/<code>). Only codes that are the lead's number's fault may flag the lead's phone.
POLICIES: dict[int, ErrorPolicy] = {
    # Twilio: transient.
    20429: ErrorPolicy(Action.RETRY, note="too many requests"),
    20500: ErrorPolicy(Action.RETRY, note="Twilio internal error"),
    20503: ErrorPolicy(Action.RETRY, note="Twilio service unavailable"),
    # The lead: replied STOP to this sender; Twilio refuses until START. Proof of an opt-out.
    21610: ErrorPolicy(Action.OPT_OUT, note="recipient replied STOP to this sender"),
    # The lead's number: not a valid phone number at all.
    21211: ErrorPolicy(Action.PERMANENT, PhoneStatus.INVALID, "invalid 'To' number"),
    # The lead's number: not a mobile number (SMS can't reach it).
    21614: ErrorPolicy(Action.PERMANENT, PhoneStatus.LANDLINE, "'To' is not a mobile number"),
    # The lead's number: unknown to its carrier, inactive or disconnected.
    30005: ErrorPolicy(Action.PERMANENT, PhoneStatus.INVALID, "unknown or inactive destination"),
    # The lead's number: a landline (the carrier can't take texts for it).
    30006: ErrorPolicy(Action.PERMANENT, PhoneStatus.LANDLINE, "landline or unreachable carrier"),
    # Not the lead's number alone: this To/From combination can't be routed (sender type or
    # region restrictions, no route to that carrier). Another sender may reach it.
    21612: ErrorPolicy(Action.FAIL, note="this 'To'/'From' combination can't be routed"),
    # Not proof of a STOP: "message blocked" also covers carrier blocks, do-not-disturb lists
    # and filtering. A real STOP comes back as 21610 on the next try; the ledger records only
    # what the lead did.
    30004: ErrorPolicy(Action.FAIL, note="blocked by the recipient's carrier or settings"),
    # Our sender number: not an SMS-capable number of this Twilio account (not bought or
    # ported here, SMS not enabled, still porting). The account fixes it; the lead is fine.
    21606: ErrorPolicy(Action.SENDER, note="'From' is not an SMS-capable number of the account"),
    # Our sender number: SMS capability missing on it.
    21661: ErrorPolicy(Action.SENDER, note="'From' number is not SMS-capable"),
    # Our sender number: toll-free verification not approved; carriers block its texts.
    30032: ErrorPolicy(Action.SENDER, note="toll-free number not verified"),
    # Our sender number: not registered to an A2P 10DLC campaign; carriers block its texts.
    30034: ErrorPolicy(Action.SENDER, note="number not registered for A2P 10DLC"),
    # The Twilio account: Geo Permissions don't allow the lead's country.
    21408: ErrorPolicy(Action.ACCOUNT, note="messaging not enabled for the destination region"),
    # The Twilio account: a trial account may only text verified numbers.
    21608: ErrorPolicy(Action.ACCOUNT, note="trial account: 'To' is not a verified number"),
    # The Twilio account: suspended.
    30002: ErrorPolicy(Action.ACCOUNT, note="Twilio account suspended"),
    # The handset or carrier, for now: powered off, out of coverage, a carrier queue full, an
    # unexplained carrier error. A few spaced resends.
    30001: ErrorPolicy(Action.RETRY_LATER, note="carrier queue overflow"),
    30003: ErrorPolicy(Action.RETRY_LATER, note="unreachable destination handset"),
    30008: ErrorPolicy(Action.RETRY_LATER, note="unknown error from the carrier"),
    # Carrier filtering of our content or traffic: resending makes it worse.
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


async def apply_error_policy(
    session: AsyncSession, message: Message, policy: ErrorPolicy, code: int | None
) -> TextOutcome | None:
    """What a failed message teaches us about the lead (opt-out, landline, invalid number);
    returns what its play hears (`failed`, or `opted_out` when the opt-out is news; None when
    the lead had opted out already).

    `code` is the error just recorded: the in-memory `message` may predate it.
    """
    outcome: TextOutcome | None = "failed"
    if policy.action == Action.OPT_OUT:
        outcome = None
        await lock_contact(session, message.account_id, message.lead_phone)
        if not await optouts.is_opted_out(session, message.account_id, message.lead_phone):
            await optouts.record(
                session,
                account_id=message.account_id,
                phone=message.lead_phone,
                event=LedgerEvent.OPT_OUT,
                channel=Channel.SMS,
                source=LedgerSource.CARRIER_21610
                if code in (None, 21610)
                else LedgerSource.CARRIER,
                message_sid=message.twilio_sid,
                inbound_number=message.from_number,
                note=policy.note,
            )
            outcome = "opted_out"
    if policy.phone_status is not None and message.lead_id is not None:
        await session.exec(
            update(Lead)
            .where(col(Lead.id) == message.lead_id)
            .values(
                phone_status=policy.phone_status,
                phone_status_code=code,
                updated_at=now(),
            )
        )
    if policy.action == Action.FILTERED:
        log.error(
            "carrier filtering (30007) account=%s message=%s: review content and registration",
            message.account_id,
            message.id,
        )
    elif policy.action == Action.ACCOUNT:
        log.error(
            "Twilio account set-up account=%s message=%s code=%s: %s",
            message.account_id,
            message.id,
            code,
            policy.note,
        )
    return outcome
