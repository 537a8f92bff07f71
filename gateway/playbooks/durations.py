"""Durations in playbooks: "immediately", "30s", "5m", "2h", "1d", "2w", "1h30m".

Authors write delays as short strings; the engine needs `timedelta`s. Only whole numbers
with a unit are accepted (no "1.5h", no bare "30") because a bare number is ambiguous
(seconds? minutes?) and a typo in a delay silently changes when a lead gets a text.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

IMMEDIATELY = "immediately"
UNITS: dict[str, int] = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_UNIT_ORDER = "wdhms"
# A year and a bit: X-date workflows wait months for a policy renewal, but nothing sane waits
# years, and a cap keeps "99999999999d" from overflowing timedelta.
MAX_DURATION = timedelta(days=731)
_PART = re.compile(r"(\d+)\s*([a-z]+)")
_SHAPE = re.compile(r"^(\d+\s*[a-z]+\s*)+$")
_HINT = "use 'immediately' or whole numbers with units w/d/h/m/s, like 30s, 5m, 2h, 1d or 1h30m"
_UNIT_WORDS = {
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "day": "d",
    "days": "d",
    "week": "w",
    "weeks": "w",
}


def parse_duration(text: str) -> timedelta:
    """Parse a playbook duration ("immediately", "45s", "1h30m", "2d 4h"); ValueError if bad.

    Units go from largest to smallest, each at most once, so every duration has one spelling
    a reader can check at a glance.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)  # YAML `delay: 30`: explain the missing unit below
    if not isinstance(text, str):
        raise ValueError(f"a duration must be a string, not {type(text).__name__}: {_HINT}")
    cleaned = text.strip().lower()
    if cleaned in (IMMEDIATELY, "now", "0"):
        return timedelta(0)
    if cleaned.startswith("-"):
        raise ValueError(f"durations can't be negative: {text!r}")
    if not cleaned:
        raise ValueError(f"empty duration: {_HINT}")
    if re.fullmatch(r"\d+", cleaned):
        raise ValueError(f"{text!r} has no unit: did you mean {cleaned}m or {cleaned}h? {_HINT}")
    if re.fullmatch(r"\d*\.\d+\s*[a-z]*", cleaned):
        raise ValueError(f"{text!r}: use whole numbers, e.g. 1h30m instead of 1.5h")
    if not _SHAPE.match(cleaned):
        raise ValueError(f"not a duration: {text!r}; {_HINT}")
    seconds = 0
    last_rank = -1
    for number, raw_unit in _PART.findall(cleaned):
        unit = _UNIT_WORDS.get(raw_unit, raw_unit)
        if unit not in UNITS:
            raise ValueError(f"unknown unit {raw_unit!r} in {text!r}; {_HINT}")
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_rank:
            raise ValueError(
                f"{text!r}: write each unit once, largest first (like 1d2h30m)",
            )
        last_rank = rank
        if len(number) > 9:
            raise ValueError(
                f"{text!r} is too long; the maximum is {format_duration(MAX_DURATION)}"
            )
        seconds += int(number) * UNITS[unit]
    result = timedelta(seconds=seconds)
    if result > MAX_DURATION:
        raise ValueError(f"{text!r} is too long; the maximum is {format_duration(MAX_DURATION)}")
    return result


def format_duration(value: timedelta) -> str:
    """The canonical spelling of a duration: "immediately", "1h30m", "2w3d"; whole seconds only."""
    if value < timedelta(0):
        raise ValueError("durations can't be negative")
    if value.microseconds:
        raise ValueError("durations are whole seconds")
    remaining = int(value.total_seconds())
    if remaining == 0:
        return IMMEDIATELY
    parts = []
    for unit in _UNIT_ORDER:
        count, remaining = divmod(remaining, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _coerce(value: Any) -> Any:
    # Python callers (the engine, tests) may pass a timedelta directly; documents pass strings.
    # The custom error type lets the validation report say "bad_duration", not "value_error".
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise PydanticCustomError("bad_duration", "durations can't be negative")
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("bad_duration", "{reason}", {"reason": str(exc)}) from exc


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "description": "'immediately' or whole numbers with units w/d/h/m/s, e.g. 1h30m",
            "examples": ["immediately", "30s", "5m", "2h", "1d", "1h30m"],
        }
    ),
]
"""A pydantic field type: parsed from a duration string, dumped back in canonical form."""
