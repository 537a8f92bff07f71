"""Claiming a Twilio webhook once: an INSERT that a redelivery can't repeat.

`INSERT ... ON CONFLICT DO NOTHING` on the natural key (MessageSid, MessageSid+status, CallSid+
CallStatus, ConferenceSid+SequenceNumber) is atomic on both databases: of ten identical
deliveries arriving at once, exactly one gets True and goes on to cause side effects.
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import conflict_insert
from gateway.models import WebhookClaim


async def claim(session: AsyncSession, kind: str, key: str, params: dict[str, Any]) -> bool:
    """True when this (kind, key) is new; the claim commits with the caller's transaction."""
    values = {"kind": kind, "key": key, "params": params, "received_at": now()}
    connection = await session.connection()
    statement = (
        conflict_insert(connection, WebhookClaim)
        .values(values)
        .on_conflict_do_nothing(index_elements=["kind", "key"])
    )
    result = await connection.execute(statement)
    return bool(result.rowcount == 1)
