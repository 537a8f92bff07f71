"""Moving time forward in development: the built-in sandbox's clock and the gateway's together.

Only while the built-in Twilio sandbox stands in for Twilio (never in production, which refuses
to start without Twilio credentials) and only when the worker runs in the same process
(`gateway run`): the gateway's clock is this process's (gateway/clock.py), so a worker in
another process would not see the jump.

The sandbox in real time follows the wall clock; a skip moves its virtual clock ahead and runs
what falls due on the way (`Scheduler.skipped` keeps the driver going from there). The gateway's
clock follows as the wall clock plus the same skipped seconds, so the two read the same time
(the sandbox's steps by its ticks, at most a second behind) and a play's next step, due in a
day, is found by the plays sweep (every 10 s) once the day is skipped.
"""

from __future__ import annotations

from datetime import timedelta

from gateway.clock import set_clock, wall
from gateway.settings import Settings
from twilio_sandbox import Sandbox


class NotInProduction(RuntimeError):
    """The clock was asked to move where it never may: with Twilio credentials or in production."""


_following: Sandbox | None = None


def follow(sandbox: Sandbox) -> None:
    """The gateway's clock from now on: the wall clock plus what `sandbox` skipped."""
    global _following  # noqa: PLW0603 - one clock per process, as gateway/clock.py has
    if _following is sandbox:
        return
    scheduler = sandbox.scheduler
    set_clock(lambda: wall() + timedelta(seconds=scheduler.skipped))
    _following = sandbox


def release() -> None:
    """Back to the wall clock (the app's shutdown, tests)."""
    global _following  # noqa: PLW0603
    if _following is not None:
        set_clock(None)
        _following = None


async def skip(settings: Settings, sandbox: Sandbox, seconds: float) -> None:
    """Move both clocks `seconds` forward; the sandbox runs what falls due on the way.

    Refused (NotInProduction) unless the built-in sandbox stands in for Twilio in development:
    the page that calls this answers 404 then, and this check holds even if a caller forgets.
    """
    if settings.environment == "production" or not settings.uses_sandbox:
        raise NotInProduction("the clock moves only with the built-in sandbox, in development")
    if seconds <= 0:
        raise ValueError("the clock moves forward only")
    follow(sandbox)
    await sandbox.advance(seconds)
