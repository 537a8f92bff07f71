"""Rows of record written together when their transaction commits: the play log's entries and
the messages' history. A transaction's rows of one table go in one multi-row INSERT, not one
statement (and, for an ORM object, one unit-of-work flush) each.

Each row is kept on the session (`add`) and written when the session commits, after its flush
of everything else (so the plays and messages the rows name exist by then), table by table in
the order each table's first row was kept and row by row in the order they were kept.
`write_now` writes them earlier, for a statement that reads them (a message's history in the
response that created it) or whose place must come after theirs (`log_once`). A rollback drops
them with the rest.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Table, event
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.rows import insert_into

# session.info: per table's name, its INSERT and the rows kept for it, in order
PENDING = "gateway.commit_rows.pending"


def add(session: AsyncSession, table: Table, row: dict[str, Any]) -> None:
    """A row of `table` (its column values by name), written when the session commits."""
    if not session.in_transaction():
        # Begun now, so that a rollback before any statement still drops the row.
        session.sync_session.begin()
    pending: dict[str, tuple[Insert, list[dict[str, Any]]]] = session.info.setdefault(PENDING, {})
    kept = pending.get(table.name)
    if kept is None:
        kept = pending[table.name] = (insert_into(table), [])
    kept[1].append(row)


async def write_now(session: AsyncSession) -> None:
    """Write the rows kept so far (and, first, the objects they name)."""
    if session.info.get(PENDING):
        await session.run_sync(_write)


@event.listens_for(Session, "before_commit")
def _write(session: Session) -> None:
    pending: dict[str, tuple[Insert, list[dict[str, Any]]]] | None = session.info.pop(PENDING, None)
    if not pending:
        return
    session.flush()
    connection = session.connection()
    for statement, rows in pending.values():
        connection.execute(statement, rows)


@event.listens_for(Session, "after_soft_rollback")
def _drop(session: Session, previous: SessionTransaction) -> None:
    if not previous.nested:
        session.info.pop(PENDING, None)
