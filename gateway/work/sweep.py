"""The one sweep (cron `work.sweep`): for every registered kind with a due query, the rows that
owe a job at this moment get one, unless a job for them is live.

Redis only carries jobs; the database says what is owed. After a Redis flush, a lost enqueue,
a crashed worker, a commit in a process with no Redis bound, or work due further out than
`kinds.MAX_DEFER_SECONDS`, this finds the work again. arq refuses a job id that is still live,
so the sweep never doubles a job.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.clock import now
from gateway.db import transaction
from gateway.job_context import job_context
from gateway.work.owed import enqueue_owed
from gateway.work.registry import registered

log = logging.getLogger(__name__)

SWEEP_JOB = "work.sweep"
# Rows asked of each kind per tick (every 10 s): after a flush, a large backlog is re-found over
# a few ticks, oldest first, instead of in one long tick that could outlast the job timeout.
SWEEP_LIMIT = 2000


async def sweep(ctx: dict[str, Any]) -> int:
    """Enqueue the due work of every kind; returns how many jobs were enqueued (or rows tidied).

    One kind's failure (its query, Redis) does not keep the others from their turn; the first
    failure is raised at the end, so arq logs it."""
    jc = job_context(ctx)
    moment = now()
    done = 0
    failure: Exception | None = None
    for entry in registered():
        if entry.due is None:
            continue
        try:
            tidied = 0
            if entry.tidy is not None:
                async with transaction(jc.sessions) as session:
                    tidied = await entry.tidy(session, moment)
            async with jc.sessions() as session:
                owed = await entry.due(session, moment, SWEEP_LIMIT)
            enqueued = await enqueue_owed(jc.redis, entry.kind.name, owed)
        except Exception as exc:
            log.exception("sweep of %s failed", entry.kind.name)
            failure = failure or exc
            continue
        if enqueued or tidied:
            log.info(
                "sweep %s: %d enqueued of %d due, %d tidied",
                entry.kind.name,
                enqueued,
                len(owed),
                tidied,
            )
        done += enqueued + tidied
    if failure is not None:
        raise failure
    return done
