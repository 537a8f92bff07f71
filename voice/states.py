"""The party line's state: its phase, its call legs and what the conference said.

Everything here is immutable; `voice.machine.step` returns a new PartyLine. The
state is stored as JSON (`to_json` / `from_json`) so the runner can keep it in
one column and reload it for every callback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal, get_args

SCHEMA_VERSION = 1

Phase = Literal[
    "gate_pending",  # waiting for the compliance gate's decision
    "lead_retry_wait",  # a lead call is scheduled for later (retry or gate deferral)
    "calling_lead",  # the lead's phone is ringing
    "lead_answered",  # the lead picked up; greeting plays while machine detection runs
    "lead_waiting",  # a human lead waits (greeting, then hold music) while we find a rep
    "calling_rep",  # a rep's phone is ringing
    "rep_whisper",  # a rep answered and hears the whisper (or pressed 1 and is joining)
    "connected",  # lead and rep were both in the conference
    "rep_unsuccessful",  # no rep took it: fallback message, press 1 for a callback
    "ended",
]
PHASES: tuple[Phase, ...] = get_args(Phase)

Role = Literal["lead", "rep"]
CallStatus = Literal[
    "queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer", "failed",
    "canceled",
]  # fmt: skip
CALL_STATUSES: tuple[CallStatus, ...] = get_args(CallStatus)
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"completed", "busy", "no-answer", "failed", "canceled"}
)
# Statuses only move forward: a callback with a lower rank than the leg's is history.
STATUS_RANK: dict[str, int] = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    **dict.fromkeys(TERMINAL_STATUSES, 4),
}

EndReason = Literal[
    "completed",  # lead and rep talked
    "callback_requested",  # no rep; the lead pressed 1 for a callback
    "rep_unsuccessful",  # no rep; the lead hung up or pressed nothing
    "lead_unreached",  # no answer / busy / failed, retries used up
    "lead_machine",  # a machine answered: voicemail left or hung up, per policy
    "lead_hung_up",  # the lead left before a rep was connected
    "lead_opted_out",  # the lead pressed 9
    "gate_blocked",  # the compliance gate said never
    "watchdog",  # callbacks stopped coming; live calls were ended
]
# A later-proven connection (late conference callbacks) corrects these to "completed".
PROVISIONAL_END_REASONS: frozenset[str] = frozenset({"lead_hung_up", "watchdog"})

# Why a leg stopped counting for the party line (set once, never changed).
LegResult = Literal[
    "connected",
    "no-answer",
    "busy",
    "failed",
    "canceled",
    "declined",  # a rep heard the whisper and did not press 1
    "hung_up",  # the leg's person hung up before anything came of it
    "machine",  # an answering machine or fax picked up
    "not_placed",  # Twilio refused to create the call
    "abandoned",  # we stopped it (the lead left, watchdog, opt-out...)
]


@dataclass(frozen=True)
class Leg:
    """One call: to the lead (one per attempt) or to a rep (one per rep attempt)."""

    leg_id: str  # "lead-1", "rep-2": also in our callback URLs, so callbacks find their leg
    role: Role
    number: str
    requested_at: datetime
    rep_id: str | None = None
    call_sid: str | None = None
    status: CallStatus | None = None  # None: asked for, no word from Twilio yet
    sequence: int = -1  # highest call-progress SequenceNumber applied
    answered_by: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration: int | None = None  # CallDuration, seconds
    error_code: int | None = None
    accepted_at: datetime | None = None  # a rep pressed 1
    result: LegResult | None = None
    cancel_requested: bool = False  # we already told this call to end (TwiML or REST)
    released: bool = False  # a rep leg whose rep we gave back (ReleaseRep)
    conference_sid: str | None = None
    joined_seq: int | None = None  # conference SequenceNumber of participant-join
    left_seq: int | None = None  # ... and of participant-leave

    @property
    def terminal(self) -> bool:
        """Twilio said this call is over."""
        return self.status in TERMINAL_STATUSES

    @property
    def live(self) -> bool:
        """The call may still be up (asked for or in progress, not reported over)."""
        return not self.terminal

    @property
    def in_conference(self) -> bool:
        """Joined the conference and not (as far as we know) left it."""
        return self.joined_seq is not None and (
            self.left_seq is None or self.left_seq < self.joined_seq
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {f.name: _dump(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Leg:
        """Inverse of `to_json`."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name in ("requested_at", "answered_at", "ended_at", "accepted_at"):
            values[name] = _load_dt(values.get(name))
        return cls(**values)


