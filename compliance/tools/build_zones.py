"""Generate compliance/data/area_code_zones.json from phonenumbers and zipcodes.

Run `python -m compliance.tools.build_zones` after upgrading either package;
tests/compliance/test_zone_table.py fails until the committed file matches.

Why a generated table: phonenumbers maps most North American numbers to a time
zone by exchange, but overlay area codes (458 over 541, 448 over 850, 930 over
812, 364 over 270, ...) carry no exchange data and come back with one zone,
and some Canadian overlays carry the wrong DST rule (474 Saskatchewan ->
America/Winnipeg, while 306 and 639 say America/Regina).

How it is derived:
- US (and territories): the USPS ZIP data in `zipcodes` lists, for every ZIP,
  its time zone and the area codes in use there. The state with the most ZIPs
  listing a code is its home state; the zones of the home state's ZIPs listing
  the code are the zones it reaches (border ZIPs of other states list their
  neighbours' codes: counting them would put Denver numbers in Central time).
  A code too new for the ZIP data reaches every zone of its state (the
  geocoder names the state: "Florida" -> FL, learned from known codes).
- Canada: a code whose zones no other code of its province has gets the
  province's other zones too.
- An area code gets an entry in `area_code_zones` only where it reaches a zone
  phonenumbers never gives for it. At run time the entry is added to the
  zones of the number, so the result only widens (more zones = a narrower
  contact window = the compliant side).
- But a zone no place of the area code keeps is no safety margin: it blocks
  lawful contact for part of the day (phonenumbers puts Pacific/Honolulu, no
  DST, in 907: Alaska's westernmost zone is America/Adak, which has DST, so in
  summer the 8am start was pushed an hour later). Every zone of a US code is
  checked against the states the code serves (the geocoder's states of its
  exchanges and its home state): a zone that keeps the clock of none of their
  zones (same UTC offset at every hour of CHECK_YEARS, so America/Detroit and
  America/New_York agree) goes to `area_code_drop_zones` and is removed at run
  time, unless SERVED_ZONE_EXCEPTIONS records, with its source, why a place
  served by the code keeps that clock anyway.
"""

from __future__ import annotations

import functools
import json
import sys
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
import zipcodes
from phonenumbers.geodata import GEOCODE_DATA
from phonenumbers.tzdata import TIMEZONE_DATA

OUTPUT = Path(__file__).resolve().parent.parent / "data" / "area_code_zones.json"

# phonenumbers regions numbered like US states in the USPS data (zipcodes
# lists PR, VI, GU, MP and AS as "states").
US_NUMBERING_REGIONS = frozenset({"US", "PR", "VI", "GU", "MP", "AS"})
CANADA = "CA"

# Zones an area code's places keep although the ZIP data puts none of its state there; each
# with its source. Checked by tests/compliance/test_zones.py.
SERVED_ZONE_EXCEPTIONS: dict[str, dict[str, str]] = {
    "775": {
        # 49 CFR 71.9(c): the city of West Wendover, Elko County, Nevada, is in the mountain
        # zone (US DOT, 1999); Jackpot, Owyhee and Mountain City keep Mountain time by custom
        # (they live off Idaho and Utah). phonenumbers gives both names for 775 exchanges.
        "America/Boise": "49 CFR 71.9(c) (West Wendover, NV in the mountain zone); Jackpot, "
        "Owyhee and Mountain City, NV keep Mountain time by custom",
        "America/Denver": "49 CFR 71.9(c) (West Wendover, NV in the mountain zone)",
    },
}
# Two zones keep the same clock when their UTC offsets agree at every hour of these years.
CHECK_YEARS = (2026, 2027)


def _nanp_codes() -> list[str]:
    """Every North American area code phonenumbers has time zone data for."""
    return sorted({key[1:4] for key in TIMEZONE_DATA if key.startswith("1") and len(key) >= 4})


def _region(code: str) -> str | None:
    number = phonenumbers.parse(f"+1{code}2345678")
    return phonenumbers.region_code_for_number(number)


@functools.cache
def _zones_by_code() -> dict[str, set[str]]:
    zones: dict[str, set[str]] = defaultdict(set)
    for key, value in TIMEZONE_DATA.items():
        if key.startswith("1") and len(key) >= 4:
            zones[key[1:4]].update(value)
    for found in zones.values():
        found.discard("Etc/Unknown")
    return zones


def _phonenumbers_zones(code: str) -> set[str]:
    """Union of the zones phonenumbers gives for any exchange of an area code."""
    return _zones_by_code()[code]


