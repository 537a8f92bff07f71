"""The party line's state machine: `step(state, event) -> (state, actions)`, pure.

`step` reads nothing but its arguments and changes nothing: the runner stores
the new state and carries out the actions (see `voice.actions`). Callbacks can
come late, twice, or out of order; the rules that make that harmless:

* a leg's status only moves forward (queued < initiated < ringing < in-progress
  < a terminal status) and its first terminal status stays;
* conference callbacks are applied by SequenceNumber per participant
  (`voice.conference`), and a connection is proven from them, whatever the order;
* only the current lead call and the current rep attempt can move the party line;
  news about any other call updates its record and, if it is still up, ends it;
* "ended" is final; events after it update the legs' records, honour an opt-out,
  and can only correct a provisional end to "completed" (`voice.conference`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from compliance.quiet_hours import require_aware
from voice.actions import (
    Action,
    CallLead,
    CheckGate,
    Hangup,
    JoinConference,
    LeaveVoicemail,
    OfferCallback,
    RecordOptOut,
    ScheduleLeadRetry,
    SendTextBack,
    activity,
)
from voice.attempts import (
    RESULT_OF_STATUS,
    STALE_MESSAGE,
    attempt_failed,
    is_current,
    next_rep,
    no_rep_available,
    rep_chosen,
    rep_digits,
    rep_machine,
    rep_progress,
)
from voice.conference import apply_conference, check_connection
from voice.events import (
    MACHINE,
    AmdResult,
    CallNotPlaced,
    CallPlaced,
    CallStatusChanged,
    ConferenceStatus,
    Event,
    GateDecided,
    LeadDigits,
    LeadHungUp,
    LeadRetryDue,
    NoRepAvailable,
    RepChosen,
    RepDigits,
    Start,
    WatchdogFired,
)
from voice.policy import Policy
from voice.states import STATUS_RANK, TERMINAL_STATUSES, Leg, LegResult, PartyLine
from voice.steps import WAITING, Step

OPT_OUT = "9"
CALLBACK = "1"
OPTED_OUT_MESSAGE = "You will not receive any more calls from us. Goodbye."
CALLBACK_MESSAGE = "Thank you. We will call you back shortly. Goodbye."
GOODBYE_MESSAGE = "Goodbye."


def step(
    state: PartyLine, event: Event, *, now: datetime, policy: Policy
) -> tuple[PartyLine, list[Action]]:
    """Apply one event to a party line: the new state and what the runner must do."""
    current = Step(state, require_aware(now), policy)
    match event:
        case Start():
            if state.phase == "gate_pending":
                current.emit(CheckGate())
        case GateDecided():
            _gate_decided(current, event)
        case LeadRetryDue():
            if state.phase == "lead_retry_wait":
                current.update(retry_at=None)
                current.move("gate_pending")
                current.emit(CheckGate())
        case CallPlaced():
            _call_placed(current, event)
        case CallNotPlaced():
            _call_not_placed(current, event)
        case CallStatusChanged():
            _call_status(current, event)
        case LeadHungUp():
            _call_status(current, CallStatusChanged(event.call_sid, "completed"))
        case AmdResult():
            leg = _find_leg(current, event.call_sid, event.leg)
            if leg is not None:
                _answered_by(current, leg, event.answered_by)
        case ConferenceStatus():
            apply_conference(current, event)
        case LeadDigits():
            _lead_digits(current, event)
        case RepDigits():
            leg = _find_leg(current, event.call_sid, event.leg)
            if leg is None or leg.role != "rep":
                current.emit(Hangup(event.call_sid, STALE_MESSAGE))
            else:
                rep_digits(current, leg, event)
        case RepChosen():
            rep_chosen(current, event)
        case NoRepAvailable():
            no_rep_available(current, event.attempt)
        case WatchdogFired():
            _watchdog(current)
    check_connection(current)
    return current.finish(state)


# -- the gate and the lead's calls ---------------------------------------------------


def _gate_decided(step: Step, event: GateDecided) -> None:
    if step.state.phase != "gate_pending":
        return  # a second answer to one question
    if event.action == "allow":
        _call_lead(step)
    elif event.action == "defer" and event.until is not None:
        step.update(retry_at=event.until)
        step.move("lead_retry_wait")
        step.emit(ScheduleLeadRetry(event.until, f"gate_deferred:{event.reason}"))
    else:
        step.end("gate_blocked", event.reason)


def _call_lead(step: Step) -> None:
    state = step.state
    attempt = len(state.lead_legs) + 1
    leg = Leg(f"lead-{attempt}", "lead", state.lead_number, step.now)
    step.update(lead_legs=(*state.lead_legs, leg), retry_at=None)
    step.move("calling_lead")
    step.emit(
        CallLead(
            leg.leg_id,
            state.lead_number,
            amd=step.policy.lead_amd,
            timeout=step.policy.lead_answer_timeout,
        ),
        activity("party_line_lead_attempted", f"attempt {attempt}"),
    )


def _lead_unreached(step: Step, leg: Leg, result: LegResult) -> None:
    step.put(replace(leg, result=result))
    state, policy = step.state, step.policy
    if state.lead_retries < policy.lead_retries:
        at = step.now + policy.lead_retry_delay
        step.update(lead_retries=state.lead_retries + 1, retry_at=at)
        step.move("lead_retry_wait")
        step.emit(ScheduleLeadRetry(at, f"lead_{result}"))
        return
    if policy.text_back_when_unreached:
        step.emit(SendTextBack("lead_unreached"))
    step.end("lead_unreached", result)


def _is_current_lead(step: Step, leg: Leg) -> bool:
    lead = step.state.lead
    return lead is not None and lead.leg_id == leg.leg_id


def _lead_progress(step: Step, leg: Leg) -> None:
    if not _is_current_lead(step, leg):
        return
    phase = step.state.phase
    if leg.status == "in-progress" and phase == "calling_lead":
        step.move("lead_answered")
        if not step.policy.lead_amd:
            _lead_human(step)
    elif leg.terminal and phase == "calling_lead" and leg.status != "completed":
        _lead_unreached(step, leg, RESULT_OF_STATUS[leg.status or "failed"])
    elif leg.terminal:
        _lead_gone(step, leg)


def _lead_gone(step: Step, leg: Leg) -> None:
    """The lead's call ended (or left the conference) while it mattered."""
    phase = step.state.phase
    check_connection(step)  # the join that proves it may have come before the hangup
    if step.state.connected_rep_id is not None:
        step.end("completed")
    elif phase == "calling_lead" or phase in WAITING:
        step.put(replace(leg, result=leg.result or "hung_up"))
        step.end("lead_hung_up", f"the lead hung up ({phase})")
    elif phase == "rep_unsuccessful":
        step.end("rep_unsuccessful", "the lead hung up after the fallback")


