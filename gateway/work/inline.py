"""Jobs run inline: work due now, run by the process whose commit staged it, without a trip
through Redis.

A lead's first text is an `sms.send` job (its play's first step runs in `POST /v1/plays`'s own
transaction, gateway/engine/starting.py); through Redis a job waits for a worker's poll and
costs about twenty Redis round trips, so the text left a few hundred milliseconds after the
lead arrived. Kinds registered with `@job(..., inline=True)` are run by the process that
committed their row instead, right after the commit, so `POST /v1/plays` is followed at once by
the play's first text, in the web process that took the lead (and a step run by a worker, or a
reply's, is followed by its text in that worker).

Nothing about the work changes but where it runs: the same job function, through the gate, the
claim and the outbox, so a crash loses nothing (the row is committed and the sweep finds it)
and sends nothing twice (the claim). The bound is `Settings.inline_jobs`; past it, and for work
deferred to later, the job goes to Redis as any staged work does (a text due now as its
account's drain, `Staged.in_redis`). Work one commit made due together for one drain runs as
one job, the drain's `together` (a batch of replies' next texts: gated and claimed in one
transaction, recorded in another, not two each). A job that asks to run again later (arq
`Retry`) is enqueued in Redis for then, under its own id as arq's retry keeps it; one that
fails is logged and left to the sweep, as a failed arq job is.

A process whose own worker takes what goes through Redis (`gateway run`, `gateway worker`)
gains nothing by sending work there when it is busy: the job comes back to the same process,
later and dearer (arq's own round trips, and a text read, gated and claimed again in a
transaction of its own). At 100 leads a second in one process, the one in eight first texts
that found the runner full waited 6-7 s in arq's queue, and the extra work per text kept the
process behind. So such a runner has a backlog: past its limit, work waits here, in order,
for a running job to end (`backlog`; 0 in `gateway web`, whose overflow is a worker's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import HANDOFF
from gateway.work.registry import Registered, Together, registered
from gateway.work.staging import Staged, enqueue, handoff_to_redis, retry_later

log = logging.getLogger(__name__)

# A text claimed in its transaction (`Staged.then`) that waited this long in the backlog is not
# sent from here: its plain job goes to Redis and reconciles it with Twilio first. The sweep
# takes a `sending` row for a stuck one after `sms_send.STALE_SENDING` (2 min), and a request
# started that late could cross the sweep's job, which would not find it at Twilio yet.
BACKLOG_WAIT_LIMIT = 30.0


def runs_here(session: AsyncSession) -> Mapping[str, Any] | None:
    """The dict a job takes, when `session`'s commit hands its work to an inline runner that
    has room for one more job now: its transaction may then begin a job's work itself
    (`gateway.work.staging.begun`), and this process runs the rest after the commit. None
    otherwise (work goes to Redis, or nothing runs it here)."""
    runner = session.info.get(HANDOFF)
    return runner.room_for_one() if isinstance(runner, Inline) else None


@dataclass(frozen=True)
class _Job:
    """What the runner runs as one task: one staged item's job (or what is left of it), or a
    drain's work for the items one commit made due together (`Registered.together`)."""

    items: Sequence[Staged]
    run: Callable[[dict[str, Any]], Awaitable[Any]]
    name: str