@functools.cache
def _descriptions_by_code() -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for key, value in GEOCODE_DATA.items():
        if key.startswith("1") and len(key) >= 4 and "en" in value:
            found[key[1:4]][value["en"]] += 1
    return found


def _descriptions(code: str) -> Counter[str]:
    """English geocoder descriptions of an area code and its exchanges."""
    return _descriptions_by_code()[code]


def _region_name(code: str, abbreviations: dict[str, str]) -> str | None:
    """State/province name of an area code: its own entry, else its exchanges' suffix."""
    own = GEOCODE_DATA.get("1" + code, {}).get("en")
    if own and ", " not in own:
        return str(own)
    suffixes: Counter[str] = Counter()
    for text, count in _descriptions(code).items():
        if ", " in text:
            suffixes[text.rsplit(", ", 1)[1]] += count
    if not suffixes:
        return None
    return abbreviations.get(suffixes.most_common(1)[0][0])


def _abbreviations(codes: list[str]) -> dict[str, str]:
    """Map "ON" -> "Ontario" etc. from area codes that carry both spellings."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for code in codes:
        own = GEOCODE_DATA.get("1" + code, {}).get("en")
        if not own or ", " in own:
            continue
        for text, count in _descriptions(code).items():
            if ", " in text:
                votes[text.rsplit(", ", 1)[1]][own] += count
    return {abbr: names.most_common(1)[0][0] for abbr, names in votes.items()}


@functools.cache
def clock(zone: str) -> tuple[float, ...]:
    """The zone's UTC offset (hours) at every hour of CHECK_YEARS: equal tuples, same clock."""
    tz = zoneinfo.ZoneInfo(zone)
    start = datetime(CHECK_YEARS[0], 1, 1, tzinfo=UTC)
    hours = int((datetime(CHECK_YEARS[-1] + 1, 1, 1, tzinfo=UTC) - start) / timedelta(hours=1))
    offsets = []
    for hour in range(hours):
        offset = (start + timedelta(hours=hour)).astimezone(tz).utcoffset()
        assert offset is not None
        offsets.append(offset / timedelta(hours=1))
    return tuple(offsets)


def served_states(code: str, home: str | None, state_names: dict[str, str]) -> set[str]:
    """USPS states an area code serves: its exchanges' states in the geocoder, and its home.

    `state_names`: lowercase geocoder name -> USPS code ("idaho" -> "ID")."""
    states = {home} if home else set()
    own = GEOCODE_DATA.get("1" + code, {}).get("en")
    for text in [*_descriptions(code), *([own] if own else [])]:
        name = text.rsplit(", ", 1)[1] if ", " in text else text
        if len(name) == 2 and name.isupper():
            states.add(name)  # "Boise, ID"
        elif name.lower() in state_names:
            states.add(state_names[name.lower()])  # "Idaho"
    return states


def foreign_zones(zones: set[str], states: set[str], state_zones: dict[str, set[str]]) -> set[str]:
    """Zones that keep the clock of no zone of `states` (the code's places keep none of them)."""
    lawful = {clock(zone) for state in states for zone in state_zones.get(state, ())}
    return {zone for zone in zones if clock(zone) not in lawful}