def _answered_by(step: Step, leg: Leg, answered_by: str) -> None:
    if leg.answered_by is not None:
        return  # detection reports once; a repeat or a later guess changes nothing
    leg = replace(leg, answered_by=answered_by, answered_at=leg.answered_at or step.now)
    if STATUS_RANK.get(leg.status or "", -1) < STATUS_RANK["in-progress"]:
        leg = replace(leg, status="in-progress")  # a detection result means it was answered
    leg = step.put(leg)
    if leg.role == "rep":
        rep_machine(step, leg, answered_by)
        return
    if not _is_current_lead(step, leg) or step.state.phase not in ("calling_lead", "lead_answered"):
        return
    step.move("lead_answered")
    human = answered_by == "human" or (answered_by == "unknown" and step.policy.unknown_is_human)
    if human:
        _lead_human(step)
    else:
        _lead_machine(step, leg, answered_by)


def _lead_human(step: Step) -> None:
    step.update(lead_human=True)
    step.emit(activity("party_line_lead_answered"))
    next_rep(step)


def _lead_machine(step: Step, leg: Leg, answered_by: str) -> None:
    sid = leg.call_sid or ""  # always set: the leg was found by its CallSid
    leave_message = step.policy.machine == "voicemail" and answered_by in MACHINE - {"fax"}
    if leave_message:
        text = step.policy.voicemail(lead_name=step.state.lead_name)
        leg = step.end_call(leg, LeaveVoicemail(sid, text))
    else:
        leg = step.end_call(leg, Hangup(sid))
    step.put(replace(leg, result="machine"))
    step.end("lead_machine", f"{answered_by}: {'voicemail' if leave_message else 'hung up'}")


# -- callbacks about any call ---------------------------------------------------------


def _find_leg(step: Step, call_sid: str, leg_id: str | None) -> Leg | None:
    """The leg of a CallSid; a callback naming its leg binds the SID if CallPlaced is late."""
    leg = step.state.leg_by_sid(call_sid)
    if leg is not None:
        return leg
    if leg_id is not None:
        candidate = step.state.leg_by_id(leg_id)
        if candidate is not None and candidate.call_sid is None:
            return step.put(replace(candidate, call_sid=call_sid))
    return None


