"""Staging work in the caller's transaction, and handing it to Redis once that commits.

`stage(session, kind, argument)` notes the job on the session; `gateway.db.transaction` calls
the session factory's hand-off with everything staged once the transaction has committed and
its SQLite write turn is given back. A job enqueued before the commit could run before its row
exists (and find nothing); one staged in a transaction that rolls back is never enqueued.

Kinds registered `inline` may instead run in the committing process (`gateway.work.inline`).

The hand-off is best effort by design: with Redis down, or in a session factory bound to no
Redis (a CLI command, a test's own factory), staged work simply waits for the sweep, which finds
every owed row by its due query (`gateway.work.sweep`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import HANDOFF, STAGED, Handoff, SessionFactory
from gateway.work import kinds
from gateway.work.kinds import Kind

log = logging.getLogger(__name__)

# Enqueues in flight at once from one hand-off (each holds one Redis connection).
HANDOFF_AT_ONCE = 8
# A drain's job (`Kind.drains`) ends when its claim finds nothing; work committed after that
# last claim, while arq still holds the job's id, is refused as a duplicate of it. So a refused
# drain is enqueued again this much later, under an id of its own (`again`), once: the
# follow-ups of one second share their id, so a burst of commits makes one.
DRAIN_AGAIN_SECONDS = 1.0


# What is left of work begun in the staging transaction (a text gated and claimed there), run
# after its commit by the process that committed it, with the dict a job takes.
Then = Callable[[Mapping[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Staged:
    kind: Kind
    argument: str
    job_id: str
    at: datetime | None
    # Set by `begun`: the job's work was begun in the transaction; this process runs the rest
    # (`gateway.work.inline`). In Redis the item is the plain job, which finds it begun.
    then: Then | None = None
    # The argument of `kind.batched_by`'s drain, which takes this work if it goes to Redis due
    # now (`in_redis`).
    batch: str | None = None

    @classmethod
    def now(cls, kind: Kind, argument: str) -> Staged:
        """`kind(argument)`'s own job, due now (a drain hands a row it could not take in its
        batch back to it)."""
        return cls(kind, argument, kind.job_id(argument), None)

    def in_redis(self) -> Staged:
        """What goes to Redis for this item: its drain's job, when it has one (`batch`), is due
        now and was not begun; otherwise its own job, with nothing begun (a text claimed in
        its transaction is `sending`, which only its own job reconciles)."""
        drain = self.kind.batched_by
        if drain is not None and self.batch is not None and self.at is None and not self.then:
            return Staged.now(drain, self.batch)
        return replace(self, then=None)


def planned(
    kind: Kind,
    argument: str,
    *,
    at: datetime | None = None,
    variant: str | int | None = None,
    batch: str | None = None,
) -> Staged | None:
    """The job for `kind(argument)` at `at`, or None when it is due too far out for Redis."""
    delay = (at - now()).total_seconds() if at is not None else 0.0
    if delay > kinds.MAX_DEFER_SECONDS:
        return None
    deferred = at if at is not None and delay > 0 else None
    job_id = kind.job_id(argument, variant=variant, at=deferred)
    return Staged(kind, argument, job_id, deferred, batch=batch)


def stage(
    session: AsyncSession,
    kind: Kind,
    argument: str,
    *,
    at: datetime | None = None,
    variant: str | int | None = None,
    batch: str | None = None,
) -> None:
    """Enqueue `kind(argument)` (at `at`) once this session's transaction commits.

    Work due further out than `kinds.MAX_DEFER_SECONDS` is not staged: its row says when it is
    due, and the sweep enqueues it then. The last staging of the same work in a transaction
    wins (a text queued for now, then deferred by the gate, is enqueued once, for later).
    `batch`: for a kind taken in batches (`Kind.batched_by`), the argument of the drain that
    takes it if it goes to Redis due now."""
    item = planned(kind, argument, at=at, variant=variant, batch=batch)
    staged: dict[tuple[str, str, str | int | None], Staged] = session.info.setdefault(STAGED, {})
    key = (kind.name, argument, variant)
    if item is None:
        staged.pop(key, None)
    else:
        staged[key] = item


def staged_now(session: AsyncSession, kind: Kind) -> list[str]:
    """The arguments of the `kind` work this session's transaction has staged for now."""
    staged: dict[tuple[str, str, str | int | None], Staged] = session.info.get(STAGED, {})
    return [item.argument for item in staged.values() if item.kind == kind and item.at is None]


