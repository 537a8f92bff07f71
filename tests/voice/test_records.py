"""State storage, policy validation and callback parsing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.voice.scenarios import happy
from tests.voice.support import BASE, CONF, LEAD1, Run
from voice.party_line import (
    AmdResult,
    CallStatusChanged,
    ConferenceStatus,
    GateDecided,
    LeadDigits,
    PartyLine,
    Policy,
    RepDigits,
    Start,
    step,
)
from voice.policy import render


def test_state_round_trips_through_json() -> None:
    r = Run().play(happy()[1])
    stored = json.dumps(r.state.to_json())
    assert PartyLine.from_json(json.loads(stored)) == r.state


def test_state_refuses_unknown_version_and_naive_times() -> None:
    data = PartyLine.new("x", "+15551230001", now=BASE).to_json()
    with pytest.raises(ValueError, match="version"):
        PartyLine.from_json({**data, "v": 99})
    with pytest.raises(ValueError, match="UTC-aware"):
        PartyLine.from_json({**data, "created_at": "2025-03-04T16:00:00"})
    with pytest.raises(ValueError, match="phase"):
        PartyLine.from_json({**data, "phase": "dancing"})


def test_step_refuses_naive_now() -> None:
    state = PartyLine.new("x", "+15551230001", now=BASE)
    with pytest.raises(ValueError):
        step(state, Start(), now=BASE.replace(tzinfo=None), policy=Policy())


def test_policy_round_trip_and_validation() -> None:
    policy = Policy(max_rep_attempts=2, lead_retry_delay=timedelta(minutes=15), machine="hangup")
    assert Policy.from_json(json.loads(json.dumps(policy.to_json()))) == policy
    with pytest.raises(ValueError, match="unknown"):
        Policy.from_json({"max_reps": 2})
    with pytest.raises(ValueError, match="int"):
        Policy.from_json({"max_rep_attempts": True})
    with pytest.raises(ValueError, match="seconds"):
        Policy.from_json({"watchdog_timeout": "5m"})
    for bad in ({"max_rep_attempts": 0}, {"rep_answer_timeout": 2}, {"machine": "sing"}):
        with pytest.raises(ValueError):
            Policy(**bad)


def test_texts_render_without_missing_names() -> None:
    assert render("Hi {lead_name}, {rep_name} here.{nothing}") == "Hi there, one of our team here."
    assert Policy(business_name="Acme").greeting(lead_name=None, rep_name=None) == (
        "Hi there, this is Acme. Please hold while we connect you with one of our team."
    )


def test_callbacks_parse_from_twilio_params() -> None:
    event = CallStatusChanged.from_params(
        {
            "CallSid": LEAD1,
            "CallStatus": "completed",
            "SequenceNumber": "3",
            "CallDuration": "95",
            "AnsweredBy": "human",
        },
        leg="lead-1",
    )
    assert event == CallStatusChanged(LEAD1, "completed", 3, 95, "human", "lead-1")
    assert AmdResult.from_params({"CallSid": LEAD1, "AnsweredBy": "machine_end_beep"}).answered_by
    conf = ConferenceStatus.from_params(
        {
            "ConferenceSid": CONF,
            "StatusCallbackEvent": "conference-end",
            "SequenceNumber": "6",
            "ReasonConferenceEnded": "participant-with-end-conference-on-exit-left",
            "CallSidEndingConference": LEAD1,
        }
    )
    assert (conf.event, conf.sequence_number, conf.call_sid) == ("conference-end", 6, None)
    assert (
        LeadDigits.from_params({"CallSid": LEAD1, "Digits": "9"}, prompt="greeting").digits == "9"
    )
    assert RepDigits.from_params({"CallSid": LEAD1}).digits == ""


SID = {"CallSid": LEAD1}
CONF_ID = {"ConferenceSid": CONF}
MALFORMED = [
    (CallStatusChanged.from_params, {**SID, "CallStatus": "answered"}),
    (CallStatusChanged.from_params, {"CallStatus": "ringing"}),
    (CallStatusChanged.from_params, {**SID, "CallStatus": "ringing", "SequenceNumber": "x"}),
    (CallStatusChanged.from_params, {**SID, "CallStatus": "ringing", "SequenceNumber": "-1"}),
    (AmdResult.from_params, {**SID, "AnsweredBy": "robot"}),
    (ConferenceStatus.from_params, {**CONF_ID, "StatusCallbackEvent": "participant-join"}),
    (
        ConferenceStatus.from_params,
        {**CONF_ID, "StatusCallbackEvent": "participant-join", "SequenceNumber": "1"},
    ),
    (ConferenceStatus.from_params, {**CONF_ID, "StatusCallbackEvent": "conference-boom"}),
]


@pytest.mark.parametrize(("parse", "params"), MALFORMED)
def test_malformed_callbacks_are_refused(parse: object, params: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        parse(params)  # type: ignore[operator]


def test_gate_decision_needs_until_to_defer() -> None:
    with pytest.raises(ValueError):
        GateDecided("defer")
    with pytest.raises(ValueError):
        GateDecided("maybe")  # type: ignore[arg-type]
