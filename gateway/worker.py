"""The arq worker: job functions, cron, and the per-job database session.

Jobs take ids, not objects, and are idempotent: arq may run a job again after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, cast

import uvloop
from arq import cron
from arq.connections import ArqRedis, RedisSettings
from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from arq.worker import Function, Worker
from sqlalchemy.ext.asyncio import AsyncEngine

# The job modules register their jobs (`@job`) when imported: every one is imported here.
import gateway.engine.jobs
import gateway.jobs.email_send
import gateway.jobs.plays_advance
import gateway.jobs.sms_inbox
import gateway.jobs.sms_send
import gateway.jobs.sms_sends
import gateway.jobs.sms_statuses
import gateway.webhooks.delivery  # noqa: F401
import voice.jobs  # noqa: F401
from gateway import clock, work
from gateway.accounts import mark_key_used
from gateway.db import SessionFactory, create_engine, session_factory, transaction
from gateway.errors import REDIS_LOST
from gateway.job_context import KEY as JOB_CONTEXT
from gateway.job_context import JobContext, as_ctx, job_context
from gateway.jobs import sms_status_checks
from gateway.settings import Settings
from gateway.sms.ratelimit import SenderRateLimiter
from gateway.twilio_client import build_twilio_client
from gateway.webhooks import sending
from gateway.work.inline import Inline
from gateway.work.registry import functions
from gateway.work.sweep import SWEEP_JOB
from gateway.work.sweep import sweep as work_sweep

log = logging.getLogger(__name__)

# On SIGTERM the worker stops taking jobs and lets running ones finish for this long; a job
# still running after it is cancelled and arq runs it again later (every job is idempotent).
JOB_COMPLETION_WAIT = 25
JOB_TIMEOUT = 60
# Twilio answers in well under a second; a request hanging this long is treated as unknown.
TWILIO_TIMEOUT = 15.0
# Inline jobs (a send, a step) take well under a second; on shutdown they get this long.
INLINE_GRACE = 10
# Inline jobs waiting for a turn in a process whose own worker would otherwise take them through
# Redis (`inline_runner`): about 2.5 s of leads at 100 a second.
INLINE_BACKLOG = 256
SWEEP_EVERY_SECONDS = 10
NEVER = timedelta(days=36_500)  # a burst worker's next sweep: not in its lifetime
# arq's worker ends when Redis goes away (its poll loop does not retry); `gateway worker` then
# starts a new one after this pause, and the sweeps re-enqueue whatever Redis lost.
REDIS_RETRY_SECONDS = 1.0


@work.job(work.KEY_USED)
async def keys_mark_used(ctx: dict[str, Any], key_id: str) -> None:
    """Record that an API key was used (deduplicated by job id, so at most one in the queue)."""
    jc = job_context(ctx)
    async with transaction(jc.sessions) as session:
        await mark_key_used(session, key_id)


# Every registered job (`gateway.work.job`), the ones imported above and this module's.
FUNCTIONS: list[Function] = functions()

# The crons, and the second (mod 10) each starts at, so they don't hit the database in the
# same instant: the one sweep that re-creates lost work of every kind (`gateway.work.sweep`),
# and, not lost work but lost news, sent texts whose status callbacks never came.
SWEEPS: list[tuple[str, Any, int]] = [
    (SWEEP_JOB, work_sweep, 0),
    (sms_status_checks.CHECK_JOB, sms_status_checks.check_statuses, 5),
]


@dataclass
class _AtStartOnly(CronJob):
    """A burst worker's sweep: it runs when the worker starts and never again by the clock.
    arq enqueues a tick due within the next second as a deferred job, and a burst worker, which
    ends only when its queue is empty, would wait for it: up to a second on many runs, since two
    crons tick in every ten seconds."""

    def calculate_next(self, prev_run: datetime) -> None:
        self.next_run = prev_run + NEVER


def cron_jobs(*, burst: bool = False) -> list[CronJob]:
    """Fresh cron entries per worker: arq keeps each entry's next run on the object itself."""
    entries = [
        cron(
            cast(WorkerCoroutine, job),
            name=name,
            second=set(range(offset, 60, SWEEP_EVERY_SECONDS)),
            run_at_startup=True,
            keep_result=0,
        )
        for name, job, offset in SWEEPS
    ]
    if not burst:
        return entries
    return [_AtStartOnly(*(getattr(e, f.name) for f in fields(CronJob))) for e in entries]


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 5
    settings.conn_retries = 10
    return settings


