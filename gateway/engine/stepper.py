"""Running a play's steps: what each kind of step does when its time has come.

A play sits on `step_id`; `due_at` says when that step acts (a delay or a wait) or, at an open
question, when a re-engagement text is owed. `run_due` executes everything due in one
transaction and stops at the first step that waits (a question, a delay, a human).
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import playbook_versions
from gateway.clock import now
from gateway.db import among
from gateway.email.outbox import email_only, is_email_step, queue_step_email
from gateway.engine.handover import hand_over
from gateway.engine.records import end, log, record_activity
from gateway.ids import new_id
from gateway.models import (
    Account,
    ActivityType,
    Email,
    EmailStatus,
    Lead,
    Message,
    MessageStatus,
    Play,
    PlayState,
    Purpose,
)
from gateway.play_templates import fill
from gateway.playbooks import (
    AnyStep,
    AskStep,
    CallStep,
    GotoStep,
    OutcomeStep,
    Playbook,
    SendStep,
    WaitStep,
)
from gateway.sms.outbox import queue_message
from voice.starting import PartyLineError, start_party_line

MAX_STEPS_PER_RUN = 50  # a guard: validation already refuses loops with no pause
END_RECHECK = timedelta(minutes=1)
PENDING_TEXT = (MessageStatus.QUEUED, MessageStatus.SENDING)
PENDING_EMAIL = (
    EmailStatus.QUEUED,
    EmailStatus.SENDING,
)  # a guard: validation already refuses loops with no pause


def step_delay(step: AnyStep) -> timedelta:
    if isinstance(step, WaitStep):
        return step.duration
    return getattr(step, "delay", timedelta(0))


def move_to(play: Play, step: AnyStep | None) -> None:
    """Point the play at `step`, due after the step's delay (relative to this action)."""
    play.waiting_reply, play.catch_all_level = False, 0
    if step is None:
        play.step_id, play.due_at = None, now()  # due now: run_due closes the play
        return
    play.step_id, play.due_at = step.id, now() + step_delay(step)


async def send_text(
    session: AsyncSession, play: Play, lead: Lead, body: str, *, step_id: str | None, reason: str
) -> Message:
    message = await queue_message(
        session,
        account_id=play.account_id,
        phone=lead.phone,
        body=body,
        purpose=Purpose.INITIATED if play.last_lead_reply_at is None else Purpose.REPLY,
        reason=reason,
        lead_id=lead.id,
        play_id=play.id,
        step_id=step_id,
    )
    log(session, play, "message", step_id, message_id=message.id, reason=reason)
    return message


async def finish(session: AsyncSession, play: Play, outcome: str, note: str | None = None) -> None:
    """The play reached an outcome: record it, then `completed`, and end it."""
    play.outcome = outcome
    await record_activity(session, play, ActivityType.OUTCOME, outcome, note)
    await record_activity(session, play, ActivityType.EVENT, "completed", note)
    end(session, play, PlayState.HAS_OUTCOME, f"outcome {outcome}")


async def run_due(session: AsyncSession, play: Play, lead: Lead) -> list[Message]:
    """Execute what is due; the messages queued (their sends are staged)."""
    playbook = await playbook_versions.load(
        session, play.account_id, play.playbook_id, play.playbook_version
    )
    queued: list[Message] = []
    # Before any step: a play not written yet (`starting.start_play`) is written with it.
    play.updated_at = now()
    for _ in range(MAX_STEPS_PER_RUN):
        if play.state != PlayState.RUNNING or play.paused or play.due_at is None:
            break
        if play.due_at > now():
            break
        if play.waiting_reply:
            queued += await _reengage(session, playbook, play, lead)
            break
        if await email_only(session, playbook, play, lead) and _by_email_only(
            session, playbook, play
        ):
            continue
        if play.step_id is None:
            if await _still_sending(session, play):
                # Its last texts are not out yet: what happens to them (a gate block, a
                # failure) still belongs to this play. Their outcome, or the sweep, ends it.
                play.due_at = now() + END_RECHECK
                break
            await record_activity(session, play, ActivityType.EVENT, "stopped", "end of playbook")
            end(session, play, PlayState.STOPPED, "reached the end of the playbook")
            break
        queued += await _execute(session, playbook, play, lead, playbook.step(play.step_id))
    session.add(play)
    return queued


async def _execute(
    session: AsyncSession, playbook: Playbook, play: Play, lead: Lead, step: AnyStep
) -> list[Message]:
    log(session, play, "step", step.id, kind=step.kind)
    if isinstance(step, SendStep):
        if step.channel == "email":
            # Queued now, sent (or captured) by `email.send`, which gates it again when it
            # leaves and applies on_failure if SMTP refuses it for good.
            email = await queue_step_email(session, playbook, play, lead, step)
            if email is None:
                log(session, play, "failed", step.id, why="the lead has no email address")
                if playbook.on_failure == "halt":
                    await record_activity(
                        session, play, ActivityType.EVENT, "stopped", "email failed: no address"
                    )
                    end(session, play, PlayState.STOPPED, "email step failed (on_failure: halt)")
                    return []
            else:
                log(session, play, "email", step.id, email_id=email.id)
            move_to(play, playbook.next_step(step.id))
            return []
        # The play moves on before its text is queued: a play not written yet is written by
        # the text's INSERT (`starting.start_play`), as the step leaves it.
        body = fill(step.text or "", playbook, play, lead)
        move_to(play, playbook.next_step(step.id))
        return [await send_text(session, play, lead, body, step_id=step.id, reason="send")]
    if isinstance(step, AskStep):
        body = fill(step.text, playbook, play, lead)
        play.waiting_reply, play.catch_all_level = True, 0
        play.due_at = now() + playbook.reengagement.after if playbook.reengagement else None
        return [await send_text(session, play, lead, body, step_id=step.id, reason="ask")]
    if isinstance(step, WaitStep):
        move_to(play, playbook.next_step(step.id))
        return []
    if isinstance(step, CallStep):
        await _call(session, playbook, play, lead, step)
        return []
    if isinstance(step, OutcomeStep):
        await finish(session, play, step.outcome)
        return []
    if isinstance(step, GotoStep):
        await _transition(session, play, step)
        return []
    raise TypeError(f"unknown step kind {step.kind!r}")


