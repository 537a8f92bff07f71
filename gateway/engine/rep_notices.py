"""Telling a rep about a lead: a text to the rep's phone when a lead is assigned to them (round
robin by a source rule, or by `POST /v1/leads/{id}/assign`) and when the lead asks for a
person (`talk_to_human`).

The text goes through the same outbox and gate as a lead's texts, with purpose `staff`: the
rep's own opt-out (a STOP from the rep's phone, or the API) blocks it, but quiet hours, state
rules, caps and consent age don't apply, since they protect consumers, and a rep is the
business's own staff being told about their work (compliance/gate.py `staff_rule`). The
message has no play and no lead, so a blocked notice never ends the lead's play; the play log
has a `rep_notified` entry with the message id.

How the rep is told is the play's source rule's `notify` (`{"sms": true}` unless set); a play
without a source rule texts its rep. The engine has no Redis: queued notices are noted on the
session and `enqueue_pending` hands them to the worker after the commit (the SMS sweep finds
any whose enqueue is lost).
"""

from __future__ import annotations

from typing import Any, Final

from arq.connections import ArqRedis
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.models import Account, Lead, Message, Play, PlayLog, Purpose, Rep, SourceRule
from gateway.sms.outbox import enqueue_send, queue_message

DEFAULT_NOTIFY: Final[dict[str, Any]] = {"sms": True}
_PENDING = "gateway.rep_notices.pending"  # session.info key: notices queued in this transaction
_WHY = {
    "assigned": "assigned to you",
    "talk_to_human": "wants to talk to a person",
}


async def notify_setting(session: AsyncSession, play: Play) -> dict[str, Any]:
    """The play's source rule's `notify`, or the default."""
    if play.source_rule_id is None:
        return DEFAULT_NOTIFY
    rule = await session.get(SourceRule, play.source_rule_id)
    if rule is None or rule.account_id != play.account_id:
        return DEFAULT_NOTIFY
    return rule.notify or DEFAULT_NOTIFY


def notice_text(account: Account, lead: Lead, why: str) -> str:
    """The rep's text: who the lead is (name, phone, id) and why they hear of it."""
    name = " ".join(part for part in (lead.first_name, lead.last_name) if part) or "(no name)"
    return f"{account.name}: lead {name} {lead.phone} {_WHY.get(why, why)}. Lead id {lead.id}"


async def notify_rep(session: AsyncSession, play: Play, rep: Rep, why: str) -> Message | None:
    """Queue the text to `rep` about `play`'s lead (None: the source rule says not to)."""
    if rep.account_id != play.account_id:
        return None  # never tell another account's rep, whatever a row says
    if not (await notify_setting(session, play)).get("sms", True):
        _log(session, play, "rep_not_notified", rep_id=rep.id, why=why, channel="sms")
        return None
    account = await session.get(Account, play.account_id)
    lead = await session.get(Lead, play.lead_id)
    assert account is not None and lead is not None
    message = await queue_message(
        session,
        account_id=play.account_id,
        phone=rep.phone,
        body=notice_text(account, lead, why),
        purpose=Purpose.STAFF,
        reason=f"rep_notice:{why}"[:40],
    )
    session.info.setdefault(_PENDING, []).append(message.id)
    _log(session, play, "rep_notified", rep_id=rep.id, why=why, message_id=message.id)
    return message


async def notify_assigned_rep(session: AsyncSession, play: Play, why: str) -> Message | None:
    """Tell the play's assigned rep, if it has one."""
    if play.rep_id is None:
        return None
    rep = await session.get(Rep, play.rep_id)
    if rep is None:
        return None
    return await notify_rep(session, play, rep, why)


async def enqueue_pending(redis: ArqRedis, session: AsyncSession) -> None:
    """Hand the notices queued in `session`'s (committed) transaction to the worker."""
    for message_id in session.info.pop(_PENDING, ()):
        await enqueue_send(redis, message_id)


def _log(session: AsyncSession, play: Play, kind: str, **detail: Any) -> None:
    # Not engine.records.log: records imports this module (talk_to_human notifies).
    session.add(PlayLog(play_id=play.id, kind=kind, step_id=None, detail=detail))
