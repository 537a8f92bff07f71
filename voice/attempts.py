"""Rep attempts: choose a rep, ring them, whisper, press 1, or move on to the next.

Only the current attempt (the last rep leg, with no result yet) can change the
party line; news about an earlier attempt only updates that leg's record, and
the standing rules in `voice.steps` end its call if it is somehow still up.
"""

from __future__ import annotations

from dataclasses import replace

from voice.actions import (
    CallRep,
    ChooseRep,
    Hangup,
    JoinConference,
    OfferCallback,
    ReleaseRep,
    SendTextBack,
    activity,
)
from voice.events import MACHINE, RepChosen, RepDigits
from voice.states import Leg, LegResult
from voice.steps import WAITING, Step

ACCEPT = "1"
STALE_MESSAGE = "Sorry, this caller is no longer waiting. Goodbye."
RESULT_OF_STATUS: dict[str, LegResult] = {
    "completed": "hung_up",  # answered, then hung up before pressing anything
    "busy": "busy",
    "no-answer": "no-answer",
    "canceled": "canceled",
    "failed": "failed",
}


def is_current(step: Step, leg: Leg) -> bool:
    """The leg is the attempt the party line is waiting on."""
    rep = step.state.rep
    return (
        rep is not None
        and rep.leg_id == leg.leg_id
        and rep.result is None
        and step.state.phase in WAITING
    )


def next_rep(step: Step) -> None:
    """Ask for another rep, or give up when the attempts are used up."""
    if step.state.phase not in WAITING:
        return
    if step.state.rep_attempts >= step.policy.max_rep_attempts:
        rep_unsuccessful(step, f"{step.state.rep_attempts} rep attempts")
        return
    step.update(awaiting_rep=True)
    step.move("lead_waiting")
    step.emit(ChooseRep(step.state.rep_attempts + 1, exclude=step.state.reps_tried))


def rep_unsuccessful(step: Step, note: str) -> None:
    """No rep took the call: the lead hears the fallback and may press 1 for a callback."""
    step.update(awaiting_rep=False)
    step.move("rep_unsuccessful")
    step.emit(activity("party_line_rep_unsuccessful", note))
    lead = step.state.lead
    if lead is not None and lead.call_sid is not None and lead.live:
        step.emit(OfferCallback(lead.call_sid, step.policy.fallback()))
    if step.policy.text_back_when_rep_unsuccessful:
        step.emit(SendTextBack("rep_unsuccessful"))


def rep_chosen(step: Step, event: RepChosen) -> None:
    """The runner reserved a rep: call them."""
    state = step.state
    if not _awaited(step, event.attempt):
        # An answer to an earlier question (a job run twice) or after the lead left:
        # hand the rep back, unless it is one of ours, whose leg releases it.
        if event.rep_id not in state.reps_tried:
            step.emit(ReleaseRep(event.rep_id))
        return
    if event.rep_id in state.reps_tried:
        rep_unsuccessful(step, "the only rep offered was already tried")  # against `exclude`
        return
    leg = Leg(
        leg_id=f"rep-{state.rep_attempts + 1}",
        role="rep",
        number=event.number,
        requested_at=step.now,
        rep_id=event.rep_id,
    )
    step.update(rep_legs=(*state.rep_legs, leg), awaiting_rep=False)
    step.move("calling_rep")
    step.emit(
        CallRep(
            leg.leg_id,
            event.rep_id,
            event.number,
            timeout=step.policy.rep_answer_timeout,
            amd=step.policy.rep_amd,
        ),
        activity("party_line_rep_attempted", f"attempt {state.rep_attempts + 1}: {event.rep_id}"),
    )


def _awaited(step: Step, attempt: int) -> bool:
    state = step.state
    return state.awaiting_rep and state.phase in WAITING and attempt == state.rep_attempts + 1


def no_rep_available(step: Step, attempt: int) -> None:
    """ChooseRep found nobody."""
    if _awaited(step, attempt):
        rep_unsuccessful(step, f"no rep available after {step.state.rep_attempts} attempts")


def attempt_failed(step: Step, leg: Leg, result: LegResult) -> None:
    """The current attempt is over without a connection: next rep."""
    leg = step.put(replace(leg, result=result))
    step.release(leg)
    next_rep(step)


def rep_progress(step: Step, leg: Leg) -> None:
    """React to the current attempt's new status (answered, or over)."""
    if not is_current(step, leg):
        return
    if leg.status == "in-progress" and step.state.phase == "calling_rep":
        step.move("rep_whisper")
    elif leg.terminal and leg.accepted_at is None:
        attempt_failed(step, leg, RESULT_OF_STATUS.get(leg.status or "", "failed"))
    # A rep who pressed 1 and then shows as completed: the join callback may still be
    # on its way (connection is proven by the conference), so wait; the watchdog is
    # the backstop if it never comes.


def rep_machine(step: Step, leg: Leg, answered_by: str) -> None:
    """AMD on a rep call (when the policy asks for it): a machine is no rep."""
    if is_current(step, leg) and answered_by in MACHINE:
        attempt_failed(step, leg, "machine")


def rep_digits(step: Step, leg: Leg, event: RepDigits) -> None:
    """The whisper's Gather: 1 joins the conference, anything else passes to the next rep."""
    if leg.accepted_at is not None and event.digits == ACCEPT and leg.result in (None, "connected"):
        # Twilio repeating the same Gather request: the same answer again.
        step.emit(JoinConference(event.call_sid, "rep", step.state.conference_name))
        return
    if not is_current(step, leg):
        step.end_call(leg, Hangup(event.call_sid, STALE_MESSAGE))
        return
    if event.digits != ACCEPT:
        leg = step.end_call(leg, Hangup(event.call_sid))
        attempt_failed(step, leg, "declined")
        return
    if leg.status is None or leg.status in ("queued", "initiated", "ringing"):
        leg = replace(leg, status="in-progress", answered_at=leg.answered_at or step.now)
    step.put(replace(leg, accepted_at=step.now))
    step.move("rep_whisper")
    step.emit(JoinConference(event.call_sid, "rep", step.state.conference_name))