def build_job_context(
    settings: Settings, sessions: SessionFactory, redis: ArqRedis, *, inline: Inline | None = None
) -> JobContext:
    """What every job reads: the database (its transactions hand their staged work to `redis`,
    or to `inline`, which runs the work a lead waits on itself), Redis, and the clients a
    worker keeps open."""
    jc = JobContext(
        settings=settings,
        sessions=work.bind(sessions, redis, handoff=inline),
        redis=redis,
        twilio=build_twilio_client(
            settings.twilio_sid,
            settings.twilio_token,
            api_base_url=settings.twilio_api_base_url,
            timeout=TWILIO_TIMEOUT,
        ),
        rate_limiter=SenderRateLimiter(redis),
        http=sending.new_client(),  # the webhooks' HTTP clients (10 s timeout)
    )
    if inline is not None:
        inline.start(as_ctx(jc))
    return jc


def inline_runner(settings: Settings, redis: ArqRedis, *, worker_here: bool) -> Inline | None:
    """The runner of inline jobs (`gateway.work.inline`) that `INLINE_JOBS` asks for, if any.

    `worker_here`: this process's own worker takes what goes to Redis (`gateway run`, `gateway
    worker`), so work past the limit waits in the runner's backlog rather than come back to it
    through Redis; a web process with workers elsewhere hands its overflow to them."""
    if settings.inline_jobs == 0:
        return None
    backlog = INLINE_BACKLOG if worker_here else 0
    return Inline(redis, settings.inline_jobs, timeout=JOB_TIMEOUT, backlog=backlog)


async def close_job_context(jc: JobContext) -> None:
    """Close the clients `build_job_context` opened (not the database or Redis: not its own)."""
    try:
        await jc.http.aclose()
    finally:
        await jc.twilio.http_client.close()


@asynccontextmanager
async def opened_job_context(
    settings: Settings, sessions: SessionFactory, redis: ArqRedis
) -> AsyncIterator[JobContext]:
    """A `JobContext` for running jobs outside a worker (tests, bench), closed afterwards."""
    jc = build_job_context(settings, sessions, redis)
    try:
        yield jc
    finally:
        await close_job_context(jc)


async def _startup(ctx: dict[str, Any]) -> None:
    # The worker's own keys (set by build_worker, and arq's `redis`); jobs read only JOB_CONTEXT.
    # `gateway run` hands in the app's JobContext (and its inline runner), which it closes.
    settings: Settings = ctx["settings"]
    clock.run_ahead(settings.clock_ahead_seconds)
    if JOB_CONTEXT not in ctx:
        if "engine" not in ctx:
            ctx["engine"] = create_engine(settings.database)
            ctx["sessions"] = session_factory(ctx["engine"])
            ctx["owns_engine"] = True
        inline = ctx["inline"] = inline_runner(settings, ctx["redis"], worker_here=True)
        ctx[JOB_CONTEXT] = build_job_context(settings, ctx["sessions"], ctx["redis"], inline=inline)
        ctx["owns_context"] = True
    ctx["started"] = True
    log.info("worker started")