def begun(session: AsyncSession, kind: Kind, argument: str, then: Then | None) -> None:
    """The `kind(argument)` work staged for now was begun in this transaction: after the
    commit, this process runs `then` instead of the job (None: nothing is left to do, and
    nothing is enqueued). Only a transaction whose process runs the job inline may begin it
    (`gateway.work.inline.runs_here`)."""
    staged: dict[tuple[str, str, str | int | None], Staged] = session.info.get(STAGED, {})
    key = (kind.name, argument, None)
    item = staged.get(key)
    if item is None or item.at is not None:
        return  # restaged for later meanwhile (the gate deferred it): the job does that
    if then is None:
        del staged[key]
    else:
        staged[key] = replace(item, then=then)


async def enqueue_now(
    redis: ArqRedis,
    kind: Kind,
    argument: str,
    *,
    at: datetime | None = None,
    variant: str | int | None = None,
) -> bool:
    """Enqueue work whose row is already committed (no transaction to stage it in); True if a
    job was enqueued. Like `stage`, far-off work is left to the sweep."""
    item = planned(kind, argument, at=at, variant=variant)
    return item is not None and await enqueue(redis, item)


async def hand_off(factory: SessionFactory, kind: Kind, argument: str) -> None:
    """Hand `kind(argument)`, due now, to `factory`'s hand-off, as a commit of one of its
    transactions would have: for work whose row was written without a session
    (`gateway.db.write_alone`). A factory bound to no Redis leaves it to the sweep."""
    handoff: Handoff | None = (factory.kw.get("info") or {}).get(HANDOFF)
    item = planned(kind, argument)
    if handoff is not None and item is not None:
        await handoff([item])


async def enqueue(redis: ArqRedis, item: Staged, *, follow_up: bool = True) -> bool:
    """Enqueue one job now; False if arq refused it (live already) or Redis failed (logged:
    the sweep finds the row). A drain refused as live gets its follow-up (`again`)."""
    # arq waits by the wall clock; a delay relative to our clock keeps a test's clock right.
    delay = (item.at - now()).total_seconds() if item.at is not None else 0.0
    try:
        job = await redis.enqueue_job(
            item.kind.name,
            item.argument,
            _job_id=item.job_id,
            _defer_by=delay if delay > 0 else None,
        )
    except Exception:  # Redis down: the row is committed and the sweep will pick it up
        log.warning("could not enqueue %s; the sweep will", item.job_id, exc_info=True)
        return False
    if job is None and item.kind.drains and follow_up:
        return await again(redis, item.kind, item.argument, after=item.at)
    return job is not None


# A drain's follow-up finding the run it follows still running looks again this much later.
FOLLOW_UP_WAIT_SECONDS = 1.0


async def wait_for_run(redis: ArqRedis, ctx: Mapping[str, Any], kind: Kind, argument: str) -> None:
    """In a drain's job: raise arq's Retry if this job is a follow-up (its id is not the run's,
    `kind.job_id(argument)`) and the run is still in progress. Two runs would read the same
    rows and split or wait on what one run does alone; the follow-up comes back once the run
    has ended. Its job allows enough tries for the waits (`@job(..., max_tries=...)`)."""
    run_id = kind.job_id(argument)
    if ctx.get("job_id") != run_id and await redis.exists(in_progress_key_prefix + run_id):
        raise Retry(defer=FOLLOW_UP_WAIT_SECONDS)


async def again(
    redis: ArqRedis, kind: Kind, argument: str, *, after: datetime | None = None
) -> bool:
    """Enqueue a drain's follow-up, DRAIN_AGAIN_SECONDS after `after` (default: now); False if
    one is live for that second (it gets no follow-up of its own)."""
    at = max(after or now(), now()) + timedelta(seconds=DRAIN_AGAIN_SECONDS)
    follow = Staged(kind, argument, kind.job_id(argument, at=at), at)
    return await enqueue(redis, follow, follow_up=False)


