"""The contact window: the local hours and weekdays an account may contact leads.

The law bounds the window; an account may only narrow it. Federal rules
(47 CFR 64.1200(c)(1)) allow 08:00-21:00, but Florida, Oklahoma, Maryland,
Washington, Connecticut and others end at 20:00, and a lead's state is not
always known, so the widest window any account can have is 08:00-20:00 in the
lead's local time. State rules (compliance/state_rules.py) narrow it further.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import time

LEGAL_START = time(8, 0)
LEGAL_END = time(20, 0)
ALL_DAYS: frozenset[int] = frozenset(range(7))  # date.weekday(): Monday=0 .. Sunday=6
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def minutes(value: time) -> int:
    """Minutes since local midnight (seconds are not a unit windows use)."""
    return value.hour * 60 + value.minute


@dataclass(frozen=True)
class Window:
    """Local contact hours [start, end) on the allowed weekdays (Monday=0).

    Construction validates that the window lies inside 08:00-20:00 and raises
    ValueError otherwise; `Window.clamped` narrows stored settings instead.
    """

    start: time = LEGAL_START
    end: time = LEGAL_END
    days: frozenset[int] = field(default=ALL_DAYS)

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("window times are local wall times; pass naive times")
        if self.start < LEGAL_START or self.end > LEGAL_END:
            raise ValueError(
                f"window {self.start:%H:%M}-{self.end:%H:%M} is wider than the legal "
                f"{LEGAL_START:%H:%M}-{LEGAL_END:%H:%M}"
            )
        if self.start >= self.end:
            raise ValueError("window start must be before its end")
        days = frozenset(self.days)
        if not days or not days <= ALL_DAYS:
            raise ValueError("window days must be a non-empty set of weekdays 0..6")
        object.__setattr__(self, "days", days)

    @classmethod
    def clamped(cls, start: time, end: time, days: Iterable[int] = ALL_DAYS) -> Window:
        """A window narrowed to the legal bounds (for settings saved before validation)."""
        start = max(start.replace(tzinfo=None), LEGAL_START)
        end = min(end.replace(tzinfo=None), LEGAL_END)
        return cls(start=start, end=end, days=frozenset(d for d in days if d in ALL_DAYS))

    def span(self, weekday: int) -> tuple[int, int] | None:
        """Allowed minutes [start, end) on a weekday, or None if the day is off."""
        if weekday not in self.days:
            return None
        return minutes(self.start), minutes(self.end)

    def describe(self) -> str:
        """'08:00-20:00 Mon-Sun' style text for reasons and logs."""
        days = (
            "every day"
            if self.days == ALL_DAYS
            else ",".join(DAY_NAMES[d] for d in sorted(self.days))
        )
        return f"{self.start:%H:%M}-{self.end:%H:%M} {days}"


DEFAULT_WINDOW = Window()
