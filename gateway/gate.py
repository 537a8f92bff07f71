"""The gate as the gateway runs it: the account's settings, the ledger's opt-out status and the
lead's consent evidence fed into `compliance.gate.decide`, at the moment a text, call or email
is about to leave; and what a consent decision leaves on the play it belongs to.
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
from gateway.engine import lifecycle
from gateway.engine.records import log
from gateway.models import (
    Account,
    Consent,
    Lead,
    Message,
    PartyLineRecord,
    Play,
    PlayLog,
    SourceRule,
)
from gateway.models import Purpose as MessagePurpose
from gateway.optouts import is_opted_out

logger = logging.getLogger(__name__)

# A source rule's settings may carry its own limit; 0 there means "no limit" (settings are
# scalars, so null can't say it), e.g. for the business's own web form.
SOURCE_RULE_SETTING = "max_consent_age_days"
NO_EVIDENCE_LOG = "no_consent_evidence"


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


async def note_on_play(
    session: AsyncSession,
    play_id: str | None,
    decision: GateDecision,
    *,
    channel: Channel = "sms",
    step_id: str | None = None,
    message_id: str | None = None,
    party_line_id: str | None = None,
    repeated: bool = False,
) -> None:
    """Tell the play what the gate decided, in the sender's transaction.

    A block (opted out, consent expired or missing, no known time zone, ...) ends the running
    play and a deferral is logged with its time (`gateway.engine.lifecycle` decides both);
    `repeated`: the same deferral as last time (a poll, not a new decision), not logged again.
    A contact allowed without consent evidence is logged once per play.
    """
    if play_id is None:
        return
    play = await session.get(Play, play_id)
    if play is None:
        return
    ids = {"message_id": message_id, "party_line_id": party_line_id}
    if decision.action == "block":
        await lifecycle.on_blocked(
            session,
            play,
            reason=decision.reason,
            detail=decision.detail,
            channel=channel,
            step_id=step_id,
            **ids,
        )
        return
    if decision.action == "defer" and not repeated:
        lifecycle.on_deferred(
            session,
            play,
            reason=decision.reason,
            detail=decision.detail,
            until=decision.until,
            channel=channel,
            step_id=step_id,
            **ids,
        )
    if decision.action == "allow":
        # Every gate decision is in the play log (GET /v1/plays/{id}/log), an allow too.
        log(session, play, "allowed", step_id, channel=channel, **_present(ids))
    if decision.consent_evidence is False and not await _logged_no_evidence(session, play_id):
        log(session, play, NO_EVIDENCE_LOG, step_id, message_id=message_id)
        await session.flush()


def _present(ids: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in ids.items() if value is not None}


async def _logged_no_evidence(session: AsyncSession, play_id: str) -> bool:
    query = select(PlayLog.id).where(
        PlayLog.play_id == play_id, col(PlayLog.kind) == NO_EVIDENCE_LOG
    )
    return (await session.exec(query.limit(1))).first() is not None
