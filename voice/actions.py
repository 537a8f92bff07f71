"""What the runner must do after a step. The machine decides; the runner acts.

Three kinds, by how the runner carries them out:

* TwiML for one call (`JoinConference`, `Hangup`, `LeaveVoicemail`, `OfferCallback`):
  if the event came from that call's own TwiML request (a Gather action, the
  Url fetch), answer the request with the TwiML; otherwise redirect the live
  call with `calls(call_sid).update(twiml=...)`.
* REST and bookkeeping (`CallLead`, `CallRep`, `CancelCall`, `CheckGate`,
  `ChooseRep`, `ReleaseRep`, `SendTextBack`, `RecordActivity`, `RecordOptOut`).
* Timers (`ScheduleLeadRetry`, `ScheduleWatchdog`): feed `LeadRetryDue` /
  `WatchdogFired` back at `at` (the state keeps `retry_at` / `watchdog_at`, so a
  sweep can re-create lost timers from the database).

`End` marks the party line over; the state already says so, the action is the
runner's cue to store `end_reason` and close its records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ActivityKind = Literal["event", "outcome"]
ActivityLabel = Literal[
    "party_line_lead_attempted",
    "party_line_lead_answered",
    "party_line_rep_attempted",
    "party_line_rep_unsuccessful",
    "party_line_completed",
    "callback_requested",
]
KIND_OF: dict[ActivityLabel, ActivityKind] = {
    "party_line_lead_attempted": "event",
    "party_line_lead_answered": "event",
    "party_line_rep_attempted": "event",
    "party_line_rep_unsuccessful": "event",
    "party_line_completed": "outcome",
    "callback_requested": "outcome",
}


@dataclass(frozen=True)
class CheckGate:
    """Ask the compliance gate (channel "call") and feed back GateDecided."""


@dataclass(frozen=True)
class CallLead:
    """calls.create to the lead; callback URLs carry `?leg=<leg>`; feed back CallPlaced.

    With `amd`: MachineDetection=DetectMessageEnd, AsyncAmd=true and an
    AsyncAmdStatusCallback, so the greeting starts at once and a machine is
    reported after its beep (the right moment to leave a voicemail).
    """

    leg: str
    number: str
    amd: bool = True
    timeout: int = 30


@dataclass(frozen=True)
class ChooseRep:
    """Reserve an available rep outside `exclude`, atomically; answer RepChosen/NoRepAvailable.

    Echo `attempt` in the answer: an answer to an earlier question (a job run
    twice) is then recognised and its rep released instead of called.
    """

    attempt: int
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallRep:
    """calls.create to the rep with Url = the whisper; callback URLs carry `?leg=<leg>`."""

    leg: str
    rep_id: str
    number: str
    timeout: int = 20
    amd: bool = False


@dataclass(frozen=True)
class ReleaseRep:
    """The rep is free for other party lines again."""

    rep_id: str


@dataclass(frozen=True)
class JoinConference:
    """TwiML for `call_sid`: join the party line's conference as `role`."""

    call_sid: str
    role: Literal["lead", "rep"]
    conference_name: str


@dataclass(frozen=True)
class Hangup:
    """TwiML for `call_sid`: say `message` (if any), then hang up."""

    call_sid: str
    message: str | None = None


@dataclass(frozen=True)
class LeaveVoicemail:
    """TwiML for the lead's `call_sid` (a machine answered): say `text` after the beep, hang up."""

    call_sid: str
    text: str


@dataclass(frozen=True)
class OfferCallback:
    """TwiML for the lead's `call_sid`: the fallback message and "press 1 for a callback"."""

    call_sid: str
    text: str


@dataclass(frozen=True)
class CancelCall:
    """REST: `calls(call_sid).update(status="completed")`, which ends a ringing or answered call.

    Tolerate Twilio's answer that the call is already over: the leg may have
    ended before its callback reached us.
    """

    call_sid: str
    reason: str


@dataclass(frozen=True)
class RecordActivity:
    """Record an activity of the play (an event or an outcome)."""

    label: ActivityLabel
    kind: ActivityKind
    note: str = ""


@dataclass(frozen=True)
class RecordOptOut:
    """Record the lead's opt-out in the ledger (the keypress on our call is the evidence)."""

    call_sid: str
    channel: Literal["voice"] = "voice"
    source: Literal["keypress"] = "keypress"


@dataclass(frozen=True)
class ScheduleLeadRetry:
    """Feed LeadRetryDue at `at` (the gate decides again then)."""

    at: datetime
    reason: str


@dataclass(frozen=True)
class SendTextBack:
    """Send the playbook's fallback text to the lead (through the gate, as every SMS)."""

    reason: str


@dataclass(frozen=True)
class ScheduleWatchdog:
    """Feed WatchdogFired at `at` (or later: a stale watchdog is ignored)."""

    at: datetime


@dataclass(frozen=True)
class End:
    """The party line is over, for `reason`."""

    reason: str
    note: str = ""


Action = (
    CheckGate
    | CallLead
    | ChooseRep
    | CallRep
    | ReleaseRep
    | JoinConference
    | Hangup
    | LeaveVoicemail
    | OfferCallback
    | CancelCall
    | RecordActivity
    | RecordOptOut
    | ScheduleLeadRetry
    | SendTextBack
    | ScheduleWatchdog
    | End
)


def activity(label: ActivityLabel, note: str = "") -> RecordActivity:
    """A RecordActivity with the kind that belongs to `label`."""
    return RecordActivity(label, KIND_OF[label], note)
