"""The party line's jobs: `party_lines.run` (timers due, then the outbox) and the sweep.

`party_lines.run` is idempotent and may run twice at once: every change happens under the
party line's row lock, an outbox item is marked in flight before its request (a second run
leaves it alone), and only a request whose outcome is known is fed back. Its job id carries
the row's version, so every change that leaves work gets its own job, and a job that finds
nothing to do just returns.

The sweep (cron) re-creates lost work from the database: party lines whose `wake_at` has
come (outbox work, a lead retry or gate deferral due, the watchdog, an in-flight item whose
job died).
"""

from __future__ import annotations

import logging
from typing import Any

from arq.connections import ArqRedis
from sqlmodel import col, select

from gateway.clock import now
from gateway.db import transaction
from gateway.engine import lifecycle
from gateway.engine.jobs import enqueue_advance
from gateway.job_context import job_context
from gateway.job_results import enqueue_owed
from gateway.models import PartyLineRecord
from gateway.sms.outbox import enqueue_send
from voice.runner import AfterCommit, Runner
from voice.starting import RUN_JOB, enqueue_run, run_job_id
from voice.twilio_work import OutcomeUnknown, carry_out

log = logging.getLogger(__name__)

SWEEP_JOB = "party_lines.sweep"
MAX_ITEMS_PER_RUN = 50
SWEEP_LIMIT = 2000


async def reported(runner: Runner) -> None:
    """Hand what the party line reported to the engine, in the runner's transaction (before
    its commit); a play that moved on to a step due now is advanced after the commit."""
    if await lifecycle.on_party_line_reports(runner.session, runner.play, runner.reports):
        runner.after.plays.append(runner.play.id)
    runner.reports.clear()


async def publish(redis: ArqRedis, party_line_id: str, version: int, after: AfterCommit) -> None:
    """Hand the committed work to the worker: the run job, texts, plays to advance."""
    if after.run_job:
        await enqueue_run(redis, party_line_id, version)
    for message_id in after.messages:
        await enqueue_send(redis, message_id)
    for play_id in after.plays:
        await enqueue_advance(redis, play_id)


async def run(ctx: dict[str, Any], party_line_id: str) -> str:
    """Feed due timers, then carry out the outbox one request at a time (job `party_lines.run`)."""
    jc = job_context(ctx)
    sessions, base_url, redis = jc.sessions, jc.settings.base_url, jc.redis
    done = 0
    for _ in range(MAX_ITEMS_PER_RUN):
        async with transaction(sessions) as session:
            runner = await Runner.load(session, party_line_id, base_url)
            if runner is None:
                return "missing"
            await runner.fire_due()
            item = await runner.take()
            await reported(runner)
            after, links, from_number = runner.after, runner.links, runner.row.from_number
        after.run_job = False  # this run goes on with the outbox itself
        await publish(redis, party_line_id, 0, after)
        if item is None:
            return f"{done} requests"
        try:
            event = await carry_out(jc.twilio, item, links=links, from_number=from_number)
        except OutcomeUnknown as exc:
            # Left in flight: after the grace the sweep repeats it, or (a call) leaves it to
            # the callbacks and the watchdog.
            log.warning("party line %s: %s outcome unknown: %s", party_line_id, item["kind"], exc)
            return f"{done} requests, one unknown"
        async with transaction(sessions) as session:
            runner = await Runner.load(session, party_line_id, base_url)
            if runner is None:
                return "missing"
            await runner.finish(item, event)
            await reported(runner)
            after = runner.after
        after.run_job = False
        await publish(redis, party_line_id, 0, after)
        done += 1
    await enqueue_run(redis, party_line_id, -done)  # more than one run's worth: go on
    return f"{done} requests, more to do"


async def sweep(ctx: dict[str, Any]) -> int:
    """Enqueue `party_lines.run` for party lines whose wake time has come (cron)."""
    jc = job_context(ctx)
    query = (
        select(PartyLineRecord.id, PartyLineRecord.version)
        .where(col(PartyLineRecord.wake_at) <= now())
        .order_by(col(PartyLineRecord.wake_at))
        .limit(SWEEP_LIMIT)
    )
    async with jc.sessions() as session:
        due = list((await session.exec(query)).all())
    await enqueue_owed(jc.redis, RUN_JOB, [(run_job_id(i, v), i) for i, v in due])
    return len(due)
