"""Queuing emails: the row first (the database is the source of truth), then its job.

Sender addresses of a playbook's email step: the step's `from`/`reply_to`, else the playbook's
`email` defaults; with no `from` anywhere, the `EMAIL_FROM` setting (resolved when it leaves).

`queue_email` stages the row's `email.send` job in the caller's transaction (`gateway.work`).
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.ids import new_id
from gateway.models import Email, EmailStatus, Lead, Play
from gateway.optouts import is_opted_out
from gateway.play_templates import fill
from gateway.playbooks import AnyStep, Playbook, SendStep
from gateway.work import EMAIL_SEND, stage


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
    """A new email in state `queued`, its send staged.

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
    await session.flush()
    stage(session, EMAIL_SEND, email_id)
    return email


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
