"""Callbacks late, out of order and twice: the party line comes to the same end.

A delivery keeps our own decisions (anchors) in order, as they are in life: a
callback can only come after the action that caused it. Every other callback
may come any time after the anchor before it (late, overtaking others), and
any Twilio request may come twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.voice.scenarios import SCENARIOS, Scenario
from tests.voice.support import Item, Run
from voice.party_line import (
    AmdResult,
    CallPlaced,
    CallStatusChanged,
    ConferenceStatus,
    JoinConference,
    LeadDigits,
    Leg,
    RecordActivity,
    RepChosen,
    RepDigits,
)
from voice.states import STATUS_RANK

# What Twilio (or a re-run job) can deliver twice. Our timers and the gate are
# answered once per question by construction (job ids), so they are not repeated.
REPEATABLE = (
    CallStatusChanged,
    AmdResult,
    ConferenceStatus,
    LeadDigits,
    RepDigits,
    CallPlaced,
    RepChosen,
)


@st.composite
def deliveries(draw: st.DrawFn, items: list[Item]) -> list[Item]:
    """A possible arrival order of a scenario's events, with repeats."""
    anchors = [i for i, item in enumerate(items) if item.anchor]
    slots: list[list[tuple[float, Item]]] = [[] for _ in anchors]
    slot = -1
    for item in items:
        if item.anchor:
            slot += 1
            earliest = slot
        else:
            earliest = max(slot, 0)
            # late: anywhere after the anchor before it
            chosen = draw(st.integers(min_value=earliest, max_value=len(anchors) - 1))
            slots[chosen].append((draw(st.floats(0, 1)), item))
        if isinstance(item.event, REPEATABLE) and draw(st.booleans()):
            again = draw(st.integers(min_value=earliest, max_value=len(anchors) - 1))
            # a repeat is just Twilio trying again: it carries no clock jump
            slots[again].append((draw(st.floats(0, 1)), replace(item, jump=timedelta(0))))
    order: list[Item] = []
    for index, position in enumerate(anchors):
        order.append(items[position])
        order.extend(item for _, item in sorted(slots[index], key=lambda pair: pair[0]))
    return order


def check_invariants(run: Run) -> None:
    """What no order of callbacks may break."""
    phases = [state.phase for state in run.states]
    if "ended" in phases:
        assert set(phases[phases.index("ended") :]) == {"ended"}, "left ended"
    if "connected" in phases:
        assert set(phases[phases.index("connected") :]) <= {"connected", "ended"}
    if "rep_unsuccessful" in phases:
        assert set(phases[phases.index("rep_unsuccessful") :]) <= {"rep_unsuccessful", "ended"}
    labels = [a.label for a in run.actions if isinstance(a, RecordActivity)]
    assert labels.count("party_line_completed") <= 1
    assert labels.count("callback_requested") <= 1
    assert labels.count("party_line_lead_answered") <= len(run.state.lead_legs)
    reps_joined = {
        a.call_sid for a in run.actions if isinstance(a, JoinConference) and a.role == "rep"
    }
    assert len(reps_joined) <= 1, "two reps sent into the conference"
    connected = [s.connected_rep_id for s in run.states if s.connected_rep_id is not None]
    assert len(set(connected)) <= 1, "a second rep connected"
    tried = run.state.reps_tried
    assert len(tried) == len(set(tried)), "a rep called twice"
    # Per leg: statuses only move forward, a terminal status and conference facts stay.
    seen: dict[str, Leg] = {}
    for state in run.states:
        for leg in state.legs():
            old = seen.get(leg.leg_id)
            if old is not None:
                assert _rank(leg) >= _rank(old), f"{leg.leg_id}: {old.status} -> {leg.status}"
                if old.terminal:
                    assert leg.status == old.status
                for name in ("call_sid", "joined_seq", "left_seq", "answered_by", "result"):
                    if getattr(old, name) is not None:
                        assert getattr(leg, name) == getattr(old, name), name
                assert leg.sequence >= old.sequence
            seen[leg.leg_id] = leg


def _rank(leg: Leg) -> int:
    return STATUS_RANK.get(leg.status or "", -1)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_delivery_comes_to_the_clean_outcome(name: str, data: st.DataObject) -> None:
    scenario: Callable[[], Scenario] = SCENARIOS[name]
    policy, items = scenario()
    clean = Run(policy).play(items)
    check_invariants(clean)
    delivered = data.draw(deliveries(items))
    permuted = Run(policy).play(delivered)
    check_invariants(permuted)
    assert permuted.outcome() == clean.outcome()
