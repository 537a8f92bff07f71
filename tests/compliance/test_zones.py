"""The generated area-code table and the zone/state lookups built on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from phonenumbers import parse
from phonenumbers.timezone import time_zones_for_number
from phonenumbers.tzdata import TIMEZONE_DATA

from compliance import zones
from compliance.gate import GateRequest, decide
from compliance.tools import build_zones


def test_committed_table_matches_a_fresh_build() -> None:
    # Fails after a phonenumbers/zipcodes upgrade: run
    # `python -m compliance.tools.build_zones` and review the diff.
    assert build_zones.OUTPUT.read_text(encoding="utf-8") == build_zones.render(build_zones.build())


def test_table_stays_modest() -> None:
    assert build_zones.OUTPUT.stat().st_size < 150_000


@pytest.mark.parametrize(
    ("phone", "must_include"),
    [
        # overlays without exchange data: phonenumbers alone gives one zone
        ("+14585550123", {"America/Los_Angeles", "America/Boise"}),  # 458 over 541
        ("+14485550123", {"America/New_York", "America/Chicago"}),  # 448 over 850
        ("+19305550123", {"America/New_York", "America/Chicago"}),  # 930 over 812
        ("+13645550123", {"America/New_York", "America/Chicago"}),  # 364 over 270
        ("+15415550123", {"America/Los_Angeles", "America/Boise"}),  # split code
        # a Canadian overlay with the wrong DST rule gets its province's zone
        ("+14745550123", {"America/Regina"}),  # 474 Saskatchewan
        ("+12125550123", {"America/New_York"}),
        ("+12145550123", {"America/Chicago"}),
    ],
)
def test_phone_zones_cover_every_zone_of_the_area_code(phone: str, must_include: set[str]) -> None:
    assert must_include <= set(zones.phone_zones(phone))


def test_phonenumbers_alone_misses_the_overlay_zone() -> None:
    assert time_zones_for_number(parse("+14585550123")) == ("America/Los_Angeles",)
    assert "America/Boise" in zones.table().area_code_zones["458"]


def test_non_geographic_numbers_have_no_zone() -> None:
    assert zones.phone_zones("+18005550123") == ()  # toll-free
    assert zones.phone_zones("+18885550123") == ()
    assert zones.phone_zones("not a phone") == ()


@pytest.mark.parametrize(
    ("phone", "state"),
    [
        ("+18605550123", "CT"),
        ("+12145550123", "TX"),
        ("+13055550123", "FL"),
        ("+14055550123", "OK"),
        ("+14105550123", "MD"),
        ("+12065550123", "WA"),
        ("+15045550123", "LA"),
        ("+16015550123", "MS"),
        ("+14585550123", "OR"),
        ("+14165550123", None),  # Toronto
        ("+18005550123", None),  # toll-free
    ],
)
def test_area_code_state(phone: str, state: str | None) -> None:
    assert zones.area_code_state(phone) == state


@pytest.mark.parametrize(
    ("postal_code", "zone", "state"),
    [
        ("80202", ("America/Denver",), "CO"),
        ("06101", ("America/New_York",), "CT"),
        ("06101-1234", ("America/New_York",), "CT"),
        ("97914", ("America/Boise",), "OR"),  # Ontario, Oregon: Mountain time
        ("32401", ("America/Chicago",), "FL"),  # Panama City: Central
        ("06390", ("America/New_York",), "NY"),  # Fishers Island, a NY ZIP in CT's prefix
        ("ABCDE", (), None),
        ("K1A 0B1", (), None),
    ],
)
def test_postal_code_lookup(postal_code: str, zone: tuple[str, ...], state: str | None) -> None:
    assert zones.postal_zones(postal_code) == zone
    assert zones.postal_state(postal_code) == state


def test_state_names_and_zones() -> None:
    assert zones.normalize_state(" tx ") == "TX"
    assert zones.normalize_state("Texas") == "TX"
    assert zones.normalize_state("washington") == "WA"
    assert zones.normalize_state("Atlantis") is None
    assert zones.address_zones("TX", None) == ("America/Chicago", "America/Denver")
    assert zones.address_zones("TX", "75201") == ("America/Chicago",)  # ZIP is more precise


def test_candidate_zones_combine_phone_and_address_and_never_guess() -> None:
    assert zones.candidate_zones("+12125550123", postal_code="80202") == (
        "America/Denver",
        "America/New_York",
    )
    assert zones.candidate_zones("+18005550123") == ()
    assert zones.candidate_zones("+18005550123", fallback_tz="Not/AZone") == ()
    assert zones.candidate_zones("+18005550123", fallback_tz="America/Denver") == (
        "America/Denver",
    )
    # the fallback is only for numbers with no zone of their own
    assert zones.candidate_zones("+12125550123", fallback_tz="America/Denver") == (
        "America/New_York",
    )


def test_applicable_states_from_area_code_address_and_zip() -> None:
    assert zones.applicable_states("+12125550123", "CT", None) == ("CT", "NY")
    assert zones.applicable_states("+12125550123", None, "75201") == ("NY", "TX")
    assert zones.applicable_states("+18005550123", None, None) == ()


# ---- every zone of an area code is kept by a place the code serves -------------------------


def _runtime_zones(code: str) -> set[str]:
    """Every zone `phone_zones` can answer for a number of `code` (any exchange)."""
    found: set[str] = set()
    for key, value in TIMEZONE_DATA.items():
        if key.startswith("1" + code):
            found.update(value)
    found.discard(zones.UNKNOWN_ZONE)
    table = zones.table()
    found |= set(table.area_code_zones.get(code, ()))
    return found - table.area_code_drop_zones.get(code, frozenset())


US_CODES = sorted(zones.table().area_code_states)


@pytest.mark.parametrize("code", US_CODES)
def test_area_code_zones_belong_to_the_states_it_serves(code: str) -> None:
    """Checked against the sources themselves: the states the geocoder names for the code's
    exchanges plus its home state (ZIP data), and each state's zones in the ZIP data; a zone
    with the clock of none of them must be a recorded exception with its source."""
    table = zones.table()
    states = build_zones.served_states(code, table.area_code_states[code], table.state_names)
    lawful = {build_zones.clock(z) for s in states for z in table.state_zones.get(s, ())}
    exceptions = build_zones.SERVED_ZONE_EXCEPTIONS.get(code, {})
    for zone in _runtime_zones(code):
        if build_zones.clock(zone) in lawful:
            continue
        assert zone in exceptions, f"{code}: {zone} is kept by none of {sorted(states)}"
        assert len(exceptions[zone]) > 20  # a source, not a shrug


def test_every_exception_is_still_needed_and_in_the_table() -> None:
    raw = json.loads(build_zones.OUTPUT.read_text(encoding="utf-8"))
    assert raw["area_code_zone_exceptions"] == build_zones.SERVED_ZONE_EXCEPTIONS
    for code, excepted in build_zones.SERVED_ZONE_EXCEPTIONS.items():
        assert set(excepted) <= _runtime_zones(code)


def test_alaska_numbers_are_not_held_to_hawaii_time() -> None:
    """phonenumbers gives 907-581 (Unalaska) Pacific/Honolulu, no DST; no place in Alaska keeps it.
    In summer 8:15 on Adak (UTC-9) was 7:15 in Honolulu, so a lawful text waited an hour."""
    assert "Pacific/Honolulu" in time_zones_for_number(parse("+19075810123"))
    assert "Pacific/Honolulu" not in zones.phone_zones("+19075810123")
    at = datetime(2026, 7, 1, 17, 15, tzinfo=UTC)  # 08:15 in America/Adak
    request = GateRequest(channel="sms", purpose="initiated", phone="+19075810123", at=at)
    assert decide(request).action == "allow"


def test_west_wendover_keeps_mountain_time_by_its_exception() -> None:
    assert "America/Denver" in _runtime_zones("775")
    assert zones.phone_zones("+17755550123")  # still a known number
