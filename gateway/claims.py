"""Claiming a Twilio webhook once: an INSERT that a redelivery can't repeat.

`INSERT ... ON CONFLICT DO NOTHING` on the natural key (MessageSid, MessageSid+status, CallSid+
CallStatus, ConferenceSid+SequenceNumber) is atomic on both databases: of ten identical
deliveries arriving at once, exactly one gets True and goes on to cause side effects.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Insert, bindparam
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import dialect_insert
from gateway.models import WebhookClaim


@cache
def _claim_statement(dialect: str) -> Insert:
    """`claim`'s INSERT ... ON CONFLICT DO NOTHING (every Twilio webhook runs one), built once
    per dialect, its values named `kind`, `key`, `params` and `received_at`."""
    return (
        dialect_insert(dialect, WebhookClaim)
        .values(
            kind=bindparam("kind"),
            key=bindparam("key"),
            params=bindparam("params"),
            received_at=bindparam("received_at"),
        )
        .on_conflict_do_nothing(index_elements=["kind", "key"])
    )


async def claim(session: AsyncSession, kind: str, key: str, params: dict[str, Any]) -> bool:
    """True when this (kind, key) is new; the claim commits with the caller's transaction."""
    values = {"kind": kind, "key": key, "params": params, "received_at": now()}
    connection = await session.connection()
    result = await connection.execute(_claim_statement(connection.dialect.name), values)
    return bool(result.rowcount == 1)
