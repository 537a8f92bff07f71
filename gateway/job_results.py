"""Results arq keeps under a job id, and why a sweep forgets them before it re-enqueues.

arq's `enqueue_job` refuses an id while a result is stored under it (`arq:result:<id>`). Our
workers keep no results (`keep_result=0`, worker-wide too), but a result written by a worker of
an older release, or by a worker configured otherwise, would hold a job back for as long as it
lives: e.g. a job whose data a Redis flush took ends as "job expired", and arq stores that
failure under the worker-wide `keep_result` (an hour by default), not the function's.
"""

from __future__ import annotations

from collections.abc import Iterable

from arq.connections import ArqRedis
from arq.constants import result_key_prefix


async def forget_results(redis: ArqRedis, job_ids: Iterable[str]) -> None:
    """Delete any result kept for these job ids, in one round trip.

    Only for work the database has just said is still owed: a result under its id belongs to a
    run that did not finish it, so it must not stop the sweep from enqueuing the job again.
    A live job (queued or running) is untouched: arq still refuses a second one of that id.
    """
    keys = [result_key_prefix + job_id for job_id in job_ids]
    if keys:
        await redis.delete(*keys)
