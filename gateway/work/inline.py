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
account's drain, `Staged.in_redis`). A job that asks to run again later (arq
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
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import HANDOFF
from gateway.work.registry import Registered, registered
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


class Inline:
    """A session factory's hand-off (`gateway.work.bind`) that runs inline kinds itself, at most
    `limit` at a time with up to `backlog` more waiting their turn, and hands everything else to
    Redis."""

    def __init__(self, redis: ArqRedis, limit: int, *, timeout: float, backlog: int = 0) -> None:
        self.redis = redis
        self.limit = limit
        self.backlog = backlog
        self.timeout = timeout  # a job's time limit, as the worker's job_timeout
        self._ctx: Mapping[str, Any] | None = None
        self._jobs: dict[str, Registered] = {}
        self._running: set[asyncio.Task[None]] = set()
        # Taken past the limit, in the order taken, with when (time.monotonic()).
        self._waiting: deque[tuple[Registered, Staged, float]] = deque()
        self._closed = False

    def start(self, ctx: Mapping[str, Any]) -> None:
        """Begin running jobs with `ctx`, the dict a job takes (`gateway.job_context.as_ctx`):
        built after this hand-off, since its sessions hand off here."""
        self._jobs = {entry.kind.name: entry for entry in registered() if entry.inline}
        self._ctx = ctx

    async def __call__(self, staged: Collection[Staged]) -> None:
        to_redis: list[Staged] = []
        for item in staged:
            entry = self._jobs.get(item.kind.name)
            if item.then is not None:
                # Begun in the transaction (`runs_here` said this process would take it): taken
                # even if others filled the runner since, as room was checked before the commit;
                # it waits its turn if need be. Only a runner shut down meanwhile hands it to
                # Redis as the plain job.
                taken = self._ctx is not None and not self._closed
            else:
                taken = entry is not None and item.at is None and self._take()
            if entry is None or not taken:
                to_redis.append(item)  # as its own job, or its drain's (`Staged.in_redis`)
            elif len(self._running) < self.limit:
                self._launch(entry, item)
            else:
                self._waiting.append((entry, item, time.monotonic()))
        if to_redis:
            await handoff_to_redis(self.redis, to_redis)

    def _take(self) -> bool:
        return (
            self._ctx is not None
            and not self._closed
            and len(self._running) + len(self._waiting) < self.limit + self.backlog
        )

    def room_for_one(self) -> Mapping[str, Any] | None:
        """The jobs' dict, if this runner would take one more job now (`runs_here`)."""
        return self._ctx if self._take() else None

    def _launch(self, entry: Registered, item: Staged, since: float | None = None) -> None:
        task = asyncio.create_task(self._run(entry, item, since), name=item.job_id)
        self._running.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A job ended: the longest waiting one takes its place."""
        self._running.discard(task)
        while self._waiting and len(self._running) < self.limit and not self._closed:
            self._launch(*self._waiting.popleft())

    async def _run(self, entry: Registered, item: Staged, since: float | None) -> None:
        """Run the job, or what is left of work begun in its transaction (`since`: when it
        began to wait in the backlog)."""
        assert self._ctx is not None
        waited = time.monotonic() - since if since is not None else 0.0
        if item.then is not None and waited > BACKLOG_WAIT_LIMIT:
            # Too late to send from here: the plain job reconciles the claimed row first.
            await enqueue(self.redis, replace(item, then=None))
            return
        try:
            async with asyncio.timeout(self.timeout):
                if item.then is not None:
                    await item.then(dict(self._ctx))
                else:
                    await entry.function.coroutine(dict(self._ctx), item.argument)
        except Retry as retry:
            await retry_later(self.redis, item, retry)  # as arq retries a job
        except Exception:
            # As a failed arq job: its row still owes the work, and the sweep enqueues it.
            log.exception("inline job %s failed; the sweep will retry it", item.job_id)

    async def aclose(self, grace: float) -> None:
        """Take no more jobs; hand the waiting ones to Redis (as their plain jobs); give the
        running ones up to `grace` seconds, then cancel them (a cancelled job's row is found
        again by the sweep, as a worker's cancelled job is)."""
        self._closed = True
        waiting = [item for _, item, _ in self._waiting]
        self._waiting.clear()
        if waiting:
            await handoff_to_redis(self.redis, waiting)
        running = list(self._running)
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
