"""What can happen to a party line: Twilio's callbacks, as they arrive, and our own decisions.

Twilio events are built from the callback's form parameters with `from_params`
(which refuses malformed input with ValueError, so a route answers 4xx). `leg`
is the leg id our own callback URL carries (`?leg=rep-2`); it lets a callback
find its leg even when it overtakes the runner's `CallPlaced`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from gateway.twilio_params import key_part, optional_count
from voice.states import CALL_STATUSES, CallStatus

AnsweredBy = Literal[
    "human",
    "machine_start",
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
    "fax",
    "unknown",
]
ANSWERED_BY: tuple[AnsweredBy, ...] = get_args(AnsweredBy)
MACHINE: frozenset[str] = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)

ConferenceEventName = Literal[
    "conference-start",
    "conference-end",
    "participant-join",
    "participant-leave",
    "participant-mute",
    "participant-unmute",
    "participant-hold",
    "participant-unhold",
    "participant-modify",
    "participant-speech-start",
    "participant-speech-stop",
    "announcement-end",
    "announcement-fail",
]
CONFERENCE_EVENTS: tuple[ConferenceEventName, ...] = get_args(ConferenceEventName)

Prompt = Literal["greeting", "fallback"]
GateAction = Literal["allow", "defer", "block"]


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise ValueError(f"missing {name}")
    return key_part(value, name)  # it keys a claim or a party line's state


def _optional_int(params: Mapping[str, str], name: str) -> int | None:
    # ASCII digits only, in an INTEGER column's range (InvalidParameter is a ValueError that
    # names the field): int() alone takes "٣" and "1_0" and overflows the column.
    return optional_count(params, name)


# -- Twilio callbacks ----------------------------------------------------------


@dataclass(frozen=True)
class CallStatusChanged:
    """A call-progress status callback, or a TwiML fetch (which carries CallStatus too)."""

    call_sid: str
    status: CallStatus
    sequence_number: int | None = None  # absent on TwiML fetches
    call_duration: int | None = None  # on terminal statuses
    answered_by: str | None = None  # present once AMD has decided
    leg: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, leg: str | None = None) -> CallStatusChanged:
        """From StatusCallback form params: CallSid, CallStatus, SequenceNumber, CallDuration."""
        status = _required(params, "CallStatus")
        if status not in CALL_STATUSES:
            raise ValueError(f"unknown CallStatus {status!r}")
        answered_by = params.get("AnsweredBy") or None
        if answered_by is not None and answered_by not in ANSWERED_BY:
            raise ValueError(f"unknown AnsweredBy {answered_by!r}")
        return cls(
            call_sid=_required(params, "CallSid"),
            status=status,
            sequence_number=_optional_int(params, "SequenceNumber"),
            call_duration=_optional_int(params, "CallDuration"),
            answered_by=answered_by,
            leg=leg,
        )


@dataclass(frozen=True)
class AmdResult:
    """The asynchronous answering-machine-detection callback (AsyncAmdStatusCallback)."""

    call_sid: str
    answered_by: AnsweredBy
    detection_ms: int | None = None
    leg: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, leg: str | None = None) -> AmdResult:
        """From CallSid, AnsweredBy, MachineDetectionDuration."""
        answered_by = _required(params, "AnsweredBy")
        if answered_by not in ANSWERED_BY:
            raise ValueError(f"unknown AnsweredBy {answered_by!r}")
        return cls(
            call_sid=_required(params, "CallSid"),
            answered_by=answered_by,
            detection_ms=_optional_int(params, "MachineDetectionDuration"),
            leg=leg,
        )


@dataclass(frozen=True)
class ConferenceStatus:
    """A conference status callback: start/end, or a participant's join/leave (with CallSid)."""

    conference_sid: str
    event: ConferenceEventName
    sequence_number: int
    call_sid: str | None = None
    friendly_name: str = ""
    reason_ended: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ConferenceStatus:
        """From ConferenceSid, StatusCallbackEvent, SequenceNumber, CallSid, FriendlyName."""
        event = _required(params, "StatusCallbackEvent")
        if event not in CONFERENCE_EVENTS:
            raise ValueError(f"unknown StatusCallbackEvent {event!r}")
        sequence = _optional_int(params, "SequenceNumber")
        if sequence is None:
            raise ValueError("missing SequenceNumber")
        call_sid = params.get("CallSid") or None
        if event.startswith("participant-") and call_sid is None:
            raise ValueError("missing CallSid")
        return cls(
            conference_sid=_required(params, "ConferenceSid"),
            event=event,
            sequence_number=sequence,
            call_sid=call_sid,
            friendly_name=params.get("FriendlyName", ""),
            reason_ended=params.get("ReasonConferenceEnded") or None,
        )


