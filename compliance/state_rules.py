"""State telemarketing rules on when a lead may be called or texted.

One row per state, with the statute it comes from, readable by a compliance
officer. Hours are the lead's local time, start inclusive, end exclusive. A
row applies when the number's area code or the lead's address is in its state
(compliance/zones.py: applicable_states). These rows only narrow the account
window (compliance/window.py), which is already at most 08:00-20:00, so a row
whose hours are 08:00-20:00 changes nothing today; it is listed so the table
states the law and keeps holding if the default ever changes.

Citations were checked against secondary sources only (no legal review yet);
rows marked UNSURE need a lawyer's confirmation of the exact section.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import holidays

Span = tuple[int, int]  # minutes since local midnight, [start, end)
ALL_DAY: Span = (0, 24 * 60)
SUNDAY = 6


def _hm(text: str) -> int:
    hours, mins = text.split(":")
    return int(hours) * 60 + int(mins)


def every_day(start: str, end: str) -> tuple[Span | None, ...]:
    """The same hours on all seven days."""
    return ((_hm(start), _hm(end)),) * 7


def weekdays_and_sunday(
    mon_sat: tuple[str, str], sunday: tuple[str, str]
) -> tuple[Span | None, ...]:
    """Hours for Monday-Saturday and different hours for Sunday."""
    weekday = (_hm(mon_sat[0]), _hm(mon_sat[1]))
    return (weekday,) * 6 + ((_hm(sunday[0]), _hm(sunday[1])),)


@dataclass(frozen=True)
class StateRule:
    """When contact is allowed in one state (local time of the lead)."""

    state: str
    name: str
    statute: str
    hours: tuple[Span | None, ...] = (ALL_DAY,) * 7  # by date.weekday(), Monday=0
    no_sundays: bool = False
    no_state_holidays: bool = False  # the state's legal holidays per `holidays`
    note: str = ""

    @property
    def reason(self) -> str:
        """Stable machine reason, e.g. 'state_rule:TX'."""
        return f"state_rule:{self.state}"

    def span(self, day: date) -> Span | None:
        """Allowed local minutes on a date, or None when no contact that day."""
        if self.no_sundays and day.weekday() == SUNDAY:
            return None
        if self.no_state_holidays and day in _state_holidays(self.state, day.year):
            return None
        return self.hours[day.weekday()]

    def describe(self) -> str:
        """One line for reasons and audit logs."""
        return f"{self.name} ({self.statute})"


@functools.cache
def _state_holidays(state: str, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("US", subdiv=state, years=year)


STATE_RULES: tuple[StateRule, ...] = (
    StateRule(
        state="CT",
        name="Connecticut telephonic sales calls and texts: 09:00-20:00",
        statute="Conn. Gen. Stat. § 42-288a",
        hours=every_day("09:00", "20:00"),
    ),
    StateRule(
        state="TX",
        name="Texas telephone solicitation: 09:00-21:00 Mon-Sat, 12:00-21:00 Sun",
        statute="Tex. Bus. & Com. Code § 301.051",
        hours=weekdays_and_sunday(("09:00", "21:00"), ("12:00", "21:00")),
        note=(
            "UNSURE: the brief cited § 302.101, which is the telephone-solicitor "
            "registration requirement (extended to texts by SB 140, 2023); the hours "
            "are in § 301.051 as far as secondary sources show."
        ),
    ),
    StateRule(
        state="FL",
        name="Florida telephonic sales calls: 08:00-20:00",
        statute="Fla. Stat. § 501.616(6)(a); see also § 501.059 (FTSA)",
        hours=every_day("08:00", "20:00"),
        note=(
            "UNSURE: the brief cites § 501.059; secondary sources put the hours (and the "
            "3-per-24h cap) in § 501.616(6), both amended by SB 1120 (2021)."
        ),
    ),
    StateRule(
        state="OK",
        name="Oklahoma telephonic sales calls: 08:00-20:00",
        statute="15 O.S. § 775C.1 et seq. (Telephone Solicitation Act of 2022), § 775C.4",
        hours=every_day("08:00", "20:00"),
        note="UNSURE of the section: § 775C.4 per secondary sources.",
    ),
    StateRule(
        state="MD",
        name="Maryland telephone solicitation: 08:00-20:00",
        statute="Md. Code, Com. Law § 14-4501 et seq. (Stop the Spam Calls Act of 2023)",
        hours=every_day("08:00", "20:00"),
        note="UNSURE of the section: the hours appear to be in § 14-4502.",
    ),
    StateRule(
        state="WA",
        name="Washington telephone solicitation: 08:00-20:00",
        statute="RCW 80.36.390",
        hours=every_day("08:00", "20:00"),
    ),
    StateRule(
        state="LA",
        name="Louisiana telephonic solicitation: not on Sundays or state legal holidays",
        statute="La. R.S. 45:844.14",
        no_sundays=True,
        no_state_holidays=True,
        note=(
            "UNSURE of the section (Telephone Solicitation Relief Act, 45:844.11 et seq.). "
            "Holidays come from holidays.US(subdiv='LA'); holidays declared ad hoc by the "
            "governor and emergency bans (45:844.31) are not in it."
        ),
    ),
    StateRule(
        state="MS",
        name="Mississippi telephone solicitation: not on Sundays",
        statute="Miss. Code Ann. § 77-3-725",
        no_sundays=True,
        note="UNSURE whether the section also bars holidays; only Sundays are encoded.",
    ),
)

RULES_BY_STATE: dict[str, StateRule] = {rule.state: rule for rule in STATE_RULES}


def rules_for(states: Iterable[str]) -> tuple[StateRule, ...]:
    """The rules of the given states (USPS codes), in table order."""
    wanted = {s.upper() for s in states}
    return tuple(rule for rule in STATE_RULES if rule.state in wanted)