@dataclass(frozen=True)
class PartyLine:
    """A party line at one moment. Create with `PartyLine.new`, advance with `step`."""

    id: str
    lead_number: str
    created_at: datetime
    lead_name: str | None = None
    phase: Phase = "gate_pending"
    lead_legs: tuple[Leg, ...] = ()
    rep_legs: tuple[Leg, ...] = ()
    conference_name: str = ""
    conference_sid: str | None = None  # the lead's conference (the one that counts)
    conference_seqs: Mapping[str, int] = field(default_factory=dict)  # highest per ConferenceSid
    conferences_started: tuple[str, ...] = ()  # ConferenceSids reported started
    conferences_ended: tuple[str, ...] = ()  # ... and ended
    awaiting_rep: bool = False  # ChooseRep was asked and not yet answered
    lead_human: bool = False
    lead_retries: int = 0
    retry_at: datetime | None = None
    watchdog_at: datetime | None = None
    connected_rep_id: str | None = None
    connected_at: datetime | None = None
    callback_requested: bool = False
    opted_out: bool = False
    end_reason: EndReason | None = None
    end_note: str = ""
    ended_at: datetime | None = None

    @classmethod
    def new(
        cls,
        id: str,
        lead_number: str,
        *,
        now: datetime,
        lead_name: str | None = None,
    ) -> PartyLine:
        """A party line about to ask the gate; its conference is named after its id."""
        return cls(
            id=id,
            lead_number=lead_number,
            created_at=now,
            lead_name=lead_name,
            conference_name=f"pl-{id}",
        )

    # -- derived --------------------------------------------------------------

    @property
    def lead(self) -> Leg | None:
        """The current (latest) lead call."""
        return self.lead_legs[-1] if self.lead_legs else None

    @property
    def rep(self) -> Leg | None:
        """The current (latest) rep attempt."""
        return self.rep_legs[-1] if self.rep_legs else None

    @property
    def rep_attempts(self) -> int:
        """How many reps were called."""
        return len(self.rep_legs)

    @property
    def reps_tried(self) -> tuple[str, ...]:
        """Rep ids already called, in order."""
        return tuple(leg.rep_id for leg in self.rep_legs if leg.rep_id is not None)

    @property
    def ended(self) -> bool:
        """True once the party line is over (late callbacks still update its legs)."""
        return self.phase == "ended"

    def legs(self) -> tuple[Leg, ...]:
        """Every leg, lead attempts first."""
        return self.lead_legs + self.rep_legs

    def leg_by_sid(self, call_sid: str) -> Leg | None:
        """The leg with this CallSid, if any."""
        return next((leg for leg in self.legs() if leg.call_sid == call_sid), None)

    def leg_by_id(self, leg_id: str) -> Leg | None:
        """The leg with this id, if any."""
        return next((leg for leg in self.legs() if leg.leg_id == leg_id), None)

    def with_leg(self, leg: Leg) -> PartyLine:
        """This state with `leg` (matched by leg_id) replaced."""
        if leg.role == "lead":
            return replace(self, lead_legs=_swap(self.lead_legs, leg))
        return replace(self, rep_legs=_swap(self.rep_legs, leg))

    # -- storage --------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601 strings)."""
        out: dict[str, Any] = {"v": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("lead_legs", "rep_legs"):
                out[f.name] = [leg.to_json() for leg in value]
            elif f.name == "conference_seqs":
                out[f.name] = dict(value)
            elif f.name in ("conferences_started", "conferences_ended"):
                out[f.name] = list(value)
            else:
                out[f.name] = _dump(value)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartyLine:
        """Inverse of `to_json`."""
        if data.get("v") != SCHEMA_VERSION:
            raise ValueError(f"unsupported party-line state version {data.get('v')!r}")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name in ("created_at", "retry_at", "watchdog_at", "connected_at", "ended_at"):
            values[name] = _load_dt(values.get(name))
        values["lead_legs"] = tuple(Leg.from_json(leg) for leg in values.get("lead_legs", ()))
        values["rep_legs"] = tuple(Leg.from_json(leg) for leg in values.get("rep_legs", ()))
        values["conference_seqs"] = {
            str(k): int(v) for k, v in values.get("conference_seqs", {}).items()
        }
        for name in ("conferences_started", "conferences_ended"):
            values[name] = tuple(values.get(name, ()))
        if values.get("phase") not in PHASES:
            raise ValueError(f"unknown party-line phase {values.get('phase')!r}")
        return cls(**values)


def _swap(legs: tuple[Leg, ...], leg: Leg) -> tuple[Leg, ...]:
    return tuple(leg if old.leg_id == leg.leg_id else old for old in legs)


def _dump(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _load_dt(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 time, got {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"stored times are UTC-aware, got {value!r}")
    return parsed
