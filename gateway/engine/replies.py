"""A lead's reply in a running play: match it against the open question, or escalate the
catch-all, or halt a timed drip."""

from __future__ import annotations

from sqlalchemy.orm.attributes import flag_modified
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import playbook_versions
from gateway.clock import now
from gateway.engine.handover import hand_over
from gateway.engine.lifecycle import record_choice_event
from gateway.engine.records import end, log, record_activity
from gateway.engine.stepper import finish, move_to, run_due, send_text
from gateway.models import ActivityType, Lead, Message, Play, PlayState
from gateway.play_templates import fill
from gateway.playbooks import ChoiceAction, Playbook

TALK_TO_HUMAN = "talk_to_human"
CATCH_ALL_EVENTS = {1: "catch_all_level1", 2: "catch_all_level2", 3: "catch_all_level3"}


async def on_reply(session: AsyncSession, play: Play, lead: Lead, text: str) -> list[Message]:
    """Apply one inbound text to a running play; the messages queued."""
    playbook = await playbook_versions.load(
        session, play.account_id, play.playbook_id, play.playbook_version
    )
    play.last_lead_reply_at = now()
    log(session, play, "reply", play.step_id, text=text[:500])
    if play.paused:
        return []  # a person has the conversation (engine/handover.py): recorded, no answer
    if play.waiting_reply and play.step_id is not None:
        action = playbook.read_reply(play.step_id, text)
        if action is None:
            return await _catch_all(session, playbook, play, lead)
        return await _apply(session, playbook, play, lead, action)
    if playbook.halt_drip_on_reply and play.due_at is not None:
        await record_activity(
            session, play, ActivityType.EVENT, "stopped", "the lead replied: drip halted"
        )
        end(session, play, PlayState.STOPPED, "lead replied during a drip")
    return []


async def _apply(
    session: AsyncSession, playbook: Playbook, play: Play, lead: Lead, action: ChoiceAction
) -> list[Message]:
    queued: list[Message] = []
    if action.capture is not None and action.captured is not None:
        play.answers = {**play.answers, action.capture: action.captured}
        lead.additional_info = {**(lead.additional_info or {}), action.capture: action.captured}
        flag_modified(lead, "additional_info")
        lead.updated_at = now()
        session.add(lead)
    if action.reply:
        body = fill(action.reply, playbook, play, lead)
        queued.append(
            await send_text(session, play, lead, body, step_id=action.ask_id, reason="reply")
        )
    if action.event == TALK_TO_HUMAN and not action.outcome:
        # The lead asked for a person: as at catch-all level 3, the play waits in the inbox
        # (its step is where the playbook would go next) and the assigned rep is told.
        move_to(play, playbook.step(action.next_step) if action.next_step else None)
        await hand_over(session, play, "the lead asked for a person")
        return queued
    if action.event:
        await record_choice_event(session, playbook, play, action.event)
    if action.outcome:
        await finish(session, play, action.outcome)
        return queued
    move_to(play, playbook.step(action.next_step) if action.next_step else None)
    return queued + await run_due(session, play, lead)


async def _catch_all(
    session: AsyncSession, playbook: Playbook, play: Play, lead: Lead
) -> list[Message]:
    """Levels 1 and 2 ask again; level 3 hands the lead to a human and pauses the play."""
    assert play.step_id is not None
    play.catch_all_level = min(play.catch_all_level + 1, 3)
    level = play.catch_all_level
    text = playbook.catch_all_for(play.step_id).message(level) or ""
    queued = [
        await send_text(
            session,
            play,
            lead,
            fill(text, playbook, play, lead),
            step_id=play.step_id,
            reason=f"catch_all_{level}",
        )
    ]
    await record_activity(session, play, ActivityType.EVENT, CATCH_ALL_EVENTS[level])
    if level == 3:
        await hand_over(session, play, "no answer matched three times")
    return queued