async def _call(
    session: AsyncSession, playbook: Playbook, play: Play, lead: Lead, step: CallStep
) -> None:
    """Start a party line; the play waits on this step until the party line ends
    (the party line reports its end, and `lifecycle.on_party_line_reports` finishes the play
    with its outcome or moves it on)."""
    play.paused, play.due_at = True, None
    account = await session.get(Account, play.account_id)
    assert account is not None
    whisper = fill(step.whisper, playbook, play, lead) if step.whisper else None
    try:
        row = await start_party_line(
            session, account=account, play=play, lead=lead, step_id=step.id, whisper=whisper
        )
        log(session, play, "party_line", step.id, party_line_id=row.id)
    except PartyLineError as exc:
        if exc.code == "conflict":
            return  # the live party line ends this step
        # No way to call (no number, a bad policy setting): a human takes the lead from here.
        log(session, play, "failed", step.id, why=exc.message)
        await hand_over(session, play, exc.message)


def _by_email_only(session: AsyncSession, playbook: Playbook, play: Play) -> bool:
    """The lead opted out of texts and the playbook keeps emailing: emails and waits run as
    usual (False), texts and calls are passed over, and where the play would end or needs the
    lead's texts (an ask, an outcome, a goto, the end) it ends `opted_out` (True: handled)."""
    step = playbook.step(play.step_id) if play.step_id is not None else None
    if step is not None and (is_email_step(step) or isinstance(step, WaitStep)):
        return False
    if isinstance(step, SendStep | CallStep):
        log(session, play, "skipped", step.id, why="the lead opted out: email only")
        move_to(play, playbook.next_step(step.id))
        return True
    end(session, play, PlayState.OPTED_OUT, "the lead opted out; the emails are done")
    return True


async def _still_sending(session: AsyncSession, play: Play) -> bool:
    """Whether a text or email of the play has not been handed off yet."""
    text = select(Message.id).where(
        Message.account_id == play.account_id,
        Message.play_id == play.id,
        among(col(Message.status), PENDING_TEXT),
    )
    email = select(Email.id).where(
        Email.account_id == play.account_id,
        Email.play_id == play.id,
        among(col(Email.status), PENDING_EMAIL),
    )
    for query in (text, email):
        if (await session.exec(query.limit(1))).first() is not None:
            return True
    return False


async def _reengage(
    session: AsyncSession, playbook: Playbook, play: Play, lead: Lead
) -> list[Message]:
    """The lead went quiet on an open question: nudge, at most `max` times."""
    policy = playbook.reengagement
    if policy is None or play.reengagements_sent >= policy.max:
        play.due_at = None
        return []
    body = fill(policy.text, playbook, play, lead)
    # The play moves on before its text is queued, as a step's does: the session writes the
    # play's changes before the text's INSERT, in one UPDATE (made after it, each change was
    # written by an UPDATE of its own before the next statement).
    play.reengagements_sent += 1
    more = play.reengagements_sent < policy.max
    play.due_at = now() + policy.after if more else None
    message = await send_text(
        session, play, lead, body, step_id=play.step_id, reason="reengagement"
    )
    await record_activity(
        session, play, ActivityType.EVENT, "reengagement_sent", f"#{play.reengagements_sent}"
    )
    return [message]


async def _transition(session: AsyncSession, play: Play, step: GotoStep) -> None:
    """Hand the lead to another playbook (its latest version) and end this play."""
    version = await playbook_versions.latest_version(session, play.account_id, step.playbook)
    if version is None:
        log(session, play, "failed", step.id, why=f"playbook {step.playbook} not found")
        await record_activity(session, play, ActivityType.EVENT, "stopped", "goto target missing")
        end(session, play, PlayState.STOPPED, f"playbook {step.playbook} not found")
        return
    end(session, play, PlayState.STOPPED, f"transition to {step.playbook}")
    await record_activity(
        session, play, ActivityType.EVENT, "completed", f"continues in {step.playbook}"
    )
    await session.flush()  # the unique running-play index must see this play as ended
    follow = Play(
        id=new_id("play"),
        account_id=play.account_id,
        lead_id=play.lead_id,
        playbook_id=step.playbook,
        playbook_version=version,
        state=PlayState.RUNNING,
        settings={**play.settings, **step.settings},
        rep_id=play.rep_id,
        source_rule_id=play.source_rule_id,
        step_id=None,
        due_at=now(),
    )
    target = await playbook_versions.load(session, play.account_id, step.playbook, version)
    follow.step_id = target.start().id
    follow.due_at = now() + step_delay(target.start())
    session.add(follow)
    log(session, play, "transition", step.id, next_play_id=follow.id)
