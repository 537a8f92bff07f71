"""Quiet hours: may this lead be called or texted at this instant, and if not, when?

Contact is allowed only when the local time is inside the account window
(compliance/window.py) and every applicable state rule
(compliance/state_rules.py) in EVERY candidate zone of the lead
(compliance/zones.py). The answer is computed as UTC intervals, one list per
zone, intersected; so the next allowed instant is exact across DST changes
and across zones, not found by stepping a clock.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from compliance.state_rules import Span, StateRule, rules_for
from compliance.window import DAY_NAMES, DEFAULT_WINDOW, Window
from compliance.zones import applicable_states, candidate_zones

HORIZON = timedelta(days=14)  # beyond this, a send is not deferred but blocked

# Stable machine codes (Decision.code); the gate turns them into its reasons.
ALLOWED = "allowed"
QUIET_HOURS = "quiet_hours"
TIME_ZONE_UNKNOWN = "time_zone_unknown"
NO_CONTACT_WINDOW = "no_contact_window"

Interval = tuple[datetime, datetime]  # UTC, [start, end)


@dataclass(frozen=True)
class Decision:
    """Outcome of a quiet-hours check.

    `next_allowed_at` is UTC: `at` itself when allowed, the earliest later
    allowed instant otherwise, None when unknown or not within 14 days.
    `open_until` is when the current allowed stretch ends (None unless allowed).
    """

    allowed: bool
    next_allowed_at: datetime | None
    zones: tuple[str, ...]
    reason: str
    code: str = ALLOWED
    open_until: datetime | None = None


def require_aware(at: datetime) -> datetime:
    """`at` in UTC; ValueError for a naive datetime (its zone would be a guess)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("`at` must be timezone-aware")
    return at.astimezone(UTC)


def check(
    phone: str,
    at: datetime,
    *,
    state: str | None = None,
    postal_code: str | None = None,
    fallback_tz: str | None = None,
    window: Window | None = None,
) -> Decision:
    """Decide whether `phone` may be contacted at `at` (see module doc)."""
    at = require_aware(at)
    zones = candidate_zones(phone, state=state, postal_code=postal_code, fallback_tz=fallback_tz)
    rules = rules_for(applicable_states(phone, state, postal_code))
    return evaluate(zones, rules, window or DEFAULT_WINDOW, at)


def evaluate(
    zones: Sequence[str], rules: Sequence[StateRule], window: Window, at: datetime
) -> Decision:
    """The check for known zones and rules (exposed for callers that resolved them)."""
    at = require_aware(at)
    zone_names = tuple(sorted(set(zones)))
    if not zone_names:
        return Decision(False, None, (), "time zone unknown", TIME_ZONE_UNKNOWN)
    per_zone = {name: zone_intervals(ZoneInfo(name), window, rules, at) for name in zone_names}
    common = _intersect_all(per_zone.values())
    current = next((iv for iv in common if iv[1] > at), None)
    if current is not None and current[0] <= at:
        return Decision(
            True,
            at,
            zone_names,
            f"inside {window.describe()} in {', '.join(zone_names)}",
            ALLOWED,
            open_until=current[1],
        )
    code, reason = _why_not(per_zone, window, rules, at)
    if current is None or current[0] - at > HORIZON:
        return Decision(
            False,
            None,
            zone_names,
            f"{reason}; no allowed time within {HORIZON.days} days",
            NO_CONTACT_WINDOW,
        )
    return Decision(False, current[0], zone_names, reason, code)


def day_span(day: date, window: Window, rules: Iterable[StateRule]) -> Span | None:
    """Allowed local minutes on a date after the window and every rule, or None."""
    span = window.span(day.weekday())
    for rule in rules:
        if span is None:
            break
        other = rule.span(day)
        span = None if other is None else (max(span[0], other[0]), min(span[1], other[1]))
    if span is None or span[0] >= span[1]:
        return None
    return span


def _instant(day: date, minute: int, zone: ZoneInfo, *, later: bool) -> datetime:
    """UTC instant of a local wall time, resolving DST on the compliant side.

    A wall time in the spring-forward gap or the fall-back overlap has two
    readings (fold 0 and 1); a window start takes the later one and a window
    end the earlier one, so the window never grows.
    """
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    readings = [wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
    return max(readings) if later else min(readings)


def zone_intervals(
    zone: ZoneInfo, window: Window, rules: Sequence[StateRule], at: datetime
) -> list[Interval]:
    """Allowed UTC intervals in one zone from the local day before `at` to past the horizon."""
    return list(_day_intervals(zone, window, tuple(rules), at.astimezone(zone).date()))


# Every send asks for the same few zones, windows and rules on the same local day: the
# intervals (16 days of DST-resolved instants) are a pure function of those, worked out once.
@functools.lru_cache(maxsize=4096)
def _day_intervals(
    zone: ZoneInfo, window: Window, rules: tuple[StateRule, ...], today: date
) -> tuple[Interval, ...]:
    intervals: list[Interval] = []
    for offset in range(-1, HORIZON.days + 2):
        day = today + timedelta(days=offset)
        span = day_span(day, window, rules)
        if span is None:
            continue
        start = _instant(day, span[0], zone, later=True)
        end = _instant(day, span[1], zone, later=False)
        if start < end:
            intervals.append((start, end))
    return tuple(intervals)


def _intersect(left: list[Interval], right: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def _intersect_all(lists: Iterable[list[Interval]]) -> list[Interval]:
    result: list[Interval] | None = None
    for intervals in lists:
        result = intervals if result is None else _intersect(result, intervals)
    return result or []


def _why_not(
    per_zone: dict[str, list[Interval]],
    window: Window,
    rules: Sequence[StateRule],
    at: datetime,
) -> tuple[str, str]:
    """Code and text naming the first zone and rule that forbid contact at `at`."""
    for name, intervals in per_zone.items():
        if any(start <= at < end for start, end in intervals):
            continue
        local = at.astimezone(ZoneInfo(name))
        minute = local.hour * 60 + local.minute
        stamp = f"{local:%H:%M} {DAY_NAMES[local.weekday()]} {local:%Y-%m-%d} in {name}"
        span = window.span(local.weekday())
        if span is None or not span[0] <= minute < span[1]:
            return QUIET_HOURS, f"{stamp} is outside the window {window.describe()}"
        for rule in rules:
            rule_span = rule.span(local.date())
            if rule_span is None or not rule_span[0] <= minute < rule_span[1]:
                return rule.reason, f"{stamp} is not allowed by {rule.describe()}"
        return QUIET_HOURS, f"{stamp} is outside the window {window.describe()}"
    return QUIET_HOURS, "outside the contact window"
