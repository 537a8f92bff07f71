"""The conference as the party line sees it: who joined and left, and when both were in.

Conference callbacks are applied by SequenceNumber: each participant keeps the
sequence of its join and of its leave, so a late join (lower number than the
leave we already have) is kept as history and never puts the participant back.

Connection is proven, not assumed: a rep who pressed 1 and the lead were
connected when both were seen in the same conference (same ConferenceSid).
That is enough because both join with endConferenceOnExit: whoever leaves first
ends that conference, and anyone who dials in later gets a new one with a new
SID. The proof holds whatever order the callbacks come in, so a late join still
records `party_line_completed` (once).
"""

from __future__ import annotations

from dataclasses import replace

from voice.actions import End, activity
from voice.events import ConferenceStatus
from voice.states import PROVISIONAL_END_REASONS, Leg
from voice.steps import WAITING, Step


def apply_conference(step: Step, event: ConferenceStatus) -> None:
    """Record a conference callback and react to the lead leaving or the conference ending."""
    state = step.state
    sid, seq = event.conference_sid, event.sequence_number
    seqs = dict(state.conference_seqs)
    seqs[sid] = max(seqs.get(sid, -1), seq)
    step.update(conference_seqs=seqs)

    if event.event == "conference-start" and sid not in state.conferences_started:
        step.update(conferences_started=(*state.conferences_started, sid))
    elif event.event == "conference-end":
        if sid not in state.conferences_ended:
            step.update(conferences_ended=(*state.conferences_ended, sid))
        if sid == step.state.conference_sid:
            _lead_conference_over(step, "the conference ended")
    elif event.event in ("participant-join", "participant-leave") and event.call_sid:
        leg = step.state.leg_by_sid(event.call_sid)
        if leg is None:
            return  # not ours (or a leg whose SID we don't know yet): history only
        before, leg = leg, step.put(_participant(leg, event))
        if leg.role == "lead" and step.state.conference_sid is None:
            step.update(conference_sid=leg.conference_sid)
            if leg.conference_sid in step.state.conferences_ended:
                _lead_conference_over(step, "the conference ended")  # its end came first
        if before.left_seq is None and leg.left_seq is not None:
            lead = step.state.lead
            if leg.role == "lead" and lead is not None and leg.leg_id == lead.leg_id:
                _lead_conference_over(step, "the lead left the conference")
            elif leg.role == "rep" and step.state.phase == "connected":
                step.end("completed")


def _participant(leg: Leg, event: ConferenceStatus) -> Leg:
    if leg.conference_sid not in (None, event.conference_sid):
        return leg  # a leg belongs to one conference; another's news is not about it
    leg = replace(leg, conference_sid=event.conference_sid)
    if event.event == "participant-join" and leg.joined_seq is None:
        leg = replace(leg, joined_seq=event.sequence_number)
    if event.event == "participant-leave" and leg.left_seq is None:
        leg = replace(leg, left_seq=event.sequence_number)
    return leg


def _lead_conference_over(step: Step, note: str) -> None:
    # The lead joins with endConferenceOnExit, so its conference ending means the lead
    # is gone, unless we moved the lead out ourselves (fallback, voicemail), which
    # only happens in phases not in WAITING.
    phase = step.state.phase
    if phase not in WAITING and phase != "connected":
        return
    check_connection(step)  # the rep's join may be what ended it; prove before judging
    if step.state.connected_rep_id is not None:
        step.end("completed")
        return
    lead = step.state.lead
    if lead is not None and lead.result is None:
        step.put(replace(lead, result="hung_up"))
    step.end("lead_hung_up", note)


def check_connection(step: Step) -> None:
    """Mark the party line connected once a rep who pressed 1 shared the lead's conference."""
    state = step.state
    if state.connected_rep_id is not None:
        return
    lead = next((leg for leg in reversed(state.lead_legs) if leg.conference_sid), None)
    if lead is None:
        return
    rep = next(
        (
            leg
            for leg in state.rep_legs
            if leg.accepted_at is not None and leg.conference_sid == lead.conference_sid
        ),
        None,
    )
    if rep is None:
        return
    step.put(replace(rep, result="connected"))
    step.update(connected_rep_id=rep.rep_id, connected_at=step.now)
    step.emit(activity("party_line_completed", f"rep {rep.rep_id}"))
    if not step.state.ended:
        step.move("connected")
    elif step.state.end_reason in PROVISIONAL_END_REASONS:
        # We ended on what we knew (the lead gone, or silence); late conference
        # callbacks show they did talk, which is what the records must say.
        note = "connection confirmed by late callbacks"
        step.update(end_reason="completed", end_note=note)
        step.emit(End("completed", note))
