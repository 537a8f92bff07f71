"""Serializing work on one contact: the gate-then-send of a text against an opt-out arriving.

Touching the (account, phone) row takes a row lock on PostgreSQL and the write lock on SQLite,
held until the transaction ends. A send that checked the ledger under the lock is marked
"sending" before an opt-out for the same phone can commit; an opt-out that commits first is
seen by the gate. A `transaction()` on SQLite holds the database's write lock from its first
statement, which serializes far more than one contact: there the row is not touched at all.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Insert, bindparam
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import dialect_insert, dialect_of, for_this_transaction, serialized
from gateway.models import ContactLock

# session.info key (`for_this_transaction`): the contacts this transaction has locked.
_HELD = "gateway.contact_lock.held"


async def lock_contact(session: AsyncSession, account_id: str, phone: str) -> None:
    """Hold (account, phone) until the transaction ends. A second call for the same contact in
    the same transaction (an inbound text's keyword check, then its plays) sends nothing: the
    lock is held already (nothing here uses savepoints, whose rollback would release it)."""
    if serialized(session):
        return
    held: set[tuple[str, str]] = for_this_transaction(session, _HELD, set)
    if (account_id, phone) in held:
        return
    params = {"account_id": account_id, "phone": phone}
    # The lock before the rows this transaction has pending: the session autoflushes before a
    # Core statement too, which would write them first.
    with session.no_autoflush:
        await session.exec(_touch(dialect_of(session)), params=params)
    held.add((account_id, phone))


@cache
def _touch(dialect: str) -> Insert:
    """`lock_contact`'s upsert, built once per dialect."""
    table = ContactLock.__table__  # type: ignore[attr-defined]
    return (
        dialect_insert(dialect, ContactLock)
        .values(account_id=bindparam("account_id"), phone=bindparam("phone"), touches=1)
        .on_conflict_do_update(
            index_elements=["account_id", "phone"], set_={"touches": table.c.touches + 1}
        )
    )


async def reread(session: AsyncSession, *rows: Any) -> None:
    """Rows read before `lock_contact`, as they are now that it is held (another transaction
    may have changed them while this one waited); nothing to do where it never waited."""
    if serialized(session):
        return
    for row in rows:
        await session.refresh(row)
