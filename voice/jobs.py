"""The party line's job, `party_lines.run` (timers due, then the outbox), and its due query.

`party_lines.run` is idempotent and may run twice at once: every change happens under the
party line's row lock, an outbox item is marked in flight before its request (a second run
leaves it alone), and only a request whose outcome is known is fed back. Its job id carries
the row's version, so every change that leaves work gets its own job, and a job that finds
nothing to do just returns.

The sweep re-creates lost work from the database: party lines whose `wake_at` has come (outbox
work, a lead retry or gate deferral due, the watchdog, an in-flight item whose job died).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import transaction
from gateway.engine import lifecycle
from gateway.job_context import job_context
from gateway.models import PartyLineRecord
from gateway.work import PARTY_LINE_RUN, PLAY_ADVANCE, enqueue_now, job, stage
from voice.runner import Runner
from voice.twilio_work import OutcomeUnknown, carry_out

log = logging.getLogger(__name__)

MAX_ITEMS_PER_RUN = 50


async def reported(runner: Runner) -> None:
    """Hand what the party line reported to the engine, in the runner's transaction (before
    its commit); a play that moved on to a step due now is advanced after the commit."""
    if await lifecycle.on_party_line_reports(runner.session, runner.play, runner.reports):
        stage(runner.session, PLAY_ADVANCE, runner.play.id)
    runner.reports.clear()


async def due(session: AsyncSession, moment: datetime, limit: int) -> Sequence[tuple[str, str]]:
    """The sweep's question: party lines whose wake time has come."""
    query = (
        select(PartyLineRecord.id, PartyLineRecord.version)
        .where(col(PartyLineRecord.wake_at) <= moment)
        .order_by(col(PartyLineRecord.wake_at))
        .limit(limit)
    )
    rows = (await session.exec(query)).all()
    return [(PARTY_LINE_RUN.job_id(i, variant=v), i) for i, v in rows]


@job(PARTY_LINE_RUN, due=due)
async def run(ctx: dict[str, Any], party_line_id: str) -> str:
    """Feed due timers, then carry out the outbox one request at a time (job `party_lines.run`)."""
    jc = job_context(ctx)
    sessions, base_url = jc.sessions, jc.settings.base_url
    done = 0
    for _ in range(MAX_ITEMS_PER_RUN):
        async with transaction(sessions) as session:
            runner = await Runner.load(session, party_line_id, base_url)
            if runner is None:
                return "missing"
            runner.stage_runs = False  # this run goes on with the outbox itself
            await runner.fire_due()
            item = await runner.take()
            await reported(runner)
            links, from_number = runner.links, runner.row.from_number
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
            runner.stage_runs = False
            await runner.finish(item, event)
            await reported(runner)
        done += 1
    # More than one run's worth: go on in a new job (named apart from this one's).
    await enqueue_now(jc.redis, PARTY_LINE_RUN, party_line_id, variant=-done)
    return f"{done} requests, more to do"
