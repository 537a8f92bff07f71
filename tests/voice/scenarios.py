"""Clean runs of every party-line path in issue 8 point 6, as the machine would see them.

Each scenario is (policy, items); the table tests assert on the clean run, the
property tests deliver the same items late, out of order and twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from tests.voice.support import (
    CONF,
    LEAD1,
    LEAD2,
    REP1,
    REP2,
    REPS,
    Item,
    amd,
    anchor,
    cb,
    conference,
    join,
    leave,
    placed,
    status,
)
from voice.party_line import (
    GateDecided,
    LeadDigits,
    LeadRetryDue,
    Policy,
    RepChosen,
    RepDigits,
    Start,
    WatchdogFired,
)

Scenario = tuple[Policy, list[Item]]
POLICY = Policy(business_name="Acme Mortgage")


def lead_answers(sid: str = LEAD1, leg: str = "lead-1", answered_by: str = "human") -> list[Item]:
    """The lead's phone rings, is answered, the answer URL is fetched, AMD decides."""
    return [
        anchor(placed(leg, sid)),
        cb(status(sid, "initiated", 0)),
        cb(status(sid, "ringing", 1)),
        cb(status(sid, "in-progress")),  # the answer URL fetch carries CallStatus too
        cb(status(sid, "in-progress", 2)),
        anchor(amd(sid, answered_by)),
    ]


def rep_called(rep: str, sid: str, attempt: int) -> list[Item]:
    """The runner reserved `rep` and Twilio created its call."""
    return [
        anchor(RepChosen(rep, REPS[rep], attempt)),
        anchor(placed(f"rep-{attempt}", sid)),
        cb(status(sid, "initiated", 0)),
        cb(status(sid, "ringing", 1)),
    ]


def rep_connects(sid: str, lead: str = LEAD1) -> list[Item]:
    """The rep answers, presses 1, talks, and the lead hangs up at the end."""
    return [
        cb(status(sid, "in-progress", 2)),
        anchor(RepDigits(sid, "1")),
        cb(join(sid, 2)),
        cb(conference("conference-start", 3)),
        cb(leave(lead, 4)),
        cb(leave(sid, 5)),
        cb(conference("conference-end", 6)),
        cb(status(lead, "completed", 3, duration=95)),
        cb(status(sid, "completed", 3, duration=80)),
    ]


def start() -> list[Item]:
    """Start, and the gate allows the call."""
    return [anchor(Start()), anchor(GateDecided("allow"))]


def happy() -> Scenario:
    """Lead answers, first rep presses 1, they talk."""
    return POLICY, [
        *start(),
        *lead_answers(),
        *rep_called("rep-a", REP1, 1),
        cb(join(LEAD1, 1)),
        *rep_connects(REP1),
    ]


def lead_voicemail() -> Scenario:
    """A machine answers the lead's call: leave the voicemail."""
    return POLICY, [
        *start(),
        *lead_answers(answered_by="machine_end_beep")[:-1],
        cb(join(LEAD1, 1)),  # the greeting ran while detection listened
        anchor(amd(LEAD1, "machine_end_beep")),
        cb(leave(LEAD1, 2)),  # our voicemail redirect takes the call out
        cb(conference("conference-end", 3)),
        cb(status(LEAD1, "completed", 3, duration=25)),
    ]


def lead_no_answer_then_retry() -> Scenario:
    """No answer; ten minutes later the retry connects."""
    return POLICY, [
        *start(),
        anchor(placed("lead-1", LEAD1)),
        cb(status(LEAD1, "initiated", 0)),
        cb(status(LEAD1, "ringing", 1)),
        anchor(status(LEAD1, "no-answer", 2, duration=0)),
        anchor(LeadRetryDue(), jump=timedelta(minutes=10)),
        anchor(GateDecided("allow")),
        *lead_answers(LEAD2, "lead-2"),
        *rep_called("rep-a", REP1, 1),
        cb(join(LEAD2, 1)),
        *rep_connects(REP1, lead=LEAD2),
    ]


