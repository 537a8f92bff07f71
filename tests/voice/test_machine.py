"""Every party-line path of issue 8 point 6, at the state-machine level, events in order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.voice.scenarios import (
    Scenario,
    all_reps_fail,
    happy,
    lead_hangs_up_on_hold,
    lead_no_answer_then_retry,
    lead_unreached,
    lead_voicemail,
    opt_out,
    rep_silent,
    second_rep_connects,
    watchdog,
)
from tests.voice.support import (
    BASE,
    CONF,
    LEAD1,
    LEAD2,
    REP1,
    REP2,
    REPS,
    Run,
    amd,
    conference,
    join,
    leave,
    placed,
    status,
)
from voice.party_line import (
    CallLead,
    CallNotPlaced,
    CallRep,
    CallStatusChanged,
    CancelCall,
    CheckGate,
    ChooseRep,
    End,
    GateDecided,
    Hangup,
    JoinConference,
    LeadDigits,
    LeadHungUp,
    LeadRetryDue,
    LeaveVoicemail,
    NoRepAvailable,
    OfferCallback,
    Policy,
    RecordActivity,
    RecordOptOut,
    ReleaseRep,
    RepChosen,
    RepDigits,
    ScheduleLeadRetry,
    ScheduleWatchdog,
    SendTextBack,
    Start,
    WatchdogFired,
)


def run(scenario: Scenario) -> Run:
    policy, items = scenario
    return Run(policy).play(items)


def test_happy_path_records_events_in_order() -> None:
    r = run(happy())
    assert r.labels() == [
        "party_line_lead_attempted",
        "party_line_lead_answered",
        "party_line_rep_attempted",
        "party_line_completed",
    ]
    assert [a.kind for a in r.all(RecordActivity)] == ["event", "event", "event", "outcome"]
    assert r.all(CheckGate) == [CheckGate()]
    assert r.all(CallLead) == [CallLead("lead-1", "+15551230001", amd=True, timeout=30)]
    assert r.all(ChooseRep) == [ChooseRep(1, exclude=())]
    assert r.all(CallRep) == [CallRep("rep-1", "rep-a", REPS["rep-a"], timeout=20, amd=False)]
    assert r.all(JoinConference) == [JoinConference(REP1, "rep", "pl-pl1")]
    assert r.all(End) == [End("completed")]
    assert r.all(ReleaseRep) == [ReleaseRep("rep-a")]
    assert r.all(CancelCall) == []  # both calls end by themselves
    s = r.state
    assert (s.phase, s.end_reason, s.connected_rep_id) == ("ended", "completed", "rep-a")
    assert s.conference_sid == CONF
    assert s.conference_seqs == {CONF: 6}
    lead, rep = s.lead_legs[0], s.rep_legs[0]
    assert (lead.call_sid, lead.status, lead.answered_by, lead.duration) == (
        LEAD1,
        "completed",
        "human",
        95,
    )
    assert (lead.sequence, lead.joined_seq, lead.left_seq) == (3, 1, 4)
    assert (rep.call_sid, rep.status, rep.result, rep.duration) == (
        REP1,
        "completed",
        "connected",
        80,
    )
    assert rep.accepted_at is not None and lead.answered_at is not None
    phases = [st.phase for st in r.states]
    assert (
        phases.index("calling_lead")
        < phases.index("lead_answered")
        < phases.index("lead_waiting")
        < phases.index("calling_rep")
        < phases.index("rep_whisper")
        < phases.index("connected")
    )


def test_lead_voicemail_leaves_the_message_and_ends() -> None:
    r = run(lead_voicemail())
    assert r.labels() == ["party_line_lead_attempted"]
    [voicemail] = r.all(LeaveVoicemail)
    assert voicemail.call_sid == LEAD1 and "Jane" in voicemail.text and "Acme" in voicemail.text
    assert r.all(ChooseRep) == []
    assert (r.state.end_reason, r.state.lead.result) == ("lead_machine", "machine")  # type: ignore[union-attr]
    assert r.all(CancelCall) == []  # the voicemail TwiML hangs up itself


def test_lead_machine_hangup_policy() -> None:
    _, items = lead_voicemail()
    r = Run(Policy(machine="hangup")).play(items)
    assert r.all(LeaveVoicemail) == []
    assert r.all(Hangup) == [Hangup(LEAD1)]
    assert r.state.end_reason == "lead_machine"


def test_lead_no_answer_then_retry_connects() -> None:
    r = run(lead_no_answer_then_retry())
    [retry] = r.all(ScheduleLeadRetry)
    no_answer_at = BASE + timedelta(seconds=6)  # the 6th event, one second apart
    assert retry.at == no_answer_at + timedelta(minutes=10)
    assert retry.reason == "lead_no-answer"
    assert [c.leg for c in r.all(CallLead)] == ["lead-1", "lead-2"]
    assert r.all(CheckGate) == [CheckGate(), CheckGate()]  # the gate decides again for the retry
    assert r.labels().count("party_line_lead_attempted") == 2
    assert r.state.end_reason == "completed"
    assert [leg.result for leg in r.state.lead_legs] == ["no-answer", None]
    assert r.state.lead_retries == 1


def test_lead_unreached_twice_texts_back() -> None:
    r = run(lead_unreached())
    assert r.all(SendTextBack) == [SendTextBack("lead_unreached")]
    assert r.state.end_reason == "lead_unreached"
    assert [leg.result for leg in r.state.lead_legs] == ["busy", "no-answer"]


def test_lead_unreached_without_text_back() -> None:
    _, items = lead_unreached()
    r = Run(Policy(text_back_when_unreached=False, lead_retries=0)).play(items[:6])
    assert r.all(SendTextBack) == [] and r.all(ScheduleLeadRetry) == []
    assert r.state.end_reason == "lead_unreached"


def test_first_rep_no_answer_second_connects() -> None:
    r = run(second_rep_connects())
    assert r.all(ChooseRep) == [ChooseRep(1, ()), ChooseRep(2, ("rep-a",))]
    assert [c.rep_id for c in r.all(CallRep)] == ["rep-a", "rep-b"]
    assert r.labels().count("party_line_rep_attempted") == 2
    assert r.all(ReleaseRep) == [ReleaseRep("rep-a"), ReleaseRep("rep-b")]
    assert [leg.result for leg in r.state.rep_legs] == ["no-answer", "connected"]
    assert r.state.connected_rep_id == "rep-b"
    assert r.labels().count("party_line_completed") == 1


def test_all_reps_fail_then_callback_requested() -> None:
    r = run(all_reps_fail())
    assert r.labels() == [
        "party_line_lead_attempted",
        "party_line_lead_answered",
        "party_line_rep_attempted",
        "party_line_rep_attempted",
        "party_line_rep_unsuccessful",
        "callback_requested",
    ]
    [offer] = r.all(OfferCallback)
    assert offer.call_sid == LEAD1 and "press 1" in offer.text.lower()
    assert r.all(Hangup)[-1].call_sid == LEAD1
    assert r.state.end_reason == "callback_requested"
    assert r.state.callback_requested
    kinds = {a.label: a.kind for a in r.all(RecordActivity)}
    assert kinds["callback_requested"] == "outcome"
    assert kinds["party_line_rep_unsuccessful"] == "event"


def test_fallback_without_keypress_ends_rep_unsuccessful() -> None:
    policy, items = all_reps_fail()
    r = Run(policy).play(items[:-2])
    r.feed(LeadDigits(LEAD1, "", "fallback"))
    assert r.state.end_reason == "rep_unsuccessful"
    assert "callback_requested" not in r.labels()


def test_no_rep_available_goes_to_fallback() -> None:
    r = Run()
    for event in (
        Start(),
        GateDecided("allow"),
        placed("lead-1", LEAD1),
        status(LEAD1, "in-progress", 2),
    ):
        r.feed(event)
    r.feed(amd(LEAD1, "human"))
    r.feed(NoRepAvailable(1))
    assert r.state.phase == "rep_unsuccessful"
    assert r.labels()[-1] == "party_line_rep_unsuccessful"
    assert r.all(OfferCallback)[0].call_sid == LEAD1
    r.feed(status(LEAD1, "completed", 3, duration=40))  # hangs up on the fallback
    assert r.state.end_reason == "rep_unsuccessful"


def test_rep_answers_but_does_not_press_1() -> None:
    r = run(rep_silent())
    assert Hangup(REP1) in r.all(Hangup)
    assert [leg.result for leg in r.state.rep_legs] == ["declined", "connected"]
    assert r.state.connected_rep_id == "rep-b"
    assert r.all(JoinConference) == [JoinConference(REP2, "rep", "pl-pl1")]


def test_lead_hangs_up_on_hold_cancels_the_rep() -> None:
    r = run(lead_hangs_up_on_hold())
    assert r.all(CancelCall) == [CancelCall(REP1, "lead_hung_up")]
    assert r.state.end_reason == "lead_hung_up"
    assert r.state.rep_legs[0].result == "abandoned"
    assert r.state.rep_legs[0].status == "canceled"
    assert r.all(ReleaseRep) == [ReleaseRep("rep-a")]
    assert "party_line_completed" not in r.labels()


def test_duplicate_and_out_of_order_conference_callbacks() -> None:
    _, items = happy()
    r = Run()
    for item in items:
        if isinstance(item.event, type(conference("conference-end", 0))):
            continue
        r.feed(item.event)
        if isinstance(item.event, RepDigits):
            break
    # The conference's news arrives backwards and twice.
    for event in (
        conference("conference-end", 6),
        leave(REP1, 5),
        leave(REP1, 5),
        leave(LEAD1, 4),
        conference("conference-start", 3),
        join(REP1, 2),
        join(LEAD1, 1),
        join(REP1, 2),
        join(LEAD1, 1),
    ):
        r.feed(event)
    assert r.labels().count("party_line_completed") == 1
    assert r.state.end_reason == "completed"
    assert r.state.connected_rep_id == "rep-a"
    lead = r.state.lead_legs[0]
    assert (lead.joined_seq, lead.left_seq, lead.in_conference) == (1, 4, False)
    assert r.state.conference_seqs == {CONF: 6}


def test_late_join_after_leave_does_not_put_participant_back() -> None:
    r = run(happy())
    before = r.state
    r.feed(join(LEAD1, 1))
    r.feed(status(LEAD1, "ringing", 1))
    assert r.state == before
    assert r.actions.count(End("completed")) == 1


def test_keypress_opt_out() -> None:
    r = run(opt_out())
    assert r.all(RecordOptOut) == [RecordOptOut(LEAD1, channel="voice", source="keypress")]
    assert r.all(Hangup)[0].call_sid == LEAD1
    assert r.all(CancelCall) == [CancelCall(REP1, "lead_opted_out")]
    assert r.state.end_reason == "lead_opted_out" and r.state.opted_out
    r.feed(LeadDigits(LEAD1, "9", "greeting"))  # Twilio repeats the request
    assert len(r.all(RecordOptOut)) == 1


def test_opt_out_is_recorded_even_after_the_end() -> None:
    r = run(lead_voicemail())
    r.feed(LeadDigits(LEAD1, "9", "greeting"))
    assert r.all(RecordOptOut) == [RecordOptOut(LEAD1)]
    assert r.state.end_reason == "lead_machine"  # the end stays what it was


def test_watchdog_ends_live_calls() -> None:
    r = run(watchdog())
    assert r.state.end_reason == "watchdog"
    assert {c.call_sid for c in r.all(CancelCall)} == {LEAD1, REP1}
    assert all(c.reason == "watchdog" for c in r.all(CancelCall))
    assert r.all(ReleaseRep) == [ReleaseRep("rep-a")]


def test_stale_watchdog_is_ignored() -> None:
    r = Run()
    r.feed(Start())
    r.feed(GateDecided("allow"))
    [arm] = r.all(ScheduleWatchdog)
    assert arm.at == r.now + Policy().watchdog_timeout
    r.feed(WatchdogFired())  # early (a timer from an earlier phase)
    assert r.state.phase == "calling_lead"


def test_gate_defers_then_allows() -> None:
    r = Run()
    r.feed(Start())
    until = BASE + timedelta(hours=15)
    r.feed(GateDecided("defer", "quiet_hours", until))
    assert r.all(ScheduleLeadRetry) == [ScheduleLeadRetry(until, "gate_deferred:quiet_hours")]
    assert (r.state.phase, r.state.retry_at, r.state.watchdog_at) == (
        "lead_retry_wait",
        until,
        None,
    )
    r.feed(LeadRetryDue(), jump=timedelta(hours=15))
    r.feed(GateDecided("allow"))
    assert r.all(CallLead)[0].leg == "lead-1"
    assert r.state.lead_retries == 0  # a deferral is not a retry


def test_opted_out_lead_is_never_called() -> None:
    r = Run()
    r.feed(Start())
    r.feed(GateDecided("block", "opted_out"))
    assert r.all(CallLead) == []
    assert r.all(End) == [End("gate_blocked", "opted_out")]


def test_call_not_placed_counts_as_failed() -> None:
    r = Run(Policy(lead_retries=0, text_back_when_unreached=False))
    r.feed(Start())
    r.feed(GateDecided("allow"))
    r.feed(CallNotPlaced("lead-1", 21211, "invalid To"))
    assert r.state.lead_legs[0].error_code == 21211
    assert (r.state.end_reason, r.state.lead_legs[0].result) == ("lead_unreached", "not_placed")


def test_callback_before_call_placed_binds_by_leg() -> None:
    r = Run()
    r.feed(Start())
    r.feed(GateDecided("allow"))
    r.feed(CallStatusChanged.from_params({"CallSid": LEAD1, "CallStatus": "ringing"}, leg="lead-1"))
    assert r.state.lead_legs[0].call_sid == LEAD1
    r.feed(placed("lead-1", LEAD1))
    assert r.state.lead_legs[0].status == "ringing"


def test_stale_rep_answers_are_released_not_called() -> None:
    _, items = second_rep_connects()
    r = Run()
    for item in items:
        r.feed(item.event)
    r.feed(RepChosen("rep-c", REPS["rep-c"], 1))  # a re-run job's answer to attempt 1
    assert r.all(ReleaseRep)[-1] == ReleaseRep("rep-c")
    assert [c.rep_id for c in r.all(CallRep)] == ["rep-a", "rep-b"]


def test_rep_pressing_1_after_the_lead_left_is_sent_away() -> None:
    r = run(lead_hangs_up_on_hold())
    r.feed(RepDigits(REP1, "1"))
    assert r.all(JoinConference) == []
    assert r.all(Hangup)[-1].call_sid == REP1


def test_rep_call_answering_after_cancel_is_hung_up_once() -> None:
    _, items = lead_hangs_up_on_hold()
    r = Run().play(items[:-1])
    cancels = len(r.all(CancelCall))
    r.feed(status(REP1, "in-progress", 2))  # answered just as we cancelled
    r.feed(status(REP2, "in-progress", 2))  # not ours: nothing
    assert len(r.all(CancelCall)) == cancels


@pytest.mark.parametrize("answered_by", ["unknown"])
def test_unknown_amd_counts_as_human_by_default(answered_by: str) -> None:
    r = Run()
    for event in (Start(), GateDecided("allow"), placed("lead-1", LEAD2)):
        r.feed(event)
    r.feed(amd(LEAD2, answered_by))
    assert r.state.lead_human and r.state.phase == "lead_waiting"
    r2 = Run(Policy(unknown_is_human=False))
    for event in (Start(), GateDecided("allow"), placed("lead-1", LEAD2)):
        r2.feed(event)
    r2.feed(amd(LEAD2, answered_by))
    assert r2.state.end_reason == "lead_machine"


def test_rep_voicemail_detected_by_amd_moves_on() -> None:
    policy = Policy(rep_amd=True, max_rep_attempts=1, text_back_when_rep_unsuccessful=True)
    r = Run(policy)
    for event in (Start(), GateDecided("allow"), placed("lead-1", LEAD1), amd(LEAD1, "human")):
        r.feed(event)
    r.feed(RepChosen("rep-a", REPS["rep-a"], 1))
    assert r.all(CallRep)[0].amd is True
    r.feed(placed("rep-1", REP1))
    r.feed(status(REP1, "in-progress", 2))
    r.feed(amd(REP1, "machine_end_beep"))
    assert r.state.rep_legs[0].result == "machine"
    assert r.all(CancelCall) == [CancelCall(REP1, "machine")]
    assert r.state.phase == "rep_unsuccessful"
    assert r.all(SendTextBack) == [SendTextBack("rep_unsuccessful")]
    assert r.all(ReleaseRep) == [ReleaseRep("rep-a")]


def test_lead_hung_up_event_and_late_status_keep_the_duration() -> None:
    _, items = happy()
    r = Run().play(items[:12])  # a rep is ringing
    r.feed(LeadHungUp(LEAD1))
    assert r.state.end_reason == "lead_hung_up"
    r.feed(status(LEAD1, "completed", 3, duration=41))
    assert (r.state.lead_legs[0].status, r.state.lead_legs[0].duration) == ("completed", 41)