@dataclass(frozen=True)
class LeadDigits:
    """The lead's Gather action: 9 opts out (any prompt), 1 on the fallback asks for a callback."""

    call_sid: str
    digits: str
    prompt: Prompt
    leg: str | None = None

    @classmethod
    def from_params(
        cls, params: Mapping[str, str], *, prompt: Prompt, leg: str | None = None
    ) -> LeadDigits:
        """From CallSid and Digits (empty when the Gather timed out)."""
        if prompt not in get_args(Prompt):
            raise ValueError(f"unknown prompt {prompt!r}")
        return cls(_required(params, "CallSid"), params.get("Digits", "").strip(), prompt, leg)


@dataclass(frozen=True)
class RepDigits:
    """The rep's whisper Gather action: 1 accepts; anything else (or nothing) declines."""

    call_sid: str
    digits: str
    leg: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str], *, leg: str | None = None) -> RepDigits:
        """From CallSid and Digits (empty when the Gather timed out)."""
        return cls(_required(params, "CallSid"), params.get("Digits", "").strip(), leg)


# -- our own events --------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Begin: ask the gate."""


@dataclass(frozen=True)
class GateDecided:
    """The compliance gate's answer for calling the lead now."""

    action: GateAction
    reason: str = ""
    until: datetime | None = None  # for "defer"

    def __post_init__(self) -> None:
        if self.action not in get_args(GateAction):
            raise ValueError(f"unknown gate action {self.action!r}")
        if self.action == "defer" and self.until is None:
            raise ValueError("a deferral needs `until`")


@dataclass(frozen=True)
class LeadRetryDue:
    """The time of a ScheduleLeadRetry has come."""


@dataclass(frozen=True)
class CallPlaced:
    """Twilio accepted CallLead/CallRep for `leg` and answered this CallSid."""

    leg: str
    call_sid: str


@dataclass(frozen=True)
class CallNotPlaced:
    """Twilio refused CallLead/CallRep for `leg` (e.g. 21211 invalid number, 21610 opted out)."""

    leg: str
    error_code: int | None = None
    message: str = ""


@dataclass(frozen=True)
class RepChosen:
    """The runner reserved this rep for the party line (answer to ChooseRep `attempt`)."""

    rep_id: str
    number: str
    attempt: int


@dataclass(frozen=True)
class NoRepAvailable:
    """No rep outside ChooseRep.exclude is available (answer to ChooseRep `attempt`)."""

    attempt: int


@dataclass(frozen=True)
class WatchdogFired:
    """The watchdog's time came (ignored unless `now` has reached state.watchdog_at)."""


@dataclass(frozen=True)
class LeadHungUp:
    """The lead's call ended (e.g. from a Dial action with the caller gone)."""

    call_sid: str


Event = (
    CallStatusChanged
    | AmdResult
    | ConferenceStatus
    | LeadDigits
    | RepDigits
    | Start
    | GateDecided
    | LeadRetryDue
    | CallPlaced
    | CallNotPlaced
    | RepChosen
    | NoRepAvailable
    | WatchdogFired
    | LeadHungUp
)
