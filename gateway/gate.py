"""The gate as the gateway runs it: the account's settings, the ledger's opt-out status and the
lead's consent evidence fed into `compliance.gate.decide`, at the moment a text, call or email
is about to leave.

The gate only decides; what a decision does to the play it belongs to (a block ends it, a
deferral is logged) is the engine's: `gateway.engine.lifecycle.on_gate_decision`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from compliance import consent
from compliance.gate import Channel, GateDecision, GateRequest, Purpose, decide
from gateway.account_settings import ComplianceSettings, compliance_settings
from gateway.clock import now
from gateway.models import (
    Account,
    Consent,
    Lead,
    Message,
    PartyLineRecord,
    Play,
    SourceRule,
)
from gateway.models import Purpose as MessagePurpose
from gateway.optouts import is_opted_out

logger = logging.getLogger(__name__)

# A source rule's settings may carry its own limit; 0 there means "no limit" (settings are
# scalars, so null can't say it), e.g. for the business's own web form.
SOURCE_RULE_SETTING = "max_consent_age_days"


async def check(
    session: AsyncSession,
    account: Account,
    *,
    channel: Channel,
    purpose: Purpose,
    phone: str,
    at: datetime | None = None,
    state: str | None = None,
    postal_code: str | None = None,
    initiated_contacts_last_24h: Sequence[datetime] = (),
    last_inbound_at: datetime | None = None,
    email_continues_after_opt_out: bool = False,
    email_unsubscribed: bool = False,
    play_id: str | None = None,
) -> GateDecision:
    """Allow, defer (until T) or block one contact. Call it when sending, not when scheduling:
    an opt-out recorded a second ago must stop a message queued an hour ago.

    `play_id`: the play the contact belongs to, whose source rule may set its own consent age.
    """
    settings = compliance_settings(account)
    consent_at: datetime | None = None
    max_age: timedelta | None = None
    if consent.applies(channel, purpose):  # spare the queries for replies, confirmations, email
        consent_at = await latest_consent(session, account.id, phone)
        max_age = await max_consent_age(session, account.id, settings, play_id)
    request = GateRequest(
        channel=channel,
        purpose=purpose,
        phone=phone,
        at=at or now(),
        opted_out=await is_opted_out(session, account.id, phone),
        email_continues_after_opt_out=email_continues_after_opt_out,
        email_unsubscribed=email_unsubscribed,
        state=state,
        postal_code=postal_code,
        fallback_tz=settings.timezone,
        window=settings.window(),
        initiated_contacts_last_24h=initiated_contacts_last_24h,
        last_inbound_at=last_inbound_at,
        reply_grace_enabled=settings.reply_grace,
        consent_captured_at=consent_at,
        max_consent_age=max_age,
        require_consent=settings.require_consent,
    )
    return decide(request)


# Texts that went to Twilio count as contacts; queued, canceled and blocked ones never left.
TEXT_CONTACT_STATUSES = ("sending", "accepted", "sent", "delivered", "read", "undelivered")
CAP_PERIOD = timedelta(hours=24)


async def initiated_contacts(
    session: AsyncSession, account_id: str, phone: str, moment: datetime
) -> list[datetime]:
    """When the account initiated a text or a call to `phone` in the 24 hours before `moment`.

    One list for both channels: a state's cap counts every initiated contact, so three texts
    hold back a call and three call attempts hold back a text (compliance/frequency.py).
    """
    since = moment - CAP_PERIOD
    texts = select(Message.attempt_started_at).where(
        Message.account_id == account_id,
        Message.lead_phone == phone,
        Message.purpose == MessagePurpose.INITIATED,
        col(Message.status).in_(TEXT_CONTACT_STATUSES),
        col(Message.attempt_started_at) >= since,
    )
    times = [at for at in (await session.exec(texts)).all() if at is not None]
    # A party line's lead attempts are in its state; one created up to a day before `since`
    # may still have retried inside the period.
    lines = (
        select(PartyLineRecord.state)
        .join(Lead, col(Lead.id) == col(PartyLineRecord.lead_id))
        .where(
            PartyLineRecord.account_id == account_id,
            Lead.account_id == account_id,
            Lead.phone == phone,
            col(PartyLineRecord.created_at) >= since - CAP_PERIOD,
        )
    )
    for state in (await session.exec(lines)).all():
        for leg in state.get("lead_legs", ()):
            at = datetime.fromisoformat(leg["requested_at"])
            if at >= since:
                times.append(at)
    return times


async def latest_consent(session: AsyncSession, account_id: str, phone: str) -> datetime | None:
    """When the lead last consented, by the evidence on record (None: none).

    By phone: evidence recorded before the lead existed (lead_id null) is the lead's too, and
    the newest consent is the one that counts.
    """
    query = select(func.max(Consent.captured_at)).where(
        Consent.account_id == account_id, Consent.phone == phone
    )
    # MAX() keeps the column's type, so the answer is UTC-aware on SQLite and PostgreSQL alike.
    return (await session.exec(query)).first()


async def max_consent_age(
    session: AsyncSession, account_id: str, settings: ComplianceSettings, play_id: str | None
) -> timedelta | None:
    """The limit for this contact: the play's source rule's, else the account's (None: none)."""
    days = settings.max_consent_age_days
    rule = await _source_rule(session, account_id, play_id)
    if rule is not None and SOURCE_RULE_SETTING in rule.settings:
        value = rule.settings[SOURCE_RULE_SETTING]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            days = value or None
        else:
            logger.warning(
                "source rule %s: %s=%r is not a whole number of days; the account's applies",
                rule.id,
                SOURCE_RULE_SETTING,
                value,
            )
    return timedelta(days=days) if days else None


async def _source_rule(
    session: AsyncSession, account_id: str, play_id: str | None
) -> SourceRule | None:
    if play_id is None:
        return None
    play = await session.get(Play, play_id)
    if play is None or play.account_id != account_id or play.source_rule_id is None:
        return None
    rule = await session.get(SourceRule, play.source_rule_id)
    return rule if rule is not None and rule.account_id == account_id else None
