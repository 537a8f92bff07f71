"""Sending an email, the channel's part of the `email.send` job (`gateway.jobs.email_send`): gate
the email, claim it, and record what SMTP answered; the job hands it to SMTP once and gives the
engine what the gate decided and whether the email failed for good.

Idempotent under arq's re-runs: the row moves queued -> sending by compare-and-set before the
SMTP transaction, under the lead's contact lock (so an opt-out committing at the same moment is
either seen by the gate or comes after the claim). SMTP has no way to ask whether an earlier,
interrupted transaction got through, so a row left `sending` past `IN_FLIGHT_GRACE` is sent
again with the same Message-ID (at least once; receiving systems use the header to spot it).

The cron sweep gives every due queued email, and every `sending` row whose attempt was
interrupted, a job: Redis only carries jobs, the emails table says what is owed (retries wait
minutes to hours, longer than Redis should hold a job). arq refuses a job id that is already
queued or running, so the sweep never doubles a live job.

Without `SMTP_URL` nothing leaves: an email the gate allows is `captured`, stored for
`GET /v1/emails` to show, which is how the sandbox and development runs see their emails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from compliance.gate import GateDecision
from gateway import gate
from gateway.clock import now
from gateway.contact_lock import lock_contact, reread
from gateway.db import SessionFactory, transaction
from gateway.email import unsubscribe
from gateway.email.transport import DeliveryError, Outgoing, new_message_id
from gateway.models import Account, Email, EmailStatus, Lead, Rep
from gateway.settings import Settings

logger = logging.getLogger(__name__)

# Seconds to wait after the 1st, 2nd, ... transient failure; after the last, the email fails.
# Seven attempts over about ten hours ride out a mail server's restart or a greylisting 4xx.
RETRY_DELAYS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)
# A `sending` row younger than this may still be talking to the server (connect, commands and
# DATA each have their own timeout, all inside the worker's job timeout); older ones are resent.
IN_FLIGHT_GRACE = timedelta(seconds=90)
REP_GONE = "rep_deleted"  # a notice's rep no longer exists: nobody to tell


def retry_delay(attempts: int) -> float | None:
    """Seconds before the next try after `attempts` attempts; None when they are used up."""
    return RETRY_DELAYS[attempts - 1] if 0 < attempts <= len(RETRY_DELAYS) else None


@dataclass(frozen=True)
class Prepared:
    """What preparing an email came to: the email to hand to SMTP, or why not; and what the
    gate decided about it, for the engine (None: it never reached the gate)."""

    result: Outgoing | str
    decision: GateDecision | None = None
    play_id: str | None = None
    step_id: str | None = None


@dataclass(frozen=True)
class Failure:
    """What a failed attempt left: the email (None: it was not being sent, nothing changed) and
    when it is tried again (None with an email: it failed for good)."""

    email: Email | None
    retry_at: datetime | None = None


async def mark_sent(sessions: SessionFactory, email_id: str) -> None:
    """The server took the email: record it (unless another run already moved the row)."""
    async with transaction(sessions) as session:
        moment = now()
        await session.exec(
            update(Email)
            .where(col(Email.id) == email_id, col(Email.status) == EmailStatus.SENDING)
            .values(
                status=EmailStatus.SENT,
                sent_at=moment,
                updated_at=moment,
                error=None,
                smtp_code=None,
                send_after=None,
            )
        )


async def prepare(
    session: AsyncSession, settings: Settings, email_id: str, *, capture: bool
) -> Prepared:
    """Gate the email and claim it for one attempt (or capture it), in the job's transaction."""
    email = await session.get(Email, email_id)
    if email is None:
        return Prepared("missing")
    lead = await session.get(Lead, email.lead_id)
    account = await session.get(Account, email.account_id)
    if lead is None or account is None or lead.account_id != account.id:
        return Prepared("no lead")
    rep = await _rep(session, email)
    # A rep's notice is about the rep: their contact is the one an unsubscribe changes.
    await lock_contact(session, account.id, rep.phone if rep is not None else lead.phone)
    await reread(session, email)
    moment = now()
    if email.status == EmailStatus.SENDING:
        started = email.attempt_started_at or email.updated_at
        if moment - started < IN_FLIGHT_GRACE:
            return Prepared("in flight")  # the sweep comes back once the grace has passed
    elif email.status != EmailStatus.QUEUED:
        return Prepared(f"already {email.status}")
    if email.send_after is not None and email.send_after > moment:
        return Prepared("not due")
    if email.rep_id is not None and rep is None:
        decision = GateDecision(action="block", reason=REP_GONE, detail="the rep was deleted")
    else:
        # A notice to a rep is gated on the rep (staff mail, their own email opt-outs only).
        decision = await gate.decide(
            session,
            account,
            rep.phone if rep is not None else lead.phone,
            channel="email",
            purpose="staff" if rep is not None else "initiated",
            lead=lead if rep is None else None,
            play=email.play_id if rep is None else None,
            email_to=email.to_address,
            rep=rep,
            at=moment,
        )
    # From here on the engine hears the decision, whatever the email becomes: a block ends the
    # email's play (the engine decides how), a deferral is logged on it.
    result = await _act_on(
        session,
        email,
        decision,
        settings=settings,
        account=account,
        lead=lead,
        moment=moment,
        capture=capture,
    )
    return Prepared(result, decision, email.play_id, email.step_id)


