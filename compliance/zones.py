"""Where a lead is: candidate IANA time zones and US states for a phone and an address.

The lead's phone says where the number was assigned, the address where the
lead lives; they can disagree (people move and keep their number), so both
count. Every zone a lead could be in is a candidate and contact is allowed only
when it is allowed in all of them. Area code data comes from
compliance/data/area_code_zones.json (see compliance/tools/build_zones.py).
"""

from __future__ import annotations

import functools
import json
import zoneinfo
from dataclasses import dataclass
from importlib import resources
from typing import Any

import phonenumbers
from phonenumbers import timezone as phone_timezone

UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers answers when it has no idea


@dataclass(frozen=True)
class ZoneTable:
    """The generated data file, typed."""

    area_code_zones: dict[str, tuple[str, ...]]
    area_code_drop_zones: dict[str, frozenset[str]]
    area_code_states: dict[str, str]
    state_names: dict[str, str]
    state_zones: dict[str, tuple[str, ...]]
    zip3: dict[str, tuple[str, tuple[str, ...]]]
    zip5: dict[str, tuple[str, str]]


@functools.cache
def table() -> ZoneTable:
    """Load compliance/data/area_code_zones.json once per process."""
    raw: dict[str, Any] = json.loads(
        resources.files("compliance").joinpath("data/area_code_zones.json").read_text("utf-8")
    )
    zip3: dict[str, tuple[str, tuple[str, ...]]] = {}
    for prefix, value in raw["zip3"].items():
        state, *zones = value.split(" ")
        zip3[prefix] = (state, tuple(zones))
    zip5: dict[str, tuple[str, str]] = {}
    for key, zips in raw["zip5"].items():
        state, zone = key.split(" ")
        for zip_code in zips:
            zip5[zip_code] = (state, zone)
    return ZoneTable(
        area_code_zones={k: tuple(v) for k, v in raw["area_code_zones"].items()},
        area_code_drop_zones={k: frozenset(v) for k, v in raw["area_code_drop_zones"].items()},
        area_code_states=dict(raw["area_code_states"]),
        state_names={k.lower(): v for k, v in raw["state_names"].items()},
        state_zones={k: tuple(v) for k, v in raw["state_zones"].items()},
        zip3=zip3,
        zip5=zip5,
    )


def _parse(phone: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(phone, "US")
    except phonenumbers.NumberParseException:
        return None


# A number's area code and zones are pure functions of it, asked on every contact with the
# same lead (the gate, quiet hours); parsing with phonenumbers is what costs.
PHONES_REMEMBERED = 10_000


@functools.lru_cache(maxsize=PHONES_REMEMBERED)
def area_code(phone: str) -> str | None:
    """The North American area code of a number, or None outside +1."""
    number = _parse(phone)
    if number is None or number.country_code != 1:
        return None
    national = str(number.national_number)
    return national[:3] if len(national) == 10 else None


@functools.lru_cache(maxsize=PHONES_REMEMBERED)
def phone_zones(phone: str) -> tuple[str, ...]:
    """Zones of a geographic number (phonenumbers plus the area code table); () if none.

    Toll-free and other non-geographic numbers return (): phonenumbers lists
    every North American zone for them, which says nothing about the lead.
    """
    number = _parse(phone)
    if number is None or not phonenumbers.is_number_geographical(number):
        return ()
    zones = set(phone_timezone.time_zones_for_number(number))
    code = area_code(phone)
    if code is not None:
        zones.update(table().area_code_zones.get(code, ()))
        # A zone no place of the area code keeps would only block lawful hours.
        zones.difference_update(table().area_code_drop_zones.get(code, ()))
    zones.discard(UNKNOWN_ZONE)
    return tuple(sorted(zones))


def normalize_state(state: str | None) -> str | None:
    """'tx', 'Texas', ' TX ' -> 'TX'; None when not a known US state or territory."""
    if state is None:
        return None
    text = " ".join(state.split()).lower()
    if not text:
        return None
    data = table()
    if text.upper() in data.state_zones:
        return text.upper()
    for candidate in (text, f"{text} state", text.removesuffix(" state")):
        if candidate in data.state_names:
            return data.state_names[candidate]
    return None


def _zip_prefix_entry(postal_code: str | None) -> tuple[str, tuple[str, ...]] | None:
    if postal_code is None:
        return None
    digits = postal_code.strip().split("-")[0].strip()
    if len(digits) != 5 or not digits.isdigit():
        return None
    data = table()
    if digits in data.zip5:
        state, zone = data.zip5[digits]
        return state, (zone,)
    return data.zip3.get(digits[:3])


def postal_zones(postal_code: str | None) -> tuple[str, ...]:
    """Zones of a US ZIP code (ZIP+4 accepted); () when unknown."""
    entry = _zip_prefix_entry(postal_code)
    return entry[1] if entry else ()


def postal_state(postal_code: str | None) -> str | None:
    """USPS state of a US ZIP code, or None when unknown."""
    entry = _zip_prefix_entry(postal_code)
    return entry[0] if entry else None


def address_zones(state: str | None, postal_code: str | None) -> tuple[str, ...]:
    """Zones of the lead's address: the ZIP's when known, else every zone of the state."""
    by_zip = postal_zones(postal_code)
    if by_zip:
        return by_zip
    code = normalize_state(state)
    return table().state_zones.get(code, ()) if code else ()


def area_code_state(phone: str) -> str | None:
    """Home state of a US number's area code (None for Canada, toll-free, ...)."""
    code = area_code(phone)
    return table().area_code_states.get(code) if code else None


def applicable_states(phone: str, state: str | None, postal_code: str | None) -> tuple[str, ...]:
    """States whose rules apply: the area code's and the address's (state and ZIP)."""
    found = {
        area_code_state(phone),
        normalize_state(state),
        postal_state(postal_code),
    }
    return tuple(sorted(s for s in found if s))


def is_valid_zone(name: str | None) -> bool:
    """True for an IANA zone name this Python can load."""
    if not name or name == UNKNOWN_ZONE:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def candidate_zones(
    phone: str,
    *,
    state: str | None = None,
    postal_code: str | None = None,
    fallback_tz: str | None = None,
) -> tuple[str, ...]:
    """Every zone the lead may be in; () when unknown (never guessed).

    The number's zones and the address's zones are combined. `fallback_tz`
    (e.g. the account's zone) is used only when neither gives anything, i.e.
    for a toll-free or non-geographic number with no address.
    """
    zones = set(phone_zones(phone)) | set(address_zones(state, postal_code))
    if not zones and is_valid_zone(fallback_tz):
        zones.add(str(fallback_tz))
    return tuple(sorted(zones))