class Inline:
    """A session factory's hand-off (`gateway.work.bind`) that runs inline kinds itself, at most
    `limit` at a time with up to `backlog` more waiting their turn, and hands everything else to
    Redis. Items one commit staged due now for one drain (`Kind.batched_by`) run as one job,
    its `together` work (see the module); one item alone runs its own job."""

    def __init__(self, redis: ArqRedis, limit: int, *, timeout: float, backlog: int = 0) -> None:
        self.redis = redis
        self.limit = limit
        self.backlog = backlog
        self.timeout = timeout  # a job's time limit, as the worker's job_timeout
        self._ctx: Mapping[str, Any] | None = None
        self._jobs: dict[str, Registered] = {}
        self._together: dict[str, Together] = {}  # by drain
        self._running: set[asyncio.Task[None]] = set()
        # Taken past the limit, in the order taken, with when (time.monotonic()).
        self._waiting: deque[tuple[_Job, float]] = deque()
        self._closed = False

    def start(self, ctx: Mapping[str, Any]) -> None:
        """Begin running jobs with `ctx`, the dict a job takes (`gateway.job_context.as_ctx`):
        built after this hand-off, since its sessions hand off here."""
        entries = registered()
        self._jobs = {entry.kind.name: entry for entry in entries if entry.inline}
        self._together = {e.kind.name: e.together for e in entries if e.together is not None}
        self._ctx = ctx

    async def __call__(self, staged: Collection[Staged]) -> None:
        to_redis: list[Staged] = []
        for job in self._jobs_of(staged, to_redis):
            if any(item.then is not None for item in job.items):
                # Begun in the transaction (`runs_here` said this process would take it): taken
                # even if others filled the runner since, as room was checked before the commit;
                # it waits its turn if need be. Only a runner shut down meanwhile hands it to
                # Redis as the plain job.
                taken = self._ctx is not None and not self._closed
            else:
                taken = self._take()
            if not taken:
                to_redis.extend(job.items)  # as their own jobs, or their drain's
            elif len(self._running) < self.limit:
                self._launch(job)
            else:
                self._waiting.append((job, time.monotonic()))
        if to_redis:
            await handoff_to_redis(self.redis, to_redis)

    def _jobs_of(self, staged: Collection[Staged], to_redis: list[Staged]) -> list[_Job]:
        """The jobs to run here for `staged`, in order; what no inline kind takes (deferred
        work, a kind not inline) goes to `to_redis`."""
        jobs: list[_Job] = []
        together: dict[tuple[str, str], list[Staged]] = {}
        for item in staged:
            if item.kind.name not in self._jobs or (item.at is not None and item.then is None):
                to_redis.append(item)
            elif item.then is not None:
                jobs.append(_Job([item], item.then, item.job_id))
            elif (key := self._together_key(item)) is not None:
                together.setdefault(key, []).append(item)
            else:
                jobs.append(self._own_job(item))
        for (drain, batch), items in together.items():
            if len(items) == 1:
                jobs.append(self._own_job(items[0]))
            else:
                arguments = [item.argument for item in items]
                run = partial(_run_together, self._together[drain], batch, arguments)
                jobs.append(_Job(items, run, f"{drain}:{batch} ({len(items)} together)"))
        return jobs

    def _own_job(self, item: Staged) -> _Job:
        return _Job(
            [item], partial(_run_own, self._jobs[item.kind.name], item.argument), item.job_id
        )

    def _together_key(self, item: Staged) -> tuple[str, str] | None:
        """The drain and its argument that would take `item` with others staged beside it."""
        drain = item.kind.batched_by
        if drain is None or item.batch is None or drain.name not in self._together:
            return None
        return (drain.name, item.batch)

    def _take(self) -> bool:
        return (
            self._ctx is not None
            and not self._closed
            and len(self._running) + len(self._waiting) < self.limit + self.backlog
        )

    def room_for_one(self) -> Mapping[str, Any] | None:
        """The jobs' dict, if this runner would take one more job now (`runs_here`)."""
        return self._ctx if self._take() else None

    def _launch(self, job: _Job, since: float | None = None) -> None:
        task = asyncio.create_task(self._run(job, since), name=job.name)
        self._running.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A job ended: the longest waiting one takes its place."""
        self._running.discard(task)
        while self._waiting and len(self._running) < self.limit and not self._closed:
            self._launch(*self._waiting.popleft())

    async def _run(self, job: _Job, since: float | None) -> None:
        """Run the job, or what is left of work begun in its transaction (`since`: when it
        began to wait in the backlog)."""
        assert self._ctx is not None
        waited = time.monotonic() - since if since is not None else 0.0
        begun = [item for item in job.items if item.then is not None]
        if begun and waited > BACKLOG_WAIT_LIMIT:
            # Too late to send from here: the plain job reconciles the claimed row first.
            for item in begun:
                await enqueue(self.redis, replace(item, then=None))
            return
        try:
            async with asyncio.timeout(self.timeout):
                await job.run(dict(self._ctx))
        except Retry as retry:
            for item in job.items:
                await retry_later(self.redis, item, retry)  # as arq retries a job
        except Exception:
            # As a failed arq job: its rows still owe the work, and the sweep enqueues it.
            log.exception("inline job %s failed; the sweep will retry it", job.name)

    async def aclose(self, grace: float) -> None:
        """Take no more jobs; hand the waiting ones to Redis (as their plain jobs); give the
        running ones up to `grace` seconds, then cancel them (a cancelled job's row is found
        again by the sweep, as a worker's cancelled job is)."""
        self._closed = True
        waiting = [item for job, _ in self._waiting for item in job.items]
        self._waiting.clear()
        if waiting:
            await handoff_to_redis(self.redis, waiting)
        running = list(self._running)
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def _run_own(entry: Registered, argument: str, ctx: dict[str, Any]) -> Any:
    return await entry.function.coroutine(ctx, argument)


async def _run_together(
    together: Together, batch: str, arguments: Sequence[str], ctx: dict[str, Any]
) -> Any:
    return await together(ctx, batch, arguments)