async def _shutdown(ctx: dict[str, Any]) -> None:
    # Once only, and only what _startup opened: after a lost Redis it runs from
    # run_until_stopped.
    if not ctx.pop("started", False):
        return
    try:
        if ctx.pop("owns_context", False):
            inline: Inline | None = ctx.pop("inline", None)
            try:
                if inline is not None:
                    await inline.aclose(INLINE_GRACE)
            finally:
                await close_job_context(job_context(ctx))
                del ctx[JOB_CONTEXT]
    finally:
        if ctx.pop("owns_engine", False):
            await ctx.pop("engine").dispose()
            del ctx["sessions"]
    log.info("worker stopped")


def build_worker(
    settings: Settings,
    redis_url: str,
    *,
    engine: AsyncEngine | None = None,
    jobs: JobContext | None = None,
    handle_signals: bool = True,
    burst: bool = False,
    **overrides: Any,
) -> Worker:
    """A worker for these settings. Inside the app's process (`gateway run`) pass the app's
    `jobs` context (its pool, clients and inline runner), or at least its `engine`."""
    ctx: dict[str, Any] = {"settings": settings}
    if jobs is not None:
        ctx[JOB_CONTEXT] = jobs
    elif engine is not None:
        ctx.update(engine=engine, sessions=session_factory(engine))
    return Worker(
        functions=FUNCTIONS,
        cron_jobs=cron_jobs(burst=burst),
        redis_settings=redis_settings(redis_url),
        ctx=ctx,
        on_startup=_startup,
        on_shutdown=_shutdown,
        handle_signals=handle_signals,
        job_completion_wait=JOB_COMPLETION_WAIT,
        job_timeout=JOB_TIMEOUT,
        # Worker-wide too, not only per function: arq stores the failure of a job it cannot run
        # ("job expired": its data was lost in a Redis flush; max tries exceeded) under this
        # default (an hour), and while that result lives `enqueue_job` refuses the id, so the
        # sweep could not re-enqueue the work the database still owes.
        keep_result=0,
        burst=burst,
        poll_delay=0.05,
        **overrides,
    )


def run_until_stopped(settings: Settings, redis_url: str, *, burst: bool = False) -> None:
    """`gateway worker`: run arq workers one after another until a signal stops one (or its
    burst ends). A worker that lost Redis is replaced, so a Redis restart stops nothing."""
    # uvloop, the loop `gateway web` and `gateway run` already get from uvicorn: one event loop
    # for every process. It bought a few per cent of worker CPU per text, within the noise
    # (bench/RESULTS.md §9); the worker's CPU is in the database layer. arq takes this loop.
    asyncio.set_event_loop(uvloop.new_event_loop())
    while True:
        worker = build_worker(settings, redis_url, burst=burst)
        try:
            worker.run()
            return
        except REDIS_LOST as exc:
            log.warning(
                "worker lost Redis (%s: %s); starting a new one in %.0f s",
                type(exc).__name__,
                exc,
                REDIS_RETRY_SECONDS,
            )
            worker.loop.run_until_complete(_wind_down(worker))
        time.sleep(REDIS_RETRY_SECONDS)


async def stop_worker(worker: Worker, task: asyncio.Task[None], grace: float) -> None:
    """Stop a worker that runs as `task` in this loop: take no more jobs, give running ones up
    to `grace` seconds, cancel the rest (arq retries them once their in-progress keys expire),
    then close. arq's own `close()` cancels running jobs and then gathers them, which raises
    CancelledError into the caller; here they are cancelled and gathered first, so it doesn't."""
    worker.allow_pick_jobs = False
    running = [job for job in worker.tasks.values() if not job.done()]
    if running and grace > 0:
        await asyncio.wait(running, timeout=grace)
    task.cancel()  # the poll loop, which starts no job now
    with contextlib.suppress(asyncio.CancelledError):
        await task
    running = [job for job in worker.tasks.values() if not job.done()]
    for job in running:
        job.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    worker.tasks.clear()
    await worker.close()


async def _wind_down(worker: Worker) -> None:
    """Let a worker that lost Redis finish the jobs it runs (each bounded by its timeout),
    then close what it opened."""
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    with contextlib.suppress(*REDIS_LOST):
        await _shutdown(worker.ctx)
