"""What a person does with a play the bot handed over (or one they take over): reply inside
the conversation, and give it back to the playbook at a named step."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.engine.handover import await_human
from gateway.engine.records import log, record_activity
from gateway.engine.stepper import move_to
from gateway.models import ActivityType, Lead, Message, Play, Purpose
from gateway.playbooks import Playbook
from gateway.sms.outbox import queue_message

HUMAN_REPLIED = "human_replied"
RESUMED = "resumed"


def reply_purpose(play: Play) -> Purpose:
    """A text after the lead has written continues their conversation, as the bot's do."""
    return Purpose.INITIATED if play.last_lead_reply_at is None else Purpose.REPLY


async def human_reply(
    session: AsyncSession, play: Play, lead: Lead, body: str, sender: str | None
) -> Message:
    """Queue a person's text to the lead in the play; the play is theirs from now on (paused,
    in the inbox) until resumed, so the bot never answers over them."""
    message = await queue_message(
        session,
        account_id=play.account_id,
        phone=lead.phone,
        body=body,
        purpose=reply_purpose(play),
        reason="human",
        lead_id=lead.id,
        play_id=play.id,
        step_id=play.step_id,
        sent_by=sender,
    )
    log(session, play, "message", play.step_id, message_id=message.id, reason="human",
        sender=sender)  # fmt: skip
    note = f"by {sender}" if sender else None
    await record_activity(session, play, ActivityType.EVENT, HUMAN_REPLIED, note)
    await_human(play)
    session.add(play)
    return message


async def resume(
    session: AsyncSession, playbook: Playbook, play: Play, step_id: str, by: str | None
) -> None:
    """Back to the playbook at `step_id` (its delay counts from now); the caller stages the
    play's advance in its transaction."""
    play.paused, play.awaiting_human_since = False, None
    move_to(play, playbook.step(step_id))
    play.updated_at = now()
    session.add(play)
    note = f"at step {step_id}" + (f" by {by}" if by else "")
    await record_activity(session, play, ActivityType.EVENT, RESUMED, note)
