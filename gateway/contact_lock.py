"""Serializing work on one contact: the gate-then-send of a text against an opt-out arriving.

Touching the (account, phone) row takes a row lock on PostgreSQL and the write lock on SQLite,
held until the transaction ends. A send that checked the ledger under the lock is marked
"sending" before an opt-out for the same phone can commit; an opt-out that commits first is
seen by the gate.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import conflict_insert
from gateway.models import ContactLock


async def lock_contact(session: AsyncSession, account_id: str, phone: str) -> None:
    connection = await session.connection()
    table = ContactLock.__table__  # type: ignore[attr-defined]
    statement = (
        conflict_insert(connection, ContactLock)
        .values(account_id=account_id, phone=phone, touches=1)
        .on_conflict_do_update(
            index_elements=["account_id", "phone"], set_={"touches": table.c.touches + 1}
        )
    )
    await connection.execute(statement)
