"""A driver for the party-line machine and builders for Twilio's callbacks, for the tests."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from voice.party_line import (
    Action,
    AmdResult,
    CallPlaced,
    CallStatusChanged,
    ConferenceStatus,
    Event,
    PartyLine,
    Policy,
    RecordActivity,
    RecordOptOut,
    step,
)

BASE = datetime(2025, 3, 4, 16, 0, tzinfo=UTC)
LEAD_PHONE = "+15551230001"
REPS = {"rep-a": "+15551230101", "rep-b": "+15551230102", "rep-c": "+15551230103"}
LEAD1, LEAD2 = "CA" + "1" * 32, "CA" + "2" * 32
REP1, REP2, REP3 = "CA" + "a" * 32, "CA" + "b" * 32, "CA" + "c" * 32
CONF = "CF" + "f" * 32

A = TypeVar("A", bound=Action)


@dataclass(frozen=True)
class Item:
    """One event of a scenario. Anchors are our own decisions and the callbacks that cause
    them; everything else is a Twilio callback that may come late (never before the
    anchor that precedes it in the clean run)."""

    event: Event
    anchor: bool = False
    jump: timedelta = timedelta(0)  # the clock moves on this much before the event


def anchor(event: Event, jump: timedelta = timedelta(0)) -> Item:
    """An event whose place among the other anchors is fixed."""
    return Item(event, anchor=True, jump=jump)


def cb(event: Event) -> Item:
    """A callback that may be delayed or duplicated."""
    return Item(event)


def status(
    sid: str, value: str, seq: int | None = None, *, duration: int | None = None
) -> CallStatusChanged:
    """A call-progress callback, as the route parses it from Twilio's form."""
    params = {"CallSid": sid, "CallStatus": value}
    if seq is not None:
        params["SequenceNumber"] = str(seq)
    if duration is not None:
        params["CallDuration"] = str(duration)
    return CallStatusChanged.from_params(params)


def amd(sid: str, answered_by: str) -> AmdResult:
    """The async AMD callback."""
    return AmdResult.from_params(
        {"CallSid": sid, "AnsweredBy": answered_by, "MachineDetectionDuration": "2500"}
    )


def conference(event: str, seq: int, sid: str | None = None, conf: str = CONF) -> ConferenceStatus:
    """A conference status callback."""
    params = {
        "ConferenceSid": conf,
        "StatusCallbackEvent": event,
        "SequenceNumber": str(seq),
        "FriendlyName": "pl-pl1",
    }
    if sid is not None:
        params["CallSid"] = sid
    return ConferenceStatus.from_params(params)


def join(sid: str, seq: int, conf: str = CONF) -> ConferenceStatus:
    """participant-join."""
    return conference("participant-join", seq, sid, conf)


def leave(sid: str, seq: int, conf: str = CONF) -> ConferenceStatus:
    """participant-leave."""
    return conference("participant-leave", seq, sid, conf)


def placed(leg: str, sid: str) -> CallPlaced:
    """The runner's report that calls.create answered `sid`."""
    return CallPlaced(leg, sid)


class Run:
    """Feeds events to `step` one second apart, keeping every state and action."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy(business_name="Acme Mortgage")
        self.now = BASE
        self.state = PartyLine.new("pl1", LEAD_PHONE, now=BASE, lead_name="Jane")
        self.states = [self.state]
        self.actions: list[Action] = []

    def feed(self, event: Event, jump: timedelta = timedelta(0)) -> list[Action]:
        """One event; the state must survive a JSON round trip (it is stored that way)."""
        self.now += timedelta(seconds=1) + jump
        self.state, actions = step(self.state, event, now=self.now, policy=self.policy)
        stored = json.loads(json.dumps(self.state.to_json()))
        assert PartyLine.from_json(stored) == self.state
        self.states.append(self.state)
        self.actions.extend(actions)
        return actions

    def play(self, items: list[Item]) -> Run:
        """Feed a whole scenario."""
        for item in items:
            self.feed(item.event, item.jump)
        return self

    def all(self, kind: type[A]) -> list[A]:
        """Every action of one type, in order."""
        return [a for a in self.actions if isinstance(a, kind)]

    def labels(self) -> list[str]:
        """Activity labels recorded, in order."""
        return [a.label for a in self.all(RecordActivity)]

    def outcome(self) -> tuple[Any, ...]:
        """What a party line came to, whatever order its callbacks came in."""
        s = self.state
        return (
            s.phase,
            s.end_reason,
            s.connected_rep_id,
            s.callback_requested,
            s.opted_out,
            s.rep_attempts,
            len(s.lead_legs),
            tuple(sorted(Counter(self.labels()).items())),
            len(self.all(RecordOptOut)),
        )
