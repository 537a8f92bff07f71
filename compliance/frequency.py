"""Frequency caps: how many initiated contacts a lead may get in a rolling 24 hours.

Only contacts the business initiates count (texts and calls). Replies in a
conversation the lead continued within the last 24 hours do not: the caller
leaves them out of `initiated_at` (the gate decides which sends are replies).
The statutes speak of calls/messages "on the same subject matter"; we count
every initiated contact of the account to the lead, the compliant reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

FREQUENCY_CAP = "frequency_cap"
ALLOWED = "allowed"


@dataclass(frozen=True)
class FrequencyCap:
    """At most `limit` initiated contacts per rolling `period` in a state."""

    state: str
    limit: int
    period: timedelta
    statute: str
    note: str = ""


FREQUENCY_CAPS: tuple[FrequencyCap, ...] = (
    FrequencyCap(
        state="FL",
        limit=3,
        period=timedelta(hours=24),
        statute="Fla. Stat. § 501.616(6)(b) (as amended by SB 1120, 2021)",
        note="UNSURE: the brief's table names § 501.059; secondary sources cite § 501.616(6)(b).",
    ),
    FrequencyCap(
        state="OK",
        limit=3,
        period=timedelta(hours=24),
        statute="15 O.S. § 775C.4 (Telephone Solicitation Act of 2022)",
        note="UNSURE of the section number.",
    ),
    FrequencyCap(
        state="MD",
        limit=3,
        period=timedelta(hours=24),
        statute="Md. Code, Com. Law § 14-4502 (Stop the Spam Calls Act of 2023)",
        note="UNSURE of the section number (the Act is § 14-4501 et seq.).",
    ),
)

CAPS_BY_STATE: dict[str, FrequencyCap] = {cap.state: cap for cap in FREQUENCY_CAPS}


@dataclass(frozen=True)
class CapDecision:
    """Outcome of a frequency check; `next_allowed_at` is UTC (== `at` when allowed)."""

    allowed: bool
    next_allowed_at: datetime
    reason: str
    code: str = ALLOWED
    caps: tuple[str, ...] = ()  # states whose cap applied


def caps_for(states: Iterable[str]) -> tuple[FrequencyCap, ...]:
    """The caps of the given states (USPS codes), in table order."""
    wanted = {s.upper() for s in states}
    return tuple(cap for cap in FREQUENCY_CAPS if cap.state in wanted)


def cap_check(states: Iterable[str], initiated_at: Sequence[datetime], at: datetime) -> CapDecision:
    """May one more initiated contact go out at `at`?

    A contact counts while `at - contact < period` (contacts stamped after
    `at`, e.g. from clock skew, count too). With n counted contacts against a
    limit L, the send is allowed again when the (n - L + 1)-th oldest expires,
    which is "oldest counted + 24h" in the usual case n == L.
    """
    if at.tzinfo is None or any(t.tzinfo is None for t in initiated_at):
        raise ValueError("times must be timezone-aware")
    at = at.astimezone(UTC)
    caps = caps_for(states)
    if not caps:
        return CapDecision(True, at, "no frequency cap applies")
    until = at
    binding: FrequencyCap | None = None
    for cap in caps:
        counted = sorted(t.astimezone(UTC) for t in initiated_at if at - t < cap.period)
        if len(counted) < cap.limit:
            continue
        expires = counted[len(counted) - cap.limit] + cap.period
        if expires > until:
            until, binding = expires, cap
    names = tuple(cap.state for cap in caps)
    if binding is None:
        return CapDecision(True, at, "under the frequency cap", ALLOWED, names)
    return CapDecision(
        False,
        until,
        f"{binding.limit} initiated contacts within {binding.period} "
        f"({binding.state}, {binding.statute})",
        FREQUENCY_CAP,
        names,
    )