def _call_placed(step: Step, event: CallPlaced) -> None:
    leg = step.state.leg_by_id(event.leg)
    if leg is not None and leg.call_sid is None:
        step.put(replace(leg, call_sid=event.call_sid))


def _call_not_placed(step: Step, event: CallNotPlaced) -> None:
    leg = step.state.leg_by_id(event.leg)
    if leg is None or leg.call_sid is not None or leg.status is not None:
        return  # Twilio's callbacks show the call exists: the error was not the last word
    leg = step.put(replace(leg, status="failed", error_code=event.error_code, ended_at=step.now))
    if leg.role == "lead":
        if _is_current_lead(step, leg) and step.state.phase == "calling_lead":
            _lead_unreached(step, leg, "not_placed")
    elif is_current(step, leg):
        attempt_failed(step, leg, "not_placed")


def _apply_status(leg: Leg, event: CallStatusChanged, now: datetime) -> Leg:
    """The leg after a status report: forward only; the first terminal status stays."""
    if event.sequence_number is not None:
        leg = replace(leg, sequence=max(leg.sequence, event.sequence_number))
    if leg.terminal:
        if event.status in TERMINAL_STATUSES and leg.duration is None:
            leg = replace(leg, duration=event.call_duration)  # LeadHungUp came first
        return leg
    if STATUS_RANK[event.status] <= STATUS_RANK.get(leg.status or "", -1):
        return leg
    leg = replace(leg, status=event.status)
    if event.status == "in-progress" and leg.answered_at is None:
        leg = replace(leg, answered_at=now)
    if event.status in TERMINAL_STATUSES:
        leg = replace(leg, ended_at=now, duration=event.call_duration)
    return leg


def _call_status(step: Step, event: CallStatusChanged) -> None:
    leg = _find_leg(step, event.call_sid, event.leg)
    if leg is None:
        return  # not one of ours: nothing to say
    before = leg
    leg = step.put(_apply_status(leg, event, step.now))
    if event.answered_by is not None and leg.answered_by is None:
        _answered_by(step, leg, event.answered_by)
        leg = step.state.leg_by_id(leg.leg_id) or leg
    if leg.status == before.status:
        return
    if leg.role == "lead":
        _lead_progress(step, leg)
    else:
        rep_progress(step, leg)


# -- the lead's keypresses --------------------------------------------------------------


def _lead_digits(step: Step, event: LeadDigits) -> None:
    sid = event.call_sid
    leg = _find_leg(step, sid, event.leg)
    if event.digits.startswith(OPT_OUT):
        # Compliance first: an opt-out on our call is recorded whatever the party line's state.
        if not step.state.opted_out:
            step.update(opted_out=True)
            step.emit(RecordOptOut(sid))
        if leg is None:
            step.emit(Hangup(sid, OPTED_OUT_MESSAGE))
            return
        step.end_call(leg, Hangup(sid, OPTED_OUT_MESSAGE))
        step.end("lead_opted_out", "keypress 9")
        return
    if leg is None or leg.role != "lead":
        step.emit(Hangup(sid))
        return
    phase = step.state.phase
    if event.prompt == "fallback":
        if event.digits == CALLBACK and (
            phase == "rep_unsuccessful" or step.state.callback_requested
        ):
            if not step.state.callback_requested:
                step.update(callback_requested=True)
                step.emit(activity("callback_requested", "keypress 1 after no rep answered"))
            step.end_call(leg, Hangup(sid, CALLBACK_MESSAGE))
            step.end("callback_requested")
        else:
            step.end_call(leg, Hangup(sid, GOODBYE_MESSAGE))
            if phase == "rep_unsuccessful":
                step.end("rep_unsuccessful", "no callback requested")
        return
    # Any other key during the greeting: on to the conference, as if the Gather timed out.
    if _is_current_lead(step, leg) and phase in WAITING:
        step.emit(JoinConference(sid, "lead", step.state.conference_name))
    elif _is_current_lead(step, leg) and phase == "rep_unsuccessful":
        step.emit(OfferCallback(sid, step.policy.fallback()))
    else:
        step.end_call(leg, Hangup(sid))


def _watchdog(step: Step) -> None:
    due = step.state.watchdog_at
    if step.state.ended or due is None or step.now < due:
        return  # stale: progress since re-armed it
    step.end("watchdog", f"no progress in {step.state.phase} by {due.isoformat()}")
