"""Serializing work on one contact: the gate-then-send of a text against an opt-out arriving.

Touching the (account, phone) row takes a row lock on PostgreSQL and the write lock on SQLite,
held until the transaction ends. A send that checked the ledger under the lock is marked
"sending" before an opt-out for the same phone can commit; an opt-out that commits first is
seen by the gate. A `transaction()` on SQLite holds the database's write lock from its first
statement, which serializes far more than one contact: there the row is not touched at all.
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import conflict_insert, serialized
from gateway.models import ContactLock


async def lock_contact(session: AsyncSession, account_id: str, phone: str) -> None:
    if await serialized(session):
        return
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


async def reread(session: AsyncSession, *rows: Any) -> None:
    """Rows read before `lock_contact`, as they are now that it is held (another transaction
    may have changed them while this one waited); nothing to do where it never waited."""
    if await serialized(session):
        return
    for row in rows:
        await session.refresh(row)
