"""Claiming a Twilio webhook once: an INSERT that a redelivery can't repeat.

`INSERT ... ON CONFLICT DO NOTHING` on the natural key (MessageSid, MessageSid+status, CallSid+
CallStatus, ConferenceSid+SequenceNumber) is atomic on both databases: of ten identical
deliveries arriving at once, exactly one gets True and goes on to cause side effects.

A claim is done when inserted, as its request acts on it at once, or `pending` (an inbound
text): the `sms.inbox` job acts on it and marks it done in that transaction.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Insert, bindparam
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
