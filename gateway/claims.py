"""Claiming a Twilio webhook once: an INSERT that a redelivery can't repeat.

`INSERT ... ON CONFLICT DO NOTHING` on the natural key (MessageSid, MessageSid+status, CallSid+
CallStatus, ConferenceSid+SequenceNumber) is atomic on both databases: of ten identical
deliveries arriving at once, exactly one gets True and goes on to cause side effects.

A claim is done when inserted, as its request acts on it at once, or `pending` (an inbound
text, a status callback): a job acts on it and marks it done in that transaction
(gateway/jobs/claim_batches.py).

A done claim is kept RETENTION, far longer than Twilio goes on sending a webhook again, and
then forgotten (`forget_old`, by the sweep), so the table and its unique index stay the size of
a month's webhooks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Insert, bindparam, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import SessionFactory, dialect_insert, write_alone
from gateway.models import WebhookClaim


@cache
def _claim_statement(dialect: str) -> Insert:
    """`claim`'s INSERT ... ON CONFLICT DO NOTHING (every Twilio webhook runs one), built once
    per dialect, its values named `kind`, `key`, `params`, `received_at` and `done_at`."""
    return (
        dialect_insert(dialect, WebhookClaim)
        .values(
            kind=bindparam("kind"),
            key=bindparam("key"),
            params=bindparam("params"),
            received_at=bindparam("received_at"),
            done_at=bindparam("done_at"),
        )
        .on_conflict_do_nothing(index_elements=["kind", "key"])
    )


def _values(kind: str, key: str, params: dict[str, Any], *, pending: bool) -> dict[str, Any]:
    moment = now()
    return {
        "kind": kind,
        "key": key,
        "params": params,
        "received_at": moment,
        "done_at": None if pending else moment,
    }


async def claim(session: AsyncSession, kind: str, key: str, params: dict[str, Any]) -> bool:
    """True when this (kind, key) is new; the claim commits with the caller's transaction,
    which acts on it."""
    connection = await session.connection()
    values = _values(kind, key, params, pending=False)
    result = await connection.execute(_claim_statement(connection.dialect.name), values)
    return bool(result.rowcount == 1)


async def append(factory: SessionFactory, kind: str, key: str, params: dict[str, Any]) -> bool:
    """True when this (kind, key) is new: then it is committed, pending, for a job to act on."""
    statement = _claim_statement(factory.kw["bind"].dialect.name)
    return await write_alone(factory, statement, _values(kind, key, params, pending=True)) == 1


RETENTION = timedelta(days=30)
# Claims looked at per sweep tick (every 10 s): up to 100 a second forgotten, each tick a
# DELETE of the oldest rows by their key, whatever the table's size.
FORGET_LIMIT = 1000


async def forget_old(session: AsyncSession, moment: datetime) -> int:
    """Delete the done claims received more than RETENTION before `moment`, oldest first, up
    to FORGET_LIMIT; returns how many. A claim still pending is kept however old."""
    params = {"cutoff": moment - RETENTION, "limit": FORGET_LIMIT}
    return len((await session.execute(_FORGET, params)).all())


_CLAIMS = WebhookClaim.__table__  # type: ignore[attr-defined]
# The oldest rows by id (their primary key: a short range scan, not a search of the table for
# old ones), of which those old enough and done go. A CTE, as in claim_batches: PostgreSQL
# might run `id IN (SELECT ... LIMIT n)` again for each row the DELETE removes.
_OLDEST = select(_CLAIMS.c.id).order_by(_CLAIMS.c.id).limit(bindparam("limit")).cte("oldest")
# RETURNING, to count them: sqlite3 gives no row count for a statement that begins WITH.
_FORGET = (
    delete(_CLAIMS)
    .where(
        _CLAIMS.c.id.in_(select(_OLDEST.c.id)),
        _CLAIMS.c.received_at < bindparam("cutoff"),
        _CLAIMS.c.done_at.is_not(None),
    )
    .returning(_CLAIMS.c.id)
)
