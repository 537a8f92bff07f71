"""Serializing work on one contact: the gate-then-send of a text against an opt-out arriving.

Touching the (account, phone) row takes a row lock on PostgreSQL and the write lock on SQLite,
held until the transaction ends. A send that checked the ledger under the lock is marked
"sending" before an opt-out for the same phone can commit; an opt-out that commits first is
seen by the gate. A `transaction()` on SQLite holds the database's write lock from its first
statement, which serializes far more than one contact: there the row is not touched at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    Insert,
    ScalarSelect,
    String,
    bindparam,
    literal_column,
    union_all,
)
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.db import (
    dialect_insert,
    dialect_of,
    for_this_transaction,
    numbered,
    numbered_values,
    serialized,
)
from gateway.models import ContactLock

# session.info key (`for_this_transaction`): the contacts this transaction has locked.
_HELD = "gateway.contact_lock.held"


async def lock_contact(session: AsyncSession, account_id: str, phone: str) -> None:
    """Hold (account, phone) until the transaction ends. A second call for the same contact in
    the same transaction (an inbound text's keyword check, then its plays) sends nothing: the
    lock is held already (nothing here uses savepoints, whose rollback would release it)."""
    await lock_contacts(session, account_id, (phone,))


async def lock_contacts(session: AsyncSession, account_id: str, phones: Iterable[str]) -> None:
    """`lock_contact` for several of the account's contacts at once (a batch of texts), in one
    statement. It takes the rows' locks in the phones' sorted order, the order every caller
    holding more than one uses, so two such transactions never wait on each other."""
    if serialized(session):
        return
    held: set[tuple[str, str]] = for_this_transaction(session, _HELD, set)
    wanted = sorted({phone for phone in phones if (account_id, phone) not in held})
    if not wanted:
        return
    params = {"account_id": account_id, **numbered_values("phone", wanted)}
    # The lock before the rows this transaction has pending: the session autoflushes before a
    # Core statement too, which would write them first.
    with session.no_autoflush:
        await session.exec(_touch(dialect_of(session), len(wanted)), params=params)
    held.update((account_id, phone) for phone in wanted)


async def taking(session: AsyncSession, account_id: str, phone: str) -> bool:
    """Whether the caller's next statement is to take (account, phone)'s lock itself, by
    `lock_column`: on PostgreSQL, when this transaction holds it not yet. From here it counts
    as held, so the caller runs that statement next (if it fails, so does the transaction, and
    what it held with it). Elsewhere the lock is `lock_contact`'s, taken here: SQLite writes
    nothing in a WITH (and under `transaction()` needs no lock at all)."""
    if dialect_of(session) != "postgresql":
        await lock_contact(session, account_id, phone)
        return False
    held: set[tuple[str, str]] = for_this_transaction(session, _HELD, set)
    if (account_id, phone) in held:
        return False
    held.add((account_id, phone))
    return True


@cache
def lock_column(dialect: str) -> ScalarSelect[str]:
    """The contact's lock as a value in a caller's INSERT of a row about the contact (a new
    lead's): a scalar subquery of the lock's upsert, in a WITH of its own, that gives the
    contact's phone. The database runs it to have the value, so the lock is taken before the
    caller's row is written, as `lock_contact` before the caller's statement would, in one
    statement instead of two. Its parameters are `account_id` and `phone_0`."""
    table = ContactLock.__table__  # type: ignore[attr-defined]
    touch = _touch(dialect, 1).returning(table.c.phone).cte("contact_lock")
    return select(touch.c.phone).scalar_subquery()


@cache
def _touch(dialect: str, count: int) -> Insert:
    """`lock_contacts`' upsert of `count` phones (`phone_0`, ...), built once per dialect and
    count. Its rows are written, and locked, in the order given.

    On PostgreSQL the rows are a SELECT (a UNION ALL past one row), not a VALUES list:
    SQLAlchemy keys no statement with a VALUES list of several rows for its compiled cache,
    so one would be compiled anew at every execution (as the lock's first form was, about a
    millisecond a time). SQLite's parser needs a WHERE in an upsert's SELECT, and SQLite
    writes here only outside `transaction()` (tests): the list will do there."""
    table = ContactLock.__table__  # type: ignore[attr-defined]
    account_id: BindParameter[str] = bindparam("account_id", type_=String)
    phones = numbered("phone", count)
    insert = dialect_insert(dialect, ContactLock)
    if dialect == "postgresql":
        one: list[Any] = [
            select(account_id, bindparam(p.key, type_=String), literal_column("1")) for p in phones
        ]
        rows: Any = one[0] if count == 1 else union_all(*one)
        insert = insert.from_select(["account_id", "phone", "touches"], rows)
    else:
        insert = insert.values(
            [{"account_id": account_id, "phone": phone, "touches": 1} for phone in phones]
        )
    return insert.on_conflict_do_update(
        index_elements=["account_id", "phone"], set_={"touches": table.c.touches + 1}
    )


async def reread(session: AsyncSession, *rows: Any) -> None:
    """Rows read before `lock_contact`, as they are now that it is held (another transaction
    may have changed them while this one waited); nothing to do where it never waited."""
    if serialized(session):
        return
    for row in rows:
        await session.refresh(row)


async def reread_all(session: AsyncSession, rows: Sequence[SQLModel]) -> None:
    """`reread` for several rows of one model (a batch's plays), in one statement."""
    if serialized(session) or not rows:
        return
    model = type(rows[0])
    ids = [row.id for row in rows]  # type: ignore[attr-defined]
    query = select(model).where(model.id.in_(ids))  # type: ignore[attr-defined]
    await session.exec(query.execution_options(populate_existing=True))
