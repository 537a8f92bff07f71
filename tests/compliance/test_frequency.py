"""Frequency caps (FL, OK, MD: 3 initiated contacts per rolling 24 hours)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compliance.frequency import FREQUENCY_CAP, FREQUENCY_CAPS, cap_check

AT = datetime(2026, 6, 2, 14, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.mark.parametrize("state", ["FL", "OK", "MD"])
def test_three_in_24_hours_defers_until_the_oldest_expires(state: str) -> None:
    contacts = [AT - 23 * H, AT - 10 * H, AT - H]
    decision = cap_check([state], contacts, AT)
    assert not decision.allowed
    assert decision.code == FREQUENCY_CAP
    assert decision.next_allowed_at == AT + H  # (AT - 23h) + 24h
    assert decision.caps == (state,)


def test_two_contacts_are_fine() -> None:
    decision = cap_check(["FL"], [AT - 2 * H, AT - H], AT)
    assert decision.allowed
    assert decision.next_allowed_at == AT


def test_a_contact_exactly_24_hours_old_no_longer_counts() -> None:
    assert cap_check(["FL"], [AT - 24 * H, AT - 2 * H, AT - H], AT).allowed
    assert not cap_check(
        ["FL"], [AT - 24 * H + timedelta(seconds=1), AT - 2 * H, AT - H], AT
    ).allowed


def test_more_than_the_limit_waits_for_enough_to_expire() -> None:
    contacts = [AT - 20 * H, AT - 15 * H, AT - 5 * H, AT - H]
    decision = cap_check(["OK"], contacts, AT)
    assert decision.next_allowed_at == AT + 9 * H  # the 2nd oldest (AT - 15h) + 24h


def test_states_without_a_cap() -> None:
    decision = cap_check(["NY", "TX"], [AT - H] * 10, AT)
    assert decision.allowed
    assert decision.caps == ()


def test_any_capped_state_applies() -> None:
    assert not cap_check(["NY", "md"], [AT - 3 * H, AT - 2 * H, AT - H], AT).allowed


def test_times_must_be_aware() -> None:
    with pytest.raises(ValueError):
        cap_check(["FL"], [], datetime(2026, 6, 2, 14))
    with pytest.raises(ValueError):
        cap_check(["FL"], [datetime(2026, 6, 2, 13)], AT)


def test_every_cap_cites_a_statute() -> None:
    assert {c.state for c in FREQUENCY_CAPS} == {"FL", "OK", "MD"}
    for cap in FREQUENCY_CAPS:
        assert cap.statute
        assert cap.limit == 3
        assert cap.period == 24 * H