class _Coalesced:
    """A drain staged by commit after commit (every inbound text stages the one inbox) is
    enqueued at most twice per `Kind.coalesce_seconds` from a process, not once per commit: an
    enqueue is three Redis round trips, and a drain refused as live three more for its
    follow-up, which at a few hundred commits a second was a third of a request's CPU.

    The first commit after a quiet spell enqueues at once. Commits within the spell that
    follows share one enqueue at its end, which starts after each of their commits, as the
    drain needs: a run that claims after a commit finds what it committed."""

    def __init__(self) -> None:
        self._quiet_until: dict[str, float] = {}
        self._trailing: dict[str, asyncio.Task[None]] = {}

    async def offer(self, redis: ArqRedis, item: Staged) -> None:
        moment = time.monotonic()
        quiet_until = self._quiet_until.get(item.job_id, 0.0)
        if moment >= quiet_until:
            self._spell(item, moment)
            await enqueue(redis, item)
        elif item.job_id not in self._trailing:
            task = asyncio.create_task(self._trail(redis, item, quiet_until - moment))
            self._trailing[item.job_id] = task

    async def _trail(self, redis: ArqRedis, item: Staged, delay: float) -> None:
        await asyncio.sleep(delay)
        # From here on a commit schedules an enqueue of its own: this one may start before it.
        del self._trailing[item.job_id]
        self._spell(item, time.monotonic())
        await enqueue(redis, item)

    def _spell(self, item: Staged, moment: float) -> None:
        if len(self._quiet_until) > 1000:  # drains of many subscriptions: forget the quiet
            self._quiet_until = {k: v for k, v in self._quiet_until.items() if v > moment}
        self._quiet_until[item.job_id] = moment + item.kind.coalesce_seconds


_COALESCED: weakref.WeakKeyDictionary[ArqRedis, _Coalesced] = weakref.WeakKeyDictionary()


async def retry_later(redis: ArqRedis, item: Staged, retry: Retry) -> None:
    """A job run outside arq (inline, or by a drain for one of its rows) asked to run again
    later: enqueue its own job for then, under its own id as arq's retry keeps it, held for the
    delay however long. The id is what keeps a sweep from enqueuing the job again sooner."""
    later = now() + timedelta(milliseconds=retry.defer_score or 0)
    await enqueue(redis, replace(item, at=later, then=None, batch=None))


async def _hand_over(redis: ArqRedis, item: Staged) -> None:
    """One staged job to Redis: a drain due now through its process's `_Coalesced`."""
    if item.kind.drains and item.at is None:
        coalesced = _COALESCED.get(redis)
        if coalesced is None:
            coalesced = _COALESCED[redis] = _Coalesced()
        await coalesced.offer(redis, item)
    else:
        await enqueue(redis, item)


async def handoff_to_redis(redis: ArqRedis, staged: Collection[Staged]) -> None:
    """Enqueue a committed transaction's staged work, several jobs at once (work taken in
    batches as its drain's job, once per drain)."""
    staged = list({item.job_id: item for item in (one.in_redis() for one in staged)}.values())
    if len(staged) == 1:
        await _hand_over(redis, staged[0])
        return
    slots = asyncio.Semaphore(HANDOFF_AT_ONCE)

    async def one(item: Staged) -> None:
        async with slots:
            await _hand_over(redis, item)

    await asyncio.gather(*(one(item) for item in staged))


def bind(
    factory: SessionFactory, redis: ArqRedis, *, handoff: Handoff | None = None
) -> SessionFactory:
    """A copy of `factory` whose transactions hand their staged work to `redis`, or to
    `handoff` (`gateway.work.inline.Inline`, which runs some of it in this process)."""
    kw = dict(factory.kw)

    async def to_redis(staged: Collection[Any]) -> None:
        await handoff_to_redis(redis, staged)

    info = {**(kw.pop("info", None) or {}), HANDOFF: handoff or to_redis}
    return async_sessionmaker(class_=factory.class_, info=info, **kw)
