"""One step of the machine in the making: the state so far and the actions decided so far.

`Step` is private to one call of `voice.machine.step` (created, filled, returned),
so `step` stays a pure function while its handlers read like plain code. The
rules that hold after every event live here too: ending, releasing reps,
ending calls nobody wants any more, and (re-)arming the watchdog.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from voice.actions import Action, CancelCall, End, ReleaseRep, ScheduleWatchdog
from voice.policy import Policy
from voice.states import TERMINAL_STATUSES, EndReason, Leg, PartyLine, Phase

# The lead is on the line and no rep is connected yet: the lead leaving ends it.
WAITING: frozenset[Phase] = frozenset(
    {"lead_answered", "lead_waiting", "calling_rep", "rep_whisper"}
)
# The watchdog only guards phases that wait for Twilio; the others wait for our own timers.
UNGUARDED: frozenset[Phase] = frozenset({"gate_pending", "lead_retry_wait", "ended"})


@dataclass
class Step:
    """The state and the actions of one step, built up by the handlers."""

    state: PartyLine
    now: datetime
    policy: Policy
    actions: list[Action] = field(default_factory=list)

    def emit(self, *actions: Action) -> None:
        """Add actions, in the order the runner should carry them out."""
        self.actions.extend(actions)

    def update(self, **changes: Any) -> None:
        """Replace fields of the state."""
        self.state = replace(self.state, **changes)

    def put(self, leg: Leg) -> Leg:
        """Store a changed leg and return it."""
        self.state = self.state.with_leg(leg)
        return leg

    def move(self, phase: Phase) -> None:
        """Enter `phase` (nothing leaves "ended")."""
        if not self.state.ended:
            self.update(phase=phase)

    def end_call(self, leg: Leg, action: Action) -> Leg:
        """Emit `action` (Hangup, LeaveVoicemail, CancelCall) and remember we ended this call."""
        self.emit(action)
        return self.put(replace(leg, cancel_requested=True))

    def release(self, leg: Leg) -> Leg:
        """Give the leg's rep back to the pool (once)."""
        if leg.role != "rep" or leg.released or leg.rep_id is None:
            return leg
        self.emit(ReleaseRep(leg.rep_id))
        return self.put(replace(leg, released=True))

    def end(self, reason: EndReason, note: str = "") -> None:
        """Finish the party line (once): reps go back to the pool, timers stop."""
        if self.state.ended:
            return
        rep = self.state.rep
        if rep is not None and rep.result is None and rep.accepted_at is None:
            self.put(replace(rep, result="abandoned"))
        self.update(
            phase="ended",
            end_reason=reason,
            end_note=note,
            ended_at=self.now,
            awaiting_rep=False,
            retry_at=None,
            watchdog_at=None,
        )
        for leg in self.state.rep_legs:
            self.release(leg)
        self.emit(End(reason, note))

    # -- after every event ----------------------------------------------------------

    def finish(self, before: PartyLine) -> tuple[PartyLine, list[Action]]:
        """Apply the standing rules and return the step's result."""
        self._end_unwanted_calls()
        self._arm_watchdog(before)
        return self.state, self.actions

    def _unwanted(self, leg: Leg) -> bool:
        if leg.result == "hung_up":
            return False  # its person hung up: the call is over, its callback on the way
        if self.state.end_reason == "completed":
            # The conference ended, and with it each side's <Dial>: their TwiML hangs up.
            return leg.role == "rep" and leg.result not in (None, "connected")
        if self.state.ended:
            return True
        if leg.role == "rep":
            return leg.result is not None and leg.result != "connected"
        lead = self.state.lead  # an earlier lead attempt that still rings is unwanted
        return lead is None or leg.leg_id != lead.leg_id

    def _end_unwanted_calls(self) -> None:
        # A call we gave up on (declined rep, the party line ended, the watchdog) must
        # not stay up: a late answer would leave someone talking to hold music.
        for leg in self.state.legs():
            if (
                leg.call_sid is not None
                and leg.status not in TERMINAL_STATUSES
                and not leg.cancel_requested
                and self._unwanted(leg)
            ):
                reason = self.state.end_reason or leg.result or "abandoned"
                self.end_call(leg, CancelCall(leg.call_sid, reason))

    def _arm_watchdog(self, before: PartyLine) -> None:
        state = self.state
        if state.phase in UNGUARDED:
            if state.watchdog_at is not None:
                self.update(watchdog_at=None)
            return
        if state.phase == before.phase and state.watchdog_at is not None:
            return
        timeout = (
            self.policy.max_call_duration
            if state.phase == "connected"
            else self.policy.watchdog_timeout
        )
        at = self.now + timeout
        self.update(watchdog_at=at)
        self.emit(ScheduleWatchdog(at))
