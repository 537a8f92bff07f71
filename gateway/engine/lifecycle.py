"""What a play becomes when a channel reports: a text `accepted`, `failed` or meeting an
opt-out, a gate block or deferral, what a party line did (its activities, the lead pressing 9,
its end), an event a choice records.

Channels (texts, calls) only say what happened; the job or route that ran them hands the report
to this module in the same transaction, and only this module decides whether the play ends,
with which state and outcome, or goes on. Every decision leaves its activity (and so its
webhook deliveries) and a play log entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from compliance.gate import Channel, GateDecision
from gateway import activity_webhooks, playbook_versions
from gateway.clock import now
from gateway.contact_lock import lock_contact, reread
from gateway.db import numbered, numbered_values, rows_of
from gateway.engine.records import (
    end,
    log,
    log_by_id,
    log_once,
    record_activities,
    record_activity,
)
from gateway.engine.stepper import finish, move_to
from gateway.models import Activity, ActivityType, Email, Lead, Message, Play, PlayState
from gateway.optouts import is_opted_out
from gateway.playbooks import Playbook
from gateway.sms.status import TextOutcome
from voice.runner import ActivityRecorded, GateNoted, LeadOptedOut, PartyLineEnded, PlayReport

OPTED_OUT = "opted_out"  # compliance.gate.OPTED_OUT: the gate's reason, and the play's outcome
# How each party-line end reason ends the play (gateway/playbooks/README.md, "Party lines and
# the play"). Ends not listed settled nothing: a playbook's call step goes on at its `next`, a
# party line started by the API leaves the play where it was.
PARTY_LINE_OUTCOMES = {
    "completed": "party_line_completed",
    "callback_requested": "callback_requested",
    "rep_unsuccessful": "rep_unsuccessful",
}
# The voice machine records these outcome activities itself, as they happen.
RECORDED_BY_VOICE = frozenset({"completed", "callback_requested"})
NO_EVIDENCE_LOG = "no_consent_evidence"


async def has_activity(session: AsyncSession, play_id: str, label: str) -> bool:
    """Whether the play has an activity labelled `label`: written, or recorded in this
    transaction and kept to its commit."""
    if any(a.play_id == play_id and a.label == label for a in activity_webhooks.kept(session)):
        return True
    query = select(Activity.id).where(Activity.play_id == play_id, Activity.label == label)
    # Nothing pending in the session changes the answer (activities are kept to the commit):
    # without the autoflush, a play's changes before and after go in one UPDATE, not two.
    with session.no_autoflush:
        return (await session.exec(query.limit(1))).first() is not None


async def on_gate_decision(
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
    """What the gate decided about a contact of the play, in the sender's transaction.

    A block (opted out, consent expired or missing, no known time zone, ...) ends the running
    play (`on_blocked`) and a deferral is logged with its time (`on_deferred`); `repeated`: the
    same deferral as last time (a poll, not a new decision), not logged again. A contact
    allowed without consent evidence is logged once per play.
    """
    if play_id is None:
        return
    if decision.action == "allow":
        # Every gate decision is in the play log (GET /v1/plays/{id}/log), an allow too; on a
        # send's hot path, written without loading the play.
        log_by_id(
            session, play_id, "allowed", step_id, channel=channel, **_ids(message_id, party_line_id)
        )
        _note_no_evidence(session, play_id, decision, step_id, message_id)
        return
    play = await session.get(Play, play_id)
    if play is None:
        return
    if decision.action == "block":
        await on_blocked(
            session,
            play,
            reason=decision.reason,
            detail=decision.detail,
            channel=channel,
            step_id=step_id,
            message_id=message_id,
            party_line_id=party_line_id,
        )
        return
    if decision.action == "defer" and not repeated:
        on_deferred(
            session,
            play,
            reason=decision.reason,
            detail=decision.detail,
            until=decision.until,
            channel=channel,
            step_id=step_id,
            message_id=message_id,
            party_line_id=party_line_id,
        )
    _note_no_evidence(session, play_id, decision, step_id, message_id)


def _note_no_evidence(
    session: AsyncSession,
    play_id: str,
    decision: GateDecision,
    step_id: str | None,
    message_id: str | None,
) -> None:
    """A contact allowed without consent evidence is logged once per play."""
    if decision.consent_evidence is False:
        log_once(session, play_id, NO_EVIDENCE_LOG, step_id, message_id=message_id)


async def on_blocked(
    session: AsyncSession,
    play: Play,
    *,
    reason: str,
    detail: str,
    channel: str,
    step_id: str | None,
    message_id: str | None = None,
    party_line_id: str | None = None,
) -> None:
    """The gate refused a text or call of the play for good.

    A block is never temporary (a deferral is): every later contact would meet it too, so a
    running play ends here rather than wait for a reply that can't come. An opted-out lead's
    play ends `opted_out` (as a STOP would have ended it); any other block ends it `stopped`
    with the reason.
    """
    log(
        session,
        play,
        "blocked",
        step_id,
        channel=channel,
        reason=reason,
        detail=detail,
        **_ids(message_id, party_line_id),
    )
    if play.state != PlayState.RUNNING:
        return
    if channel == "email" and not await _texts_refused(session, play, reason):
        return  # the address unsubscribed from email only: texts and calls go on
    if reason == OPTED_OUT:
        await opt_out_play(session, play)
        return
    note = f"{reason}: {detail}" if detail else reason
    await record_activity(session, play, ActivityType.EVENT, "stopped", note)
    end(session, play, PlayState.STOPPED, note)


def on_deferred(
    session: AsyncSession,
    play: Play,
    *,
    reason: str,
    detail: str,
    until: datetime | None,
    channel: str,
    step_id: str | None,
    message_id: str | None = None,
    party_line_id: str | None = None,
) -> None:
    """The gate held a text or call back (quiet hours, a state rule, the frequency cap): one
    log entry per decision, saying why and when it will go. The play itself waits as it is."""
    log(
        session,
        play,
        "deferred",
        step_id,
        channel=channel,
        reason=reason,
        detail=detail,
        until=until.isoformat() if until is not None else None,
        **_ids(message_id, party_line_id),
    )


async def opt_out_play(session: AsyncSession, play: Play) -> None:
    """The lead opted out: the running play records `opted_out` and ends `opted_out`, unless
    its playbook goes on by email (then the stepper passes over texts and calls and ends it
    `opted_out` once the emails are done)."""
    if play.state != PlayState.RUNNING:
        return
    playbook = await _playbook(session, play)
    if not playbook.email_after_opt_out:
        await record_activity(session, play, ActivityType.OUTCOME, OPTED_OUT)
        end(session, play, PlayState.OPTED_OUT, "the lead opted out")
        return
    if await has_activity(session, play.id, OPTED_OUT):
        return  # told already: this is a later text of the same play meeting the opt-out
    await record_activity(session, play, ActivityType.OUTCOME, OPTED_OUT)
    # An open question can't be answered any more: move on now.
    log(session, play, "opted_out", play.step_id, continues="email only")
    if play.waiting_reply:
        play.waiting_reply, play.due_at = False, now()
    session.add(play)


async def on_opt_out(session: AsyncSession, account_id: str, phone: str) -> None:
    """The lead opted out: every running play of theirs ends `opted_out`."""
    plays = (
        await session.exec(
            select(Play)
            .join(Lead, col(Lead.id) == col(Play.lead_id))
            .where(
                Lead.account_id == account_id,
                Lead.phone == phone,
                Play.state == PlayState.RUNNING,
            )
        )
    ).all()
    for play in plays:
        await opt_out_play(session, play)


async def on_text(session: AsyncSession, message: Message, outcome: TextOutcome | None) -> None:
    """What the sms channel reported about one of our texts (None: nothing the play hears)."""
    if outcome == "accepted":
        await on_texts_accepted(session, [message])
    elif outcome == "failed":
        await _text_failed(session, message)
    elif outcome == "opted_out":
        # The carrier says the lead opted out (21610): the ledger has it now; so do the plays.
        await on_opt_out(session, message.account_id, message.lead_phone)


_PLAYS = Play.__table__  # type: ignore[attr-defined]


@cache
def _start(count: int) -> Any:
    """`on_texts_accepted`'s claim of `started` for `count` plays, built once per count: the
    plays it moved, returned."""
    claim = update(_PLAYS).where(
        _PLAYS.c.id.in_(numbered("id", count)), _PLAYS.c.started.is_(False)
    )
    return rows_of(Play, claim.values(started=True))


@cache
def _recheck(count: int) -> Any:
    """`_recheck_if_finished` for `count` plays not in hand, built once per count."""
    return (
        update(_PLAYS)
        .where(
            _PLAYS.c.id.in_(numbered("id", count)),
            _PLAYS.c.state == PlayState.RUNNING,
            _PLAYS.c.step_id.is_(None),
        )
        .values(due_at=bindparam("due_at"))
    )


async def on_texts_accepted(session: AsyncSession, messages: Sequence[Message]) -> None:
    """Twilio took these texts (a drain's batch, or one): a play whose first text it was has
    `started`, and a play past its last step looks again now. Whatever the count, one
    statement claims `started` for their plays and returns those it moved, one records their
    activities, and one looks again at the others (each play's first text found it started
    and read the play before, two statements a text)."""
    play_ids = list(dict.fromkeys(m.play_id for m in messages if m.play_id is not None))
    if not play_ids:
        return
    claimed = await session.exec(_start(len(play_ids)), params=numbered_values("id", play_ids))
    started: Sequence[Play] = claimed.scalars().all()
    await record_activities(session, [(p, ActivityType.EVENT, "started", None) for p in started])
    for play in started:
        _recheck_if_finished(session, play)
    moved = {play.id for play in started}
    rest = [play_id for play_id in play_ids if play_id not in moved]
    if rest:
        params = {**numbered_values("id", rest), "due_at": now()}
        await session.exec(_recheck(len(rest)), params=params)


def _recheck_if_finished(session: AsyncSession, play: Play) -> None:
    """A play past its last step waits for its last texts; one just settled: look again now."""
    if play.state == PlayState.RUNNING and play.step_id is None:
        play.due_at = now()
        session.add(play)


async def _text_failed(session: AsyncSession, message: Message) -> None:
    """A play's text failed for good (landline, invalid number, ...): the playbook's
    `on_failure` decides. `halt` ends the play; `skip` moves past the step, picked up by the
    plays sweep."""
    if message.play_id is None:
        return
    play = await session.get(Play, message.play_id)
    if play is None or play.state != PlayState.RUNNING:
        return
    playbook = await _playbook(session, play)
    why = f"text failed: {message.error_code or message.error_message or message.status}"
    if playbook.on_failure == "halt":
        await record_activity(session, play, ActivityType.EVENT, "stopped", why)
        end(session, play, PlayState.STOPPED, f"{why} (on_failure: halt)")
        return
    log(session, play, "skipped", message.step_id, why=why)
    _recheck_if_finished(session, play)
    if play.waiting_reply and message.step_id is not None and play.step_id == message.step_id:
        # The question can't be answered: go where the ask goes without an answer.
        move_to(play, playbook.next_step(message.step_id))
        play.due_at = now()  # act on the next step now, not after its delay
        session.add(play)


async def on_email_failed(session: AsyncSession, email: Email) -> None:
    """An email of a play failed for good: `halt` ends the play (event stopped), `skip` goes
    on (the play's log says why either way)."""
    if email.play_id is None:
        return
    lead = await session.get(Lead, email.lead_id)
    assert lead is not None
    await lock_contact(session, email.account_id, lead.phone)  # plays change under it
    play = (
        await session.exec(
            select(Play).where(Play.id == email.play_id, Play.account_id == email.account_id)
        )
    ).first()
    if play is None:
        return
    await reread(session, play)
    playbook = await _playbook(session, play)
    log(session, play, "failed", email.step_id, email_id=email.id, why=email.error)
    if play.state != PlayState.RUNNING or playbook.on_failure != "halt":
        return
    await record_activity(session, play, ActivityType.EVENT, "stopped", "email failed")
    end(session, play, PlayState.STOPPED, "email failed (on_failure: halt)")


async def on_party_line_reports(
    session: AsyncSession, play: Play, reports: Sequence[PlayReport]
) -> bool:
    """What a party line of the play reported, in the order it happened (`voice.runner`);
    True when the play moved on to a step that is due now (the caller stages its advance)."""
    moved_on = False
    for report in reports:
        match report:
            case ActivityRecorded(kind=kind, label=label, note=note):
                await record_activity(session, play, ActivityType(kind), label, note)
            case GateNoted(decision=decision, step_id=step_id, party_line_id=party_line_id):
                await on_gate_decision(session, play.id, decision, channel="call",
                    step_id=step_id, party_line_id=party_line_id)  # fmt: skip
                log(session, play, "party_line_gate", step_id, party_line_id=party_line_id,
                    action=decision.action, reason=decision.reason)  # fmt: skip
            case LeadOptedOut(account_id=account_id, phone=phone):
                await on_opt_out(session, account_id, phone)
            case PartyLineEnded():
                log(session, play, "party_line_end", report.step_id,
                    party_line_id=report.party_line_id, reason=report.reason,
                    note=report.note)  # fmt: skip
                moved_on = (
                    await on_party_line_end(
                        session,
                        play,
                        reason=report.reason,
                        step_id=report.step_id,
                        party_line_id=report.party_line_id,
                    )
                    or moved_on
                )
    return moved_on


async def on_party_line_end(
    session: AsyncSession,
    play: Play,
    *,
    reason: str,
    step_id: str | None,
    party_line_id: str,
) -> bool:
    """A party line of the play ended with `reason`; True when the play moved on to a step
    that is due now (the caller stages its advance).

    `step_id` is the call step that started it; None for one started by the API.
    """
    if play.state != PlayState.RUNNING:
        return False  # over already (an opt-out or a gate block ended it)
    if step_id is not None and (not play.paused or play.step_id != step_id):
        return False  # the play moved on already (a provisional end, corrected later)
    outcome = PARTY_LINE_OUTCOMES.get(reason)
    if outcome is not None:
        note = f"party line {party_line_id}: {reason}"
        if reason in RECORDED_BY_VOICE:
            # The machine recorded the outcome activity itself; the play ends with it.
            play.outcome = outcome
            await record_activity(session, play, ActivityType.EVENT, "completed", outcome)
            end(session, play, PlayState.HAS_OUTCOME, f"party line {reason}")
        else:
            await finish(session, play, outcome, note)
        return False
    if step_id is None:
        log(session, play, "party_line_settled_nothing", None, party_line_id=party_line_id,
            reason=reason, continues="where it was")  # fmt: skip
        return False
    playbook = await _playbook(session, play)
    play.paused = False
    move_to(play, playbook.next_step(step_id))
    if play.step_id is None:
        play.due_at = now()  # the end of the playbook: the engine closes the play
    session.add(play)
    return True


async def record_choice_event(
    session: AsyncSession, playbook: Playbook, play: Play, label: str
) -> None:
    """A choice's `event:`: recorded once per play, unless the playbook lists it in
    `activities.repeatable` (a second match is only logged)."""
    if label not in playbook.activities.repeatable and await has_activity(session, play.id, label):
        log(session, play, "activity_repeated", play.step_id, label=label, recorded="once")
        return
    await record_activity(session, play, ActivityType.EVENT, label)


async def _texts_refused(session: AsyncSession, play: Play, reason: str) -> bool:
    """Whether an email's block holds for the lead's texts too (a STOP, not an email
    unsubscribe, which blocks with the same reason)."""
    if reason != OPTED_OUT:
        return True
    lead = await session.get(Lead, play.lead_id)
    return lead is not None and await is_opted_out(session, play.account_id, lead.phone)


async def _playbook(session: AsyncSession, play: Play) -> Playbook:
    return await playbook_versions.load(
        session, play.account_id, play.playbook_id, play.playbook_version
    )


def _ids(message_id: str | None, party_line_id: str | None) -> dict[str, str]:
    ids = {"message_id": message_id, "party_line_id": party_line_id}
    return {key: value for key, value in ids.items() if value is not None}
