"""Queuing emails: the row first (the database is the source of truth), then its job.

Sender addresses of a playbook's email step: the step's `from`/`reply_to`, else the playbook's
`email` defaults; with no `from` anywhere, the `EMAIL_FROM` setting (resolved when it leaves).

The engine queues emails inside a play's transaction but has no Redis; `queue_email` notes the
new row on the session, and the job that owns the transaction calls `enqueue_pending` after the
commit (a job enqueued before the commit could run before its row exists). If that enqueue is
lost, the sweep finds the row.
"""

from __future__ import annotations

import logging
from datetime import datetime

from arq.connections import ArqRedis
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.ids import new_id
from gateway.models import Email, EmailStatus, Lead, Play
from gateway.optouts import is_opted_out
from gateway.play_templates import fill
from gateway.playbooks import AnyStep, Playbook, SendStep

log = logging.getLogger(__name__)

SEND_JOB = "email.send"
# As for texts: work due further out than this is left to the sweep, so Redis holds no
# long-dated jobs and a flush loses nothing.
MAX_DEFER_SECONDS = 30.0
_PENDING = "gateway.email.pending"  # session.info key: ids queued in this transaction


def send_job_id(email_id: str) -> str:
    return f"email:{email_id}"


async def queue_email(
    session: AsyncSession,
    *,
    account_id: str,
    lead_id: str,
    to: str,
    subject: str,
    body: str,
    from_address: str | None,
    reply_to: str | None,
    play_id: str | None = None,
    step_id: str | None = None,
    rep_id: str | None = None,
) -> Email:
    """A new email in state `queued`; enqueued by `enqueue_pending` after the commit.

    `rep_id`: a notice to that rep about the lead (gated on the rep, not the lead)."""
    email_id = new_id("eml")
    email = Email(
        id=email_id,
        account_id=account_id,
        lead_id=lead_id,
        play_id=play_id,
        step_id=step_id,
        rep_id=rep_id,
        to_address=to,
        from_address=from_address,
        reply_to=reply_to,
        # A header can't hold a line break (and a template may put one there).
        subject=" ".join(subject.split())[:998],
        body=body,
        status=EmailStatus.QUEUED,
    )
    session.add(email)
    session.info.setdefault(_PENDING, []).append(email_id)
    await session.flush()
    return email


def pending(session: AsyncSession) -> list[str]:
    """Ids of the emails queued in this session's transaction (read after the commit)."""
    return list(session.info.get(_PENDING, ()))


async def enqueue_pending(redis: ArqRedis, session: AsyncSession) -> None:
    """Enqueue `email.send` for every email the (committed) transaction queued."""
    for email_id in pending(session):
        await enqueue_email(redis, email_id)
    session.info.pop(_PENDING, None)


async def enqueue_email(redis: ArqRedis, email_id: str, at: datetime | None = None) -> None:
    """Ask the worker to send (at `at`); far-off work and a failed enqueue are the sweep's."""
    job_id = send_job_id(email_id)
    delay = (at - now()).total_seconds() if at is not None else 0.0
    if delay > MAX_DEFER_SECONDS:
        return
    if at is not None and delay > 0:
        job_id = f"{job_id}@{int(at.timestamp())}"
    try:
        await redis.enqueue_job(
            SEND_JOB, email_id, _job_id=job_id, _defer_by=delay if delay > 0 else None
        )
    except Exception:  # Redis down: the row is committed and the sweep will pick it up
        log.warning("could not enqueue %s; the sweep will", job_id, exc_info=True)


def is_email_step(step: AnyStep) -> bool:
    return isinstance(step, SendStep) and step.channel == "email"


async def queue_step_email(
    session: AsyncSession, playbook: Playbook, play: Play, lead: Lead, step: SendStep
) -> Email | None:
    """The step's email to the lead, rendered now and queued; None if the lead has no email."""
    if not lead.email:
        return None
    return await queue_email(
        session,
        account_id=play.account_id,
        lead_id=lead.id,
        to=lead.email,
        subject=fill(step.subject or "", playbook, play, lead),
        body=fill(step.body or "", playbook, play, lead),
        from_address=step.from_ or playbook.email.from_,
        reply_to=step.reply_to or playbook.email.reply_to,
        play_id=play.id,
        step_id=step.id,
    )


async def email_only(session: AsyncSession, playbook: Playbook, play: Play, lead: Lead) -> bool:
    """True when the lead opted out of texts and this playbook goes on by email alone.

    Asked of the opt-out ledger each time (not remembered on the play), so a lead who texts
    START again gets the playbook's texts again."""
    if not playbook.email_after_opt_out:
        return False
    return await is_opted_out(session, play.account_id, lead.phone)
