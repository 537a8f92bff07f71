"""A drain's run: an argument's due rows (an account's texts, its plays) read a batch at a
time, in the order they came due, by a cursor past the last row read; one run of an argument at
a time (a follow-up waits for it, `staging.wait_for_run`); a run that has worked for
RUN_SECONDS hands on to a follow-up (`staging.again`), well inside the job timeout. What a
batch does with its rows is the drain's own (`gateway.jobs.sms_sends`, `plays_advance`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from arq.connections import ArqRedis

from gateway.work.kinds import Kind
from gateway.work.staging import again, wait_for_run

# A run that has worked for this long hands on to a follow-up job.
RUN_SECONDS = 20.0
# A cursor: the last row read, by the time it came due and its id. A run begins before any.
Cursor = tuple[datetime, str]
START: Cursor = (datetime(1970, 1, 1, tzinfo=UTC), "")


class Batch(Protocol):
    """What a drain's batch reports: the rows it read (by id), the last one (where the next
    batch reads on), and what became of them, counted for the log."""

    read: list[str]
    after: Cursor
    outcomes: Counter[str]


async def run_batches(
    redis: ArqRedis,
    ctx: Mapping[str, Any],
    kind: Kind,
    argument: str,
    one_batch: Callable[[Cursor], Awaitable[Batch]],
    *,
    size: int,
) -> Counter[str]:
    """Run `one_batch` from START until a batch reads fewer than `size` rows or RUN_SECONDS
    have gone by; what became of the rows, counted."""
    await wait_for_run(redis, ctx, kind, argument)
    started = time.monotonic()
    after = START
    outcomes: Counter[str] = Counter()
    while True:
        batch = await one_batch(after)
        outcomes.update(batch.outcomes)
        if len(batch.read) < size:
            return outcomes
        after = batch.after
        if time.monotonic() - started > RUN_SECONDS:
            await again(redis, kind, argument)
            return outcomes


def summary(outcomes: Counter[str]) -> str:
    """What became of a run's rows, for the log ("12 sent, 2 deferred")."""
    return ", ".join(f"{n} {what}" for what, n in outcomes.items()) or "none due"
