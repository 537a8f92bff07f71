"""How a sweep re-enqueues the work the database owes: results arq keeps under a job id, why a
sweep forgets them, and why it asks Redis about every job at once.

arq's `enqueue_job` refuses an id while a result is stored under it (`arq:result:<id>`). Our
workers keep no results (`keep_result=0`, worker-wide too), but a result written by a worker of
an older release, or by a worker configured otherwise, would hold a job back for as long as it
lives: e.g. a job whose data a Redis flush took ends as "job expired", and arq stores that
failure under the worker-wide `keep_result` (an hour by default), not the function's.

`enqueue_job` costs three round trips (WATCH and EXISTS, then MULTI/EXEC). A sweep that called
it once per owed row, one after another, spent most of a tick on rows whose job is live anyway;
on a loaded machine after a flush (every row owed again) a tick could outlast the job timeout
and be cancelled part way, and the next tick began again at the oldest row, so a row late in
the list waited for several ticks (seen once: a text caught by a flush not sent within a
minute, the worker log showing a job cancelled by the timeout inside `enqueue_job`, which in
that drill only the sweeps call). So one pipelined round trip finds the jobs that are live and
forgets the results of the owed ones, and only the jobs not live are enqueued, several at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix

# Enqueues in flight at once (each holds one Redis connection for its WATCH).
ENQUEUE_AT_ONCE = 32


async def enqueue_owed(redis: ArqRedis, function: str, owed: Iterable[tuple[str, str]]) -> int:
    """Enqueue `function(argument)` under each `(job id, argument)` the database has just said
    is owed and that has no live job (queued, deferred or running: its `arq:job:` key exists);
    returns how many were enqueued. A result kept under an owed id belongs to a run that did not
    finish the work, so it is deleted first rather than let it refuse the job.

    The check is a hint that saves the round trips of `enqueue_job`, not a guard: `enqueue_job`
    still refuses, atomically, an id that became live in between, so no job is ever doubled.
    """
    jobs = list(owed)
    if not jobs:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for job_id, _ in jobs:
            pipe.exists(job_key_prefix + job_id)
        pipe.delete(*(result_key_prefix + job_id for job_id, _ in jobs))
        answers = await pipe.execute()
    missing = [job for job, live in zip(jobs, answers[:-1], strict=True) if not live]
    slots = asyncio.Semaphore(ENQUEUE_AT_ONCE)

    async def enqueue(job_id: str, argument: str) -> bool:
        async with slots:
            return await redis.enqueue_job(function, argument, _job_id=job_id) is not None

    done = await asyncio.gather(*(enqueue(job_id, argument) for job_id, argument in missing))
    return sum(done)
