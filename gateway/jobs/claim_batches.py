"""Twilio webhooks appended as pending claims, acted on in batches: what the `sms.inbox` and
`sms.statuses` jobs share.

A webhook whose answer does not depend on what it causes (an inbound text, a status callback)
checks Twilio's signature and its parameters, appends itself to `webhook_claims` with done_at
empty (`gateway.claims.append`: the one durable write, which a redelivery conflicts with) and
answers. A job then takes the pending claims of its kind oldest first, a batch per transaction,
and acts on them in that same transaction: marking a claim done commits with what it caused, so
a crash does it all again or not at all, and a claim is acted on once however many runs
overlap (each takes its rows by compare-and-set, and on PostgreSQL waits for the rows another
run holds, so the claims are still taken in the order they came).

A claim whose handling raises (a bug on odd input) must not hold up the claims behind it: its
batch is rolled back and taken again one claim per transaction, and a claim that fails again
while others go through is set aside: marked done and logged (its parameters stay in
`webhook_claims` for `claims.RETENTION`). A database error, or a batch in which every claim
fails, is not the claims' fault: it fails the job, and they stay pending for the next run (the
sweep's).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.models import WebhookClaim
from gateway.work import Kind
from gateway.work.registry import Due

log = logging.getLogger(__name__)


@dataclass
class Taken:
    """A pending claim, taken by this transaction."""

    id: int
    key: str  # its natural key (a MessageSid, a MessageSid and status)
    params: dict[str, Any]
    received_at: datetime


# Acts on claims taken in the session's transaction. `alone` is True when a failed batch is
# taken again one claim per transaction: an act may then leave part of its work to a job of its
# own, so that only the claim's own trouble stops it.
Act = Callable[[AsyncSession, Sequence[Taken], bool], Awaitable[None]]


def due_while_pending(claim_kind: str, job: Kind, argument: str) -> Due:
    """The sweep's question for the job that drains `claim_kind`: is any claim pending (its job
    lost with Redis, or failed)? Then the job is owed, with `argument`."""

    async def due(session: AsyncSession, moment: datetime, limit: int) -> list[tuple[str, str]]:
        pending = (await session.execute(_ANY_PENDING, {"claim_kind": claim_kind})).first()
        return [] if pending is None else [(job.job_id(argument), argument)]

    return due


async def drain(sessions: SessionFactory, kind: str, batch: int, act: Act, what: str) -> int:
    """Act on the pending claims of `kind`, `batch` per transaction, until none are left;
    returns how many. `what` names one in the log ("inbound text")."""
    done = 0
    while True:
        taken: list[Taken] = []
        try:
            async with transaction(sessions, brief=True) as session:
                taken = await take(session, kind, batch)
                await act(session, taken, False)
        except DBAPIError:
            raise  # the database's trouble: the claims stay pending for the next run
        except Exception:
            log.exception("a batch of %ss failed; taking them one at a time", what)
            taken = await _one_at_a_time(sessions, kind, [row.id for row in taken], act, what)
        done += len(taken)
        if len(taken) < batch:
            return done


async def take(
    session: AsyncSession, kind: str, limit: int, only: int | None = None
) -> list[Taken]:
    """Mark up to `limit` pending claims of `kind` done (or the one with id `only`, if still
    pending) and return them oldest first; the mark commits with what they cause."""
    params = {"claim_kind": kind, "limit": limit, "moment": now(), "only": only}
    rows = (await session.execute(_TAKE, params)).all()
    return sorted((Taken(*row) for row in rows), key=lambda t: t.id)


async def _one_at_a_time(
    sessions: SessionFactory, kind: str, ids: Sequence[int], act: Act, what: str
) -> list[Taken]:
    """After a failed batch: each claim in its own transaction. When some go through, those
    that fail again are the claims' own trouble: they are set aside (marked done, logged), so
    the claims behind them go on. When none does, the trouble is ours (a bug, the database):
    nothing is set aside and the job fails, leaving every claim pending."""
    taken: list[Taken] = []
    failed: list[int] = []
    for claim_id in ids:
        try:
            async with transaction(sessions, brief=True) as session:
                one = await take(session, kind, 1, only=claim_id)
                await act(session, one, True)
        except DBAPIError:
            raise
        except Exception:
            log.exception("%s (webhook claim %s) failed on its own", what, claim_id)
            failed.append(claim_id)
            continue
        taken.extend(one)
    if failed and not taken:
        raise RuntimeError(f"every {what} of a batch failed (webhook claims {failed})")
    for claim_id in failed:
        async with transaction(sessions, brief=True) as session:
            taken.extend(await take(session, kind, 1, only=claim_id))
        log.error(
            "%s (webhook claim %s) set aside: it could not be handled while others could; "
            "its parameters are kept in webhook_claims",
            what,
            claim_id,
        )
    return taken


# Built once (they run per batch).
_CLAIMS = WebhookClaim.__table__  # type: ignore[attr-defined]
_PENDING = core_select(_CLAIMS.c.id).where(
    _CLAIMS.c.kind == bindparam("claim_kind"), _CLAIMS.c.done_at.is_(None)
)
# On PostgreSQL the rows are locked as read (FOR UPDATE, no SKIP LOCKED): a second run waits
# for the first's batch rather than take the claims behind it, and so (for example) a lead's
# STOP and START are never acted on out of order. SQLite has one writer at a time anyway.
# The batch is a CTE, which PostgreSQL computes once because it locks rows: as `id IN (SELECT
# ... LIMIT n FOR UPDATE)` the planner may run the subquery again for each row it updates, and
# each run, seeing the rows before it marked done, found the next n (one take of 37 claims
# marked all 37 with a limit of 16).
_BATCH = (
    _PENDING.where(
        (bindparam("only", type_=_CLAIMS.c.id.type).is_(None))
        | (_CLAIMS.c.id == bindparam("only", type_=_CLAIMS.c.id.type))
    )
    .order_by(_CLAIMS.c.id)
    .limit(bindparam("limit"))
    .with_for_update()
    .cte("batch")
)
_TAKE = (
    update(_CLAIMS)
    .where(_CLAIMS.c.id.in_(core_select(_BATCH.c.id)), _CLAIMS.c.done_at.is_(None))
    .values(done_at=bindparam("moment"))
    .returning(_CLAIMS.c.id, _CLAIMS.c.key, _CLAIMS.c.params, _CLAIMS.c.received_at)
)
_ANY_PENDING = _PENDING.limit(1)
