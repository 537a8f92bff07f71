"""Rows of record written together when their transaction commits: the play log's entries, the
messages' history and the webhooks' deliveries. A transaction's rows of one table go in one
multi-row INSERT, not one statement (and, for an ORM object, one unit-of-work flush) each; on
PostgreSQL, the rows of all its tables in one statement (`_together`).

Each row is kept on the session (`add`) and written when the session commits, after its flush
of everything else (so the plays and messages the rows name exist by then), table by table in
the order each table's first row was kept, and within a play's log or a message's history in
the order they were kept. A row may have a statement of its own (the play log's entry written
only if the log has none of its kind, `gateway.engine.records.log_once`); rows of one statement
still go together. `write_now` writes them earlier, for a statement that reads them (a
message's history in the response that created it). A rollback drops them with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Executable, Insert, Table, bindparam, event, func, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.rows import insert_into

# session.info: per table's name, the rows kept for it, in order
PENDING = "gateway.commit_rows.pending"


@dataclass
class _Kept:
    """A table's rows kept so far: each with the statement that writes it, in order."""

    order: str  # the column within whose values the rows keep their order
    rows: list[tuple[Executable, dict[str, Any]]] = field(default_factory=list)


def add(
    session: AsyncSession,
    table: Table,
    row: dict[str, Any],
    *,
    order: str,
    statement: Executable | None = None,
) -> None:
    """A row of `table` (its column values by name), written when the session commits.

    `statement`: what writes it, taking the row as its parameters (by default a plain INSERT
    into `table`; an INSERT ... SELECT that writes it only if no such row exists, say). Rows
    that share a value of the column `order` (a play's log, a message's history) are written
    in the order they were kept; others may be written in another order, so that rows of one
    statement go together (`_runs`)."""
    if not session.in_transaction():
        # Begun now, so that a rollback before any statement still drops the row.
        session.sync_session.begin()
    pending: dict[str, _Kept] = session.info.setdefault(PENDING, {})
    kept = pending.get(table.name)
    if kept is None:
        kept = pending[table.name] = _Kept(order)
    kept.rows.append((statement if statement is not None else insert_into(table), row))


async def write_now(session: AsyncSession) -> None:
    """Write the rows kept so far (and, first, the objects they name)."""
    if session.info.get(PENDING):
        await session.run_sync(_write)


@event.listens_for(Session, "before_commit")
def _write(session: Session) -> None:
    pending: dict[str, _Kept] | None = session.info.pop(PENDING, None)
    if not pending:
        return
    session.flush()
    connection = session.connection()
    runs = [run for kept in pending.values() for run in _runs(kept)]
    if connection.dialect.name == "postgresql" and len(runs) > 1:
        together = _together(runs)
        if together is not None:
            connection.execute(*together)
            return
    for statement, rows in runs:
        connection.execute(statement, rows)


def _together(
    runs: list[tuple[Executable, list[dict[str, Any]]]],
) -> tuple[Executable, dict[str, Any]] | None:
    """On PostgreSQL, runs of plain INSERTs into several tables as one statement, with its
    parameters: one round trip where there would be one a table (a lead's first text keeps the
    play's log and the text's history, and its acceptance those and its webhooks' deliveries).
    None when a run has a statement of its own, or rows that differ in their columns.

    Each table's rows are a data-modifying `WITH` (or the last, the statement itself), its
    values an array a column from which `unnest` makes the rows, in their order: a statement
    of one shape whatever the count of rows, built once. The tables' rows name none of each
    other's, so the order in which PostgreSQL writes the tables does not matter."""
    shape: list[tuple[Table, tuple[str, ...]]] = []
    for statement, rows in runs:
        table = statement.table if isinstance(statement, Insert) else None
        if not isinstance(table, Table) or statement is not insert_into(table):
            return None  # a statement of its own (an entry written only if new)
        columns = tuple(rows[0])
        if any(tuple(row) != columns for row in rows):
            return None
        shape.append((table, columns))
    params = {
        f"{n}_{column}": [row[column] for row in rows]
        for n, (_, rows) in enumerate(runs)
        for column in rows[0]
    }
    return _unnested(tuple(shape)), params


@cache
def _unnested(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Executable:
    """`_together`'s statement for tables of these columns (parameters `<n>_<column>`, arrays)."""
    inserts = []
    for n, (table, columns) in enumerate(shape):
        arrays = [bindparam(f"{n}_{c}", type_=postgresql.ARRAY(table.c[c].type)) for c in columns]
        rows = func.unnest(*arrays).table_valued(*columns).render_derived()
        inserts.append(insert(table).from_select(columns, select(*rows.c)))
    *first, last = inserts
    return last.add_cte(*(one.cte(f"w{n}") for n, one in enumerate(first)))


def _runs(kept: _Kept) -> list[tuple[Executable, list[dict[str, Any]]]]:
    """A table's kept rows as runs of one statement each (one execution a run), as few as keep
    the order of the rows that share a value of `kept.order`.

    Each row's layer is how many times the statement changed before it among the rows of its
    value (a play logging an entry, then one only if new, then an entry: layers 0, 1, 2). Rows
    go out layer by layer, and within a layer statement by statement: a batch of plays that
    each log an entry and then one only if new takes two runs, not two a play."""
    last: dict[Any, tuple[Executable, int]] = {}
    statements: dict[Executable, int] = {}  # each statement's place, by its first row
    layered: list[tuple[int, int, Executable, dict[str, Any]]] = []
    for statement, row in kept.rows:
        before = last.get(row[kept.order])
        layer = 0 if before is None else before[1] + (before[0] is not statement)
        last[row[kept.order]] = (statement, layer)
        place = statements.setdefault(statement, len(statements))
        layered.append((layer, place, statement, row))
    layered.sort(key=lambda one: one[:2])  # stable: rows of a run stay in the order kept
    runs: list[tuple[Executable, list[dict[str, Any]]]] = []
    run_of: tuple[int, int] | None = None
    for layer, place, statement, row in layered:
        if run_of != (layer, place):
            runs.append((statement, []))
            run_of = (layer, place)
        runs[-1][1].append(row)
    return runs


@event.listens_for(Session, "after_soft_rollback")
def _drop(session: Session, previous: SessionTransaction) -> None:
    if not previous.nested:
        session.info.pop(PENDING, None)
