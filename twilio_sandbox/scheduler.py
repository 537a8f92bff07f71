"""Virtual time for the sandbox: a clock, a queue of timed events and simulated processes.

Everything the sandbox does after answering a REST request (status progressions,
ringing phones, TwiML, callbacks) runs as a *process* driven by this scheduler, so
tests can move time forward in milliseconds and still see events in their real
order. A process that waits on virtual time is parked; the scheduler only moves
the clock when every process is parked, which is what makes `advance()`
deterministic even though callbacks are real HTTP requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_log = logging.getLogger("twilio_sandbox.scheduler")

# A process that never parks (e.g. a gateway that never answers a callback)
# would freeze advance() forever; this bound turns that into an error.
QUIESCE_TIMEOUT_SECONDS = 30.0


class VirtualClock:
    """The sandbox's own time: starts at `start` and moves only when told."""

    def __init__(self, start: datetime | None = None) -> None:
        begin = start or datetime.now(UTC).replace(microsecond=0)
        self._epoch = begin.astimezone(UTC)
        self._offset = 0.0

    @property
    def seconds(self) -> float:
        """Seconds since the clock's start."""
        return self._offset

    def now(self) -> datetime:
        """Current virtual time, UTC-aware."""
        return self._epoch + timedelta(seconds=self._offset)

    def at(self, seconds: float) -> datetime:
        """The datetime of a virtual instant."""
        return self._epoch + timedelta(seconds=seconds)

    def seconds_of(self, instant: datetime) -> float:
        """The virtual instant of a datetime."""
        return (instant.astimezone(UTC) - self._epoch).total_seconds()

    def _move_to(self, seconds: float) -> None:
        # Time never runs backwards, even if an event was due in the past.
        self._offset = max(self._offset, seconds)


@dataclass(order=True)
class _Event:
    when: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Timer:
    """Handle of a scheduled event; cancel() stops it from running."""

    def __init__(self, event: _Event) -> None:
        self._event = event

    def cancel(self) -> None:
        self._event.cancelled = True


class Wake:
    """A parked process's wake-up: tracks whether the scheduler counted it active again."""

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.counted = False
        self.timed_out = False


