"""Telling a rep about a lead: a text to the rep's phone and/or an email to the rep's address
when a lead is assigned to them (round robin by a source rule, or by
`POST /v1/leads/{id}/assign`) and when the lead asks for a person (`talk_to_human`).

How: the playbook's `notify` (`{sms: true, email: false}` unless it says), each channel
overridden by the play's source rule's `notify` when the rule names it.

Both go through the same outboxes and gate as a lead's texts and emails, with purpose `staff`:
quiet hours, state rules, caps and consent age don't apply, since they protect consumers, and a
rep is the business's own staff being told about their work (compliance/gate.py
`staff_rule`). Only the rep's own opt-out counts, per channel: a STOP from the rep's phone
blocks the texts, an email opt-out of the rep's address (the ledger's, or the notice email's
own unsubscribe link, `Rep.notice_emails_stopped`) blocks the emails; the lead's status never
does. A text has no play and no lead, an email names the lead (`lead_id`, in its body too) but
no play, so a blocked or failed notice never ends the lead's play. The play log has a
`rep_notified` entry per channel with the message or email id (`rep_not_notified` with the
reason when none goes).

Queuing a notice stages its send in the caller's transaction (`gateway.work.stage`).
"""

from __future__ import annotations

from typing import Any, Final

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import play_log_rows, playbook_versions
from gateway.email import outbox as email_outbox
from gateway.models import Account, Lead, Play, Purpose, Rep, SourceRule
from gateway.sms.outbox import queue_message

CHANNELS: Final = ("sms", "email")
_WHY = {
    "assigned": "assigned to you",
    "talk_to_human": "wants to talk to a person",
}


async def notify_setting(session: AsyncSession, play: Play) -> dict[str, bool]:
    """Which channels tell the rep: the playbook's `notify`, each overridden by the rule's."""
    playbook = await playbook_versions.load(
        session, play.account_id, play.playbook_id, play.playbook_version
    )
    setting = {"sms": playbook.notify.sms, "email": playbook.notify.email}
    if play.source_rule_id is not None:
        rule = await session.get(SourceRule, play.source_rule_id)
        if rule is not None and rule.account_id == play.account_id:
            said = rule.notify or {}
            setting.update({c: bool(said[c]) for c in CHANNELS if said.get(c) is not None})
    return setting


def lead_name(lead: Lead) -> str:
    return " ".join(part for part in (lead.first_name, lead.last_name) if part) or "(no name)"


def notice_text(account: Account, lead: Lead, why: str) -> str:
    """The rep's text: who the lead is (name, phone, id) and why they hear of it."""
    return (
        f"{account.name}: lead {lead_name(lead)} {lead.phone} {_WHY.get(why, why)}. "
        f"Lead id {lead.id}"
    )


def notice_email(account: Account, lead: Lead, rep: Rep, why: str) -> tuple[str, str]:
    """The rep's email: subject and body, with the lead's name, phone, email and id."""
    name = lead_name(lead)
    subject = f"{account.name}: lead {name} {_WHY.get(why, why)}"
    lines = [
        f"Hi {rep.name},",
        "",
        f"Lead {name} {_WHY.get(why, why)}.",
        "",
        f"Name: {name}",
        f"Phone: {lead.phone}",
    ]
    if lead.email:
        lines.append(f"Email: {lead.email}")
    lines += [f"Lead id: {lead.id}", "", f"In the gateway's API: GET /v1/leads/{lead.id}"]
    return subject, "\n".join(lines) + "\n"


async def notify_rep(session: AsyncSession, play: Play, rep: Rep, why: str) -> None:
    """Queue the text and/or email to `rep` about `play`'s lead, as `notify_setting` says."""
    if rep.account_id != play.account_id:
        return  # never tell another account's rep, whatever a row says
    setting = await notify_setting(session, play)
    account = await session.get(Account, play.account_id)
    lead = await session.get(Lead, play.lead_id)
    assert account is not None and lead is not None
    if not any(setting.values()):
        _log(session, play, "rep_not_notified", rep_id=rep.id, why=why, channel="none")
        return
    if setting["sms"]:
        message = await queue_message(
            session,
            account_id=play.account_id,
            phone=rep.phone,
            body=notice_text(account, lead, why),
            purpose=Purpose.STAFF,
            reason=f"rep_notice:{why}"[:40],
        )
        _log(session, play, "rep_notified", rep_id=rep.id, why=why, message_id=message.id)
    if setting["email"]:
        await _email(session, play, account=account, lead=lead, rep=rep, why=why)


async def _email(
    session: AsyncSession, play: Play, *, account: Account, lead: Lead, rep: Rep, why: str
) -> None:
    if not rep.email:
        _log(session, play, "rep_not_notified", rep_id=rep.id, why=why, channel="email",
             reason="the rep has no email address")  # fmt: skip
        return
    playbook = await playbook_versions.load(
        session, play.account_id, play.playbook_id, play.playbook_version
    )
    subject, body = notice_email(account, lead, rep, why)
    email = await email_outbox.queue_email(
        session,
        account_id=play.account_id,
        lead_id=lead.id,
        to=rep.email,
        subject=subject,
        body=body,
        from_address=playbook.email.from_,  # the playbook's sender, else EMAIL_FROM
        reply_to=None,
        rep_id=rep.id,
    )
    _log(session, play, "rep_notified", rep_id=rep.id, why=why, channel="email",
         email_id=email.id)  # fmt: skip


async def notify_assigned_rep(session: AsyncSession, play: Play, why: str) -> None:
    """Tell the play's assigned rep, if it has one."""
    if play.rep_id is None:
        return
    rep = await session.get(Rep, play.rep_id)
    if rep is None:
        return
    await notify_rep(session, play, rep, why)


def _log(session: AsyncSession, play: Play, kind: str, **detail: Any) -> None:
    # Not engine.records.log: records imports this module (talk_to_human notifies).
    play_log_rows.add(session, play.id, kind, None, detail)