def build() -> dict[str, Any]:
    """Compute the table (pure: same package versions give the same dict)."""
    valid_zones = zoneinfo.available_timezones()
    list_all: Callable[[], list[dict[str, Any]]] = zipcodes.list_all
    zips = [z for z in list_all() if z["timezone"] in valid_zones]

    state_zones: dict[str, set[str]] = defaultdict(set)
    code_zip_zones: dict[tuple[str, str], set[str]] = defaultdict(set)  # (code, state)
    code_zip_states: dict[str, Counter[str]] = defaultdict(Counter)
    prefix_entries: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for z in zips:
        state_zones[z["state"]].add(z["timezone"])
        prefix_entries[z["zip_code"][:3]].append((z["zip_code"], z["state"], z["timezone"]))
        for code in z["area_codes"]:
            code_zip_zones[code, z["state"]].add(z["timezone"])
            code_zip_states[code][z["state"]] += 1

    codes = _nanp_codes()
    abbreviations = _abbreviations(codes)
    regions = {code: _region(code) for code in codes}
    names = {code: _region_name(code, abbreviations) for code in codes}

    # State names in the geocoder ("Oregon") -> USPS abbreviations ("OR"),
    # learned from area codes both sources know.
    name_votes: dict[str, Counter[str]] = defaultdict(Counter)
    for code in codes:
        name = names[code]
        if regions[code] in US_NUMBERING_REGIONS and name and code_zip_states[code]:
            name_votes[name][code_zip_states[code].most_common(1)[0][0]] += 1
    state_of_name = {name: votes.most_common(1)[0][0] for name, votes in name_votes.items()}

    area_code_states: dict[str, str] = {}
    area_code_zones: dict[str, list[str]] = {}
    area_code_drop_zones: dict[str, list[str]] = {}
    province_codes: dict[str, list[str]] = defaultdict(list)
    for code in codes:
        if regions[code] == CANADA and names[code]:
            province_codes[str(names[code])].append(code)

    for code in codes:
        region = regions[code]
        known = _phonenumbers_zones(code)
        reach: set[str] = set()
        if region in US_NUMBERING_REGIONS:
            # ZIP data is the truth for the state too: border ZIPs list their
            # neighbours' codes, so the majority state is the home state, and
            # only ZIPs of the home state count for the zones (area codes do
            # not cross state lines; the lead's address covers movers).
            if code_zip_states[code]:
                home = code_zip_states[code].most_common(1)[0][0]
                area_code_states[code] = home
                reach = set(code_zip_zones[code, home])
            elif names[code] in state_of_name:
                # A code too new for the ZIP data: assume it reaches its whole state.
                state = state_of_name[str(names[code])]
                area_code_states[code] = state
                reach = set(state_zones[state])
        elif region == CANADA and names[code]:
            # A Canadian code whose zones no other code of its province has is
            # suspect (474 Saskatchewan -> America/Winnipeg, a zone with DST
            # in a province without): give it its siblings' zones too.
            siblings: set[str] = set()
            for other in province_codes[str(names[code])]:
                if other != code:
                    siblings |= _phonenumbers_zones(other)
            if siblings and not siblings & known:
                reach = siblings
        if region in US_NUMBERING_REGIONS and code in area_code_states:
            lower_names = {name.lower(): state for name, state in state_of_name.items()}
            served = served_states(code, area_code_states[code], lower_names)
            served &= set(state_zones)  # drop geocoder noise that is no USPS state
            excepted = set(SERVED_ZONE_EXCEPTIONS.get(code, ()))
            drop = foreign_zones(reach | known, served, state_zones) - excepted
            if drop:
                area_code_drop_zones[code] = sorted(drop)
                reach -= drop
                known = known - drop
        if reach - known:
            area_code_zones[code] = sorted(reach | known)

    zip3: dict[str, str] = {}
    zip5: dict[str, list[str]] = defaultdict(list)
    for prefix, entries in sorted(prefix_entries.items()):
        states = Counter(state for _, state, _ in entries)
        zones = sorted({zone for _, _, zone in entries})
        zip3[prefix] = " ".join([states.most_common(1)[0][0], *zones])
        if len(states) > 1 or len(zones) > 1:
            # Mixed prefix: list every ZIP so a known ZIP gets its one zone;
            # an unknown ZIP of the prefix still gets all of them.
            for zip_code, state, zone in entries:
                zip5[f"{state} {zone}"].append(zip_code)

    return {
        "about": [
            "Generated by `python -m compliance.tools.build_zones`; do not edit.",
            "area_code_zones: zones added to phonenumbers' for overlay and split codes",
            "area_code_drop_zones: phonenumbers' zones kept by no place the code serves",
            "area_code_zone_exceptions: zones kept against the state data, with sources",
            "area_code_states: home state of US area codes",
            "state_names: geocoder state name -> USPS code",
            "state_zones: zones of each USPS state",
            "zip3: '<state> <zones...>' per ZIP prefix",
            "zip5: ZIPs of mixed prefixes grouped by '<state> <zone>'",
        ],
        "sources": {
            "phonenumbers": phonenumbers.__version__,
            "zipcodes": zipcodes.__version__,
        },
        "area_code_zones": area_code_zones,
        "area_code_drop_zones": area_code_drop_zones,
        "area_code_zone_exceptions": SERVED_ZONE_EXCEPTIONS,
        "area_code_states": area_code_states,
        "state_names": dict(sorted(state_of_name.items())),
        "state_zones": {state: sorted(zones) for state, zones in sorted(state_zones.items())},
        "zip3": zip3,
        "zip5": {key: sorted(values) for key, values in sorted(zip5.items())},
    }


def render(table: dict[str, Any]) -> str:
    """Serialise deterministically (sorted keys, one entry per line)."""
    return json.dumps(table, indent=1, sort_keys=True) + "\n"


def main() -> int:
    """Write the table next to the package and report its size."""
    text = render(build())
    OUTPUT.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {OUTPUT} ({len(text)} bytes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