class Scheduler:
    """Runs events at virtual instants and simulated processes between them."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._queue: list[_Event] = []
        self._seq = itertools.count()
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._new_event = asyncio.Event()
        self._realtime: asyncio.Task[None] | None = None
        # Virtual seconds skipped by advance() while real time drives the clock: the driver
        # goes on from there instead of waiting for the wall clock to catch up.
        self.skipped = 0.0
        self.errors: list[BaseException] = []

    # -- scheduling -------------------------------------------------------

    def call_later(self, delay: float, action: Callable[[], None]) -> Timer:
        """Run a plain callable `delay` virtual seconds from now."""
        event = _Event(self.clock.seconds + max(0.0, delay), next(self._seq), action)
        heapq.heappush(self._queue, event)
        self._new_event.set()
        return Timer(event)

    def spawn(self, make: Callable[[], Coroutine[Any, Any, None]], delay: float = 0.0) -> Timer:
        """Start a process `delay` virtual seconds from now (never before advance/settle)."""

        def begin() -> None:
            self.start_now(make())

        return self.call_later(delay, begin)

    def start_now(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start a process immediately; it counts as running until it parks or ends."""
        self._inc()
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._dec()
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self.errors.append(exc)
            _log.error("sandbox process failed", exc_info=exc)

    # -- waiting inside processes ----------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Park the calling process for `seconds` of virtual time."""
        wake = self.new_wake()
        timer = self.call_later(seconds, lambda: self.wake(wake))
        try:
            await self.park(wake)
        finally:
            timer.cancel()

    def new_wake(self) -> Wake:
        return Wake(asyncio.get_running_loop().create_future())

    def wake(self, wake: Wake, *, timed_out: bool = False) -> None:
        """Resume a parked process (from an event or from a REST handler)."""
        if wake.future.done():
            return
        wake.timed_out = timed_out
        wake.counted = True
        self._inc()
        wake.future.set_result(None)

    async def park(self, wake: Wake) -> None:
        """Wait for `wake` without counting as running, so time can move meanwhile."""
        self._dec()
        try:
            await wake.future
        except asyncio.CancelledError:
            if not wake.counted:
                wake.counted = True
                self._inc()
            raise

    async def park_until(self, wake: Wake, seconds: float) -> bool:
        """Park until woken or `seconds` pass; True when woken."""
        timer = self.call_later(seconds, lambda: self.wake(wake, timed_out=True))
        try:
            await self.park(wake)
        finally:
            timer.cancel()
        return not wake.timed_out

    def _inc(self) -> None:
        self._active += 1
        self._idle.clear()

    def _dec(self) -> None:
        self._active -= 1
        if self._active <= 0:
            self._active = 0
            self._idle.set()

    # -- driving time -----------------------------------------------------

    async def _quiesce(self) -> None:
        try:
            async with asyncio.timeout(QUIESCE_TIMEOUT_SECONDS):
                while self._active > 0:
                    await self._idle.wait()
        except TimeoutError as exc:
            raise RuntimeError(
                f"sandbox processes still running after {QUIESCE_TIMEOUT_SECONDS}s real time"
            ) from exc

    def next_due(self) -> float | None:
        while self._queue and self._queue[0].cancelled:
            heapq.heappop(self._queue)
        return self._queue[0].when if self._queue else None

    async def advance(self, seconds: float) -> None:
        """Move virtual time forward, running every event due on the way, in order. In real
        time this is a skip ahead (a day of a drip in a moment); the clock goes on from there."""
        if self._realtime is not None:
            self.skipped += max(0.0, seconds)
        await self._advance(seconds)

    async def _advance(self, seconds: float) -> None:
        async with self._lock:
            target = self.clock.seconds + seconds
            await self._run_until(target)
            self.clock._move_to(target)

    async def settle(self, limit_seconds: float = 24 * 3600.0) -> None:
        """Run until nothing is scheduled (or `limit_seconds` of virtual time pass)."""
        async with self._lock:
            target = self.clock.seconds + limit_seconds
            await self._run_until(target)

    async def _run_until(self, target: float) -> None:
        while True:
            await self._quiesce()
            due = self.next_due()
            if due is None or due > target:
                return
            event = heapq.heappop(self._queue)
            self.clock._move_to(event.when)
            event.action()
            # Let processes woken or started by this event take their first step.
            await asyncio.sleep(0)

    # -- real time ----------------------------------------------------------

    def start_realtime(self, speed: float = 1.0) -> None:
        """Drive virtual time from the wall clock (for `gateway run` and benchmarks)."""
        if self._realtime is None:
            self._realtime = asyncio.get_running_loop().create_task(self._drive(speed))

    async def _drive(self, speed: float) -> None:
        wall0, virtual0 = time.monotonic(), self.clock.seconds
        while True:
            self._new_event.clear()
            due = self.next_due()
            wait = 1.0 if due is None else max(0.0, (due - self.clock.seconds) / speed)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, 1.0)):
                    await self._new_event.wait()
            target = virtual0 + (time.monotonic() - wall0) * speed + self.skipped
            try:
                await self._advance(max(0.0, target - self.clock.seconds))
            except RuntimeError:
                _log.exception("sandbox real-time driver: processes did not settle")

    async def aclose(self) -> None:
        """Stop the real-time driver and every running process."""
        tasks: list[asyncio.Task[None]] = list(self._tasks)
        if self._realtime is not None:
            tasks.append(self._realtime)
            self._realtime = None
        for task in tasks:
            task.cancel()
        waiting: list[Awaitable[Any]] = list(tasks)
        await asyncio.gather(*waiting, return_exceptions=True)
        self._queue.clear()