def lead_unreached() -> Scenario:
    """No answer twice: the text back goes instead."""
    return POLICY, [
        *start(),
        anchor(placed("lead-1", LEAD1)),
        cb(status(LEAD1, "ringing", 1)),
        anchor(status(LEAD1, "busy", 2, duration=0)),
        anchor(LeadRetryDue(), jump=timedelta(minutes=10)),
        anchor(GateDecided("allow")),
        anchor(placed("lead-2", LEAD2)),
        cb(status(LEAD2, "ringing", 1)),
        anchor(status(LEAD2, "no-answer", 2, duration=0)),
    ]


def second_rep_connects() -> Scenario:
    """The first rep doesn't answer; the second presses 1."""
    return POLICY, [
        *start(),
        *lead_answers(),
        *rep_called("rep-a", REP1, 1),
        cb(join(LEAD1, 1)),
        anchor(status(REP1, "no-answer", 2, duration=0)),
        *rep_called("rep-b", REP2, 2),
        *rep_connects(REP2),
    ]


def all_reps_fail() -> Scenario:
    """Busy, then no answer, with two attempts allowed: fallback, the lead presses 1."""
    policy = Policy(business_name="Acme Mortgage", max_rep_attempts=2)
    return policy, [
        *start(),
        *lead_answers(),
        *rep_called("rep-a", REP1, 1),
        cb(join(LEAD1, 1)),
        anchor(status(REP1, "busy", 2, duration=0)),
        *rep_called("rep-b", REP2, 2),
        anchor(status(REP2, "no-answer", 2, duration=0)),
        cb(leave(LEAD1, 2)),  # the fallback redirect takes the lead out of the conference
        cb(conference("conference-end", 3)),
        anchor(LeadDigits(LEAD1, "1", "fallback")),
        cb(status(LEAD1, "completed", 3, duration=60)),
    ]


def rep_silent() -> Scenario:
    """The first rep answers and presses nothing; the second presses 1."""
    return POLICY, [
        *start(),
        *lead_answers(),
        *rep_called("rep-a", REP1, 1),
        cb(join(LEAD1, 1)),
        cb(status(REP1, "in-progress", 2)),
        anchor(RepDigits(REP1, "")),  # the whisper Gather timed out (actionOnEmptyResult)
        cb(status(REP1, "completed", 3, duration=12)),
        *rep_called("rep-b", REP2, 2),
        *rep_connects(REP2),
    ]


def lead_hangs_up_on_hold() -> Scenario:
    """The lead hangs up while the rep's phone rings: the rep's call is cancelled."""
    return POLICY, [
        *start(),
        *lead_answers(),
        *rep_called("rep-a", REP1, 1),
        cb(join(LEAD1, 1)),
        cb(leave(LEAD1, 2)),
        cb(conference("conference-end", 3)),
        anchor(status(LEAD1, "completed", 3, duration=30)),
        cb(status(REP1, "canceled", 2, duration=0)),
    ]


def opt_out() -> Scenario:
    """The lead presses 9 during the greeting while a rep is already ringing."""
    return POLICY, [
        *start(),
        *lead_answers(),
        *rep_called("rep-a", REP1, 1),
        anchor(LeadDigits(LEAD1, "9", "greeting")),
        cb(status(REP1, "canceled", 2, duration=0)),
        cb(status(LEAD1, "completed", 3, duration=9)),
    ]


def watchdog() -> Scenario:
    """The rep's callbacks never come; the watchdog ends both calls."""
    return POLICY, [
        *start(),
        *lead_answers(),
        *rep_called("rep-a", REP1, 1)[:2],
        cb(join(LEAD1, 1)),
        anchor(WatchdogFired(), jump=timedelta(hours=1)),
        cb(leave(LEAD1, 2)),
        cb(conference("conference-end", 3)),
        cb(status(LEAD1, "completed", 3, duration=3600)),
        cb(status(REP1, "completed", 2, duration=0)),
    ]


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    f.__name__: f
    for f in (
        happy,
        lead_voicemail,
        lead_no_answer_then_retry,
        lead_unreached,
        second_rep_connects,
        all_reps_fail,
        rep_silent,
        lead_hangs_up_on_hold,
        opt_out,
        watchdog,
    )
}
__all__ = ["CONF", "SCENARIOS", "Scenario"]