async def _act_on(
    session: AsyncSession,
    email: Email,
    decision: GateDecision,
    *,
    settings: Settings,
    account: Account,
    lead: Lead,
    moment: datetime,
    capture: bool,
) -> Outgoing | str:
    """What the gate's decision makes of the email: blocked, deferred, captured or claimed."""
    if decision.action == "block":
        email.status, email.gate_reason = EmailStatus.BLOCKED, decision.reason
        email.error = (decision.detail or decision.reason)[:500]
        email.updated_at = moment
        session.add(email)
        logger.info("email blocked email=%s reason=%s", email.id, decision.reason)
        return f"blocked: {decision.reason}"
    if decision.action == "defer":  # email has no quiet hours today; honour a future rule
        email.send_after, email.gate_reason = decision.until, decision.reason
        session.add(email)
        return "deferred"
    sender = email.from_address or settings.email_from
    message_id = email.message_id or new_message_id(email.id, sender)
    extra_headers: tuple[tuple[str, str], ...] = ()
    if email.rep_id is not None:
        # Staff mail: a way out of these notices only (gateway/email/unsubscribe.py).
        email.body, extra_headers = await unsubscribe.prepare(
            session, account, email, settings.base_url, rep_notice=True
        )
    elif lead.email and email.to_address.strip().lower() == lead.email.strip().lower():
        # An email to the lead carries the way out and the postal address (CAN-SPAM).
        email.body, extra_headers = await unsubscribe.prepare(
            session, account, email, settings.base_url
        )
    if capture:
        email.status, email.from_address, email.message_id = (
            EmailStatus.CAPTURED,
            sender,
            message_id,
        )
        email.updated_at = moment
        session.add(email)
        logger.info("email captured (no SMTP_URL) email=%s", email.id)
        return "captured"
    claimed = await session.exec(
        update(Email)
        .where(
            col(Email.id) == email.id,
            col(Email.status) == email.status,
            col(Email.attempts) == email.attempts,
        )
        .values(
            status=EmailStatus.SENDING,
            attempts=email.attempts + 1,
            attempt_started_at=moment,
            from_address=sender,
            message_id=message_id,
            body=email.body,
            gate_reason=None,
            updated_at=moment,
        )
    )
    if claimed.rowcount != 1:
        return "claimed elsewhere"
    return Outgoing(
        to=email.to_address,
        sender=sender,
        subject=email.subject,
        body=email.body,
        message_id=message_id,
        reply_to=email.reply_to,
        date=moment,
        headers=extra_headers,
    )


async def _rep(session: AsyncSession, email: Email) -> Rep | None:
    """The rep a notice email is for (None: an email to the lead, or the rep is gone)."""
    if email.rep_id is None:
        return None
    rep = await session.get(Rep, email.rep_id)
    return rep if rep is not None and rep.account_id == email.account_id else None


async def record_failure(session: AsyncSession, email_id: str, exc: DeliveryError) -> Failure:
    """A transient error waits for the next try on the schedule; a permanent one (or the last
    try) fails the email (then the job tells the engine, whose playbook `on_failure` decides
    what the play does). In the job's transaction."""
    email = await session.get(Email, email_id)
    if email is None or email.status != EmailStatus.SENDING:
        return Failure(None)
    moment = now()
    delay = retry_delay(email.attempts) if exc.transient else None
    email.error, email.smtp_code, email.updated_at = str(exc)[:500], exc.code, moment
    retry_at = None
    if delay is not None:
        retry_at = moment + timedelta(seconds=delay)
        email.status, email.send_after = EmailStatus.QUEUED, retry_at
    else:
        email.status = EmailStatus.FAILED
    session.add(email)
    return Failure(email, retry_at)
