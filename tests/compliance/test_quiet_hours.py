"""Quiet hours with concrete numbers and instants: window, state rows, zones, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from compliance import quiet_hours
from compliance.quiet_hours import check
from compliance.state_rules import RULES_BY_STATE, STATE_RULES
from compliance.window import Window

NY = "+12125550123"  # New York, NY
DENVER = "+13035550123"  # Denver, CO
DALLAS = "+12145550123"  # TX
HARTFORD = "+18605550123"  # CT
MIAMI = "+13055550123"  # FL
OKC = "+14055550123"  # OK
BALTIMORE = "+14105550123"  # MD
SEATTLE = "+12065550123"  # WA
NEW_ORLEANS = "+15045550123"  # LA
JACKSON = "+16015550123"  # MS
OREGON_458 = "+14585550123"  # overlay of 541, reaches Mountain time
TOLL_FREE = "+18005550123"


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def test_allowed_inside_the_default_window() -> None:
    at = utc(2026, 6, 1, 16)  # Monday 12:00 EDT
    decision = check(NY, at)
    assert decision.allowed
    assert decision.next_allowed_at == at
    assert decision.zones == ("America/New_York",)
    assert decision.open_until == utc(2026, 6, 2, 0)  # 20:00 EDT


def test_window_end_is_exclusive() -> None:
    decision = check(NY, utc(2026, 6, 2, 0))  # 20:00:00 EDT
    assert not decision.allowed
    assert decision.code == quiet_hours.QUIET_HOURS
    assert decision.next_allowed_at == utc(2026, 6, 2, 12)  # 08:00 EDT


def test_at_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check(NY, datetime(2026, 6, 1, 12))


# ---- DST ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "at", "expected"),
    [
        # spring forward, New York: Sat 20:30 EST -> Sun 08:00 EDT (12:00Z, not 13:00Z)
        (NY, utc(2026, 3, 8, 1, 30), utc(2026, 3, 8, 12)),
        (NY, utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 12)),  # 01:30 EST, before the jump
        # fall back, New York: Sat 21:00 EDT -> Sun 08:00 EST (13:00Z)
        (NY, utc(2026, 11, 1, 1), utc(2026, 11, 1, 13)),
        (NY, utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 13)),  # the second 01:30
        # spring forward, Denver: 07:59 MDT -> 08:00 MDT; 01:00 MST -> 08:00 MDT
        (DENVER, utc(2026, 3, 8, 13, 59), utc(2026, 3, 8, 14)),
        (DENVER, utc(2026, 3, 8, 8), utc(2026, 3, 8, 14)),
        # fall back, Denver: 07:30 MST -> 08:00 MST (15:00Z)
        (DENVER, utc(2026, 11, 1, 14, 30), utc(2026, 11, 1, 15)),
    ],
)
def test_next_allowed_across_dst(phone: str, at: datetime, expected: datetime) -> None:
    decision = check(phone, at)
    assert not decision.allowed
    assert decision.next_allowed_at == expected


def test_window_close_across_dst() -> None:
    saturday_evening = check(DENVER, utc(2026, 11, 1, 1, 30))  # Sat 19:30 MDT
    assert saturday_evening.allowed
    assert saturday_evening.open_until == utc(2026, 11, 1, 2)  # 20:00 MDT
    sunday_morning = check(DENVER, utc(2026, 11, 1, 15))  # Sun 08:00 MST
    assert sunday_morning.allowed
    assert sunday_morning.open_until == utc(2026, 11, 2, 3)  # 20:00 MST


# ---- several zones -------------------------------------------------------------


def test_overlay_458_is_checked_in_pacific_and_mountain_time() -> None:
    evening = check(OREGON_458, utc(2026, 6, 2, 2, 30))  # Mon 19:30 PDT = 20:30 MDT
    assert {"America/Los_Angeles", "America/Boise"} <= set(evening.zones)
    assert not evening.allowed
    assert "America/Boise" in evening.reason
    assert evening.next_allowed_at == utc(2026, 6, 2, 15)  # 08:00 PDT

    morning = check(OREGON_458, utc(2026, 6, 1, 14, 30))  # 07:30 PDT = 08:30 MDT
    assert not morning.allowed
    assert "America/Los_Angeles" in morning.reason
    assert morning.next_allowed_at == utc(2026, 6, 1, 15)

    day = check(OREGON_458, utc(2026, 6, 1, 15))
    assert day.allowed
    assert day.open_until == utc(2026, 6, 2, 2)  # closes at 20:00 Mountain


def test_address_in_another_zone_narrows_the_window() -> None:
    decision = check(NY, utc(2026, 6, 1, 12, 30), postal_code="80202")  # 08:30 EDT, 06:30 MDT
    assert decision.zones == ("America/Denver", "America/New_York")
    assert not decision.allowed
    assert decision.next_allowed_at == utc(2026, 6, 1, 14)  # 08:00 MDT


# ---- numbers without a zone ------------------------------------------------------


def test_toll_free_without_anything_is_unknown_never_guessed() -> None:
    decision = check(TOLL_FREE, utc(2026, 6, 1, 18))
    assert not decision.allowed
    assert decision.next_allowed_at is None
    assert decision.zones == ()
    assert decision.reason == "time zone unknown"
    assert decision.code == quiet_hours.TIME_ZONE_UNKNOWN


def test_toll_free_uses_postal_code_then_state_then_fallback() -> None:
    at = utc(2026, 6, 1, 18)  # 12:00 MDT
    assert check(TOLL_FREE, at, fallback_tz="America/Denver").zones == ("America/Denver",)
    assert check(TOLL_FREE, at, postal_code="80202").zones == ("America/Denver",)
    by_state = check(TOLL_FREE, at, state="TX", fallback_tz="America/New_York")
    assert by_state.zones == ("America/Chicago", "America/Denver")
    assert by_state.allowed
    early = check(TOLL_FREE, utc(2026, 6, 1, 12), fallback_tz="America/Denver")  # 06:00 MDT
    assert not early.allowed
    assert early.next_allowed_at == utc(2026, 6, 1, 14)


# ---- account window ------------------------------------------------------------


def test_narrowed_window_with_weekdays_only() -> None:
    window = Window(time(10), time(16), frozenset({0, 1, 2, 3, 4}))
    saturday = check(NY, utc(2026, 6, 6, 16), window=window)  # Sat 12:00 EDT
    assert not saturday.allowed
    assert saturday.code == quiet_hours.QUIET_HOURS
    assert saturday.next_allowed_at == utc(2026, 6, 8, 14)  # Mon 10:00 EDT
    monday_late = check(NY, utc(2026, 6, 8, 20), window=window)  # Mon 16:00 EDT
    assert monday_late.next_allowed_at == utc(2026, 6, 9, 14)
    assert check(NY, utc(2026, 6, 8, 15), window=window).allowed


def test_window_never_widens_past_the_law() -> None:
    with pytest.raises(ValueError, match="wider"):
        Window(time(7), time(20))
    with pytest.raises(ValueError, match="wider"):
        Window(time(8), time(21))
    with pytest.raises(ValueError, match="before"):
        Window(time(12), time(12))
    with pytest.raises(ValueError, match="weekdays"):
        Window(days=frozenset())
    with pytest.raises(ValueError, match="weekdays"):
        Window(days=frozenset({7}))
    with pytest.raises(ValueError, match="naive"):
        Window(time(9, tzinfo=UTC), time(17))
    assert Window.clamped(time(6), time(22)) == Window(time(8), time(20))
    assert Window.clamped(time(9), time(17), [5, 6, 9]).days == frozenset({5, 6})


def test_no_allowed_time_within_14_days() -> None:
    # Sundays only, but Mississippi forbids Sundays: never.
    decision = check(JACKSON, utc(2026, 6, 7, 17), window=Window(days=frozenset({6})))
    assert not decision.allowed
    assert decision.next_allowed_at is None
    assert decision.code == quiet_hours.NO_CONTACT_WINDOW


# ---- state rules ---------------------------------------------------------------


def test_texas_sunday_at_1130_waits_for_noon() -> None:
    decision = check(DALLAS, utc(2026, 6, 7, 16, 30))  # Sun 11:30 CDT
    assert not decision.allowed
    assert decision.code == "state_rule:TX"
    assert "§ 301.051" in decision.reason
    assert decision.next_allowed_at == utc(2026, 6, 7, 17)  # Sun 12:00 CDT


def test_texas_weekday_starts_at_nine_and_the_window_still_ends_at_eight() -> None:
    morning = check(DALLAS, utc(2026, 6, 8, 13, 30))  # Mon 08:30 CDT
    assert morning.code == "state_rule:TX"
    assert morning.next_allowed_at == utc(2026, 6, 8, 14)  # 09:00 CDT
    evening = check(DALLAS, utc(2026, 6, 9, 1, 30))  # Mon 20:30 CDT
    assert evening.code == quiet_hours.QUIET_HOURS
    assert evening.next_allowed_at == utc(2026, 6, 9, 14)  # Tue 09:00 CDT


def test_connecticut_starts_at_nine_by_area_code_or_address() -> None:
    at = utc(2026, 6, 1, 12, 30)  # Mon 08:30 EDT
    by_area_code = check(HARTFORD, at)
    assert by_area_code.code == "state_rule:CT"
    assert by_area_code.next_allowed_at == utc(2026, 6, 1, 13)
    by_address = check(NY, at, state="CT")
    assert by_address.code == "state_rule:CT"
    assert check(NY, at).allowed  # New York has no such rule


@pytest.mark.parametrize(
    ("phone", "opens"),
    [
        (MIAMI, utc(2026, 6, 1, 12)),  # 08:00 EDT
        (OKC, utc(2026, 6, 1, 13)),  # 08:00 CDT
        (BALTIMORE, utc(2026, 6, 1, 12)),  # 08:00 EDT
        (SEATTLE, utc(2026, 6, 1, 15)),  # 08:00 PDT
    ],
)
def test_eight_to_eight_states(phone: str, opens: datetime) -> None:
    minute = timedelta(minutes=1)
    early = check(phone, opens - minute)  # 07:59 local
    assert not early.allowed
    assert early.next_allowed_at == opens
    assert check(phone, opens).allowed
    closes = opens + timedelta(hours=12)  # 20:00 local
    assert check(phone, closes - minute).allowed
    assert not check(phone, closes).allowed


@pytest.mark.parametrize("state", ["FL", "OK", "MD", "WA"])
def test_eight_to_eight_rows_say_so(state: str) -> None:
    rule = RULES_BY_STATE[state]
    for day in range(1, 8):  # 2026-06-01 is a Monday
        assert rule.span(date(2026, 6, day)) == (8 * 60, 20 * 60)


def test_louisiana_sunday_and_legal_holidays() -> None:
    sunday = check(NEW_ORLEANS, utc(2026, 6, 7, 17))  # Sun 12:00 CDT
    assert sunday.code == "state_rule:LA"
    assert sunday.next_allowed_at == utc(2026, 6, 8, 13)  # Mon 08:00 CDT
    mardi_gras = check(NEW_ORLEANS, utc(2026, 2, 17, 16, 30))  # Tue 10:30 CST
    assert mardi_gras.code == "state_rule:LA"
    assert mardi_gras.next_allowed_at == utc(2026, 2, 18, 14)  # Wed 08:00 CST
    # Fri Jul 3 (observed), Sat Jul 4 (holiday), Sun Jul 5 -> Mon Jul 6
    july = check(NEW_ORLEANS, utc(2026, 7, 3, 15))
    assert july.next_allowed_at == utc(2026, 7, 6, 13)
    assert check(NEW_ORLEANS, utc(2026, 6, 8, 15)).allowed  # an ordinary Monday


def test_louisiana_rule_follows_the_address_too() -> None:
    decision = check(NY, utc(2026, 6, 7, 17), state="LA")  # Sunday
    assert decision.code == "state_rule:LA"
    assert decision.zones == ("America/Chicago", "America/New_York")


def test_mississippi_sunday() -> None:
    decision = check(JACKSON, utc(2026, 6, 7, 17))
    assert decision.code == "state_rule:MS"
    assert decision.next_allowed_at == utc(2026, 6, 8, 13)
    assert check(JACKSON, utc(2026, 6, 6, 17)).allowed  # Saturday


def test_every_state_row_cites_a_statute() -> None:
    assert {r.state for r in STATE_RULES} == {"CT", "TX", "FL", "OK", "MD", "WA", "LA", "MS"}
    for rule in STATE_RULES:
        assert rule.statute
        assert len(rule.hours) == 7
