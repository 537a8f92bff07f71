"""The one clock of the gateway: every "now" comes from here so tests can set time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

# Times a client may give: far enough to hold any real consent or query bound, close enough that
# converting to UTC and adding the gateway's offsets (days, retry windows) never overflows.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)

_source: Callable[[], datetime] | None = None
_ahead = timedelta()


def now() -> datetime:
    """Current time, UTC-aware (or the time a test has set)."""
    if _source is not None:
        return _source()
    return wall()


def wall() -> datetime:
    """The wall clock, run ahead as `run_ahead` says: what a clock that moves from the real
    time (gateway/dev_clock.py) starts from."""
    return datetime.now(UTC) + _ahead


def run_ahead(seconds: float) -> None:
    """Run this process's clock `seconds` ahead of the wall clock, from now on.

    For benchmarks against a sandbox at any hour (CLOCK_AHEAD_SECONDS; gateway/settings.py
    refuses it wherever a text could reach a real phone): the quiet-hours gate reads this clock.
    arq waits by the wall clock, and the gateway hands it delays (gateway/work/staging.py), not
    times, so work still falls due when it should.
    """
    global _ahead  # noqa: PLW0603 - one clock per process
    _ahead = timedelta(seconds=seconds)


_last_stamp: datetime | None = None


def stamp() -> datetime:
    """`now()`, but strictly later than the previous stamp of this process.

    Rows whose order matters (a lead's texts leave in the order they were written) are ordered
    by this time; two rows written in the same microsecond, or under a test's frozen clock,
    still get distinct, increasing times.
    """
    global _last_stamp  # noqa: PLW0603 - the point is one sequence per process
    moment = now()
    if _last_stamp is not None and moment <= _last_stamp:
        moment = _last_stamp + timedelta(microseconds=1)
    _last_stamp = moment
    return moment


def set_clock(source: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests, simulations); None restores the wall clock."""
    global _source, _last_stamp
    _source, _last_stamp = source, None


def _utc_in_range(value: datetime) -> datetime:
    try:
        # 0001-01-01T00:00+14:00 is a valid datetime whose UTC is before year 1.
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range: between 1900 and 2999") from None
    if not EARLIEST <= utc <= LATEST:
        raise ValueError("out of range: between 1900 and 2999")
    return utc


Instant = Annotated[AwareDatetime, AfterValidator(_utc_in_range)]
"""A time a client gives: with its offset, between 1900 and 2999, returned in UTC."""
