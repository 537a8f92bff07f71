"""SQLite statements in one trip to the driver's thread.

aiosqlite runs each sqlite3 call on a thread of its own and hands the result back to the event
loop; SQLAlchemy's adapter makes three or four such calls per statement (open a cursor,
execute, fetch the rows, close the cursor). Each trip costs a wake-up of the thread and one of
the loop (a semaphore post, an eventfd write, two context switches): profiled under load, the
system calls of these hand-offs were up to a third of a worker's main-thread samples, more
than the statements themselves. Here a statement is one trip: the thread opens a cursor,
executes, fetches, reads the row count and closes it, and the loop gets everything at once. A
transaction's BEGIN goes with its first statement, in the same trip (gateway/db.py sets
`begin_with`); a commit or rollback with no transaction open (the pool's reset after every
unit of work that committed) makes no trip.

A brief unit of work (`gateway.db.transaction(..., brief=True)`: a few index lookups and
single-row writes, the hot paths) makes no trip after its first: holding SQLite's write lock
since its BEGIN IMMEDIATE, its statements wait on no lock and take microseconds, less than the
hand-off itself, so they run on the event loop's thread (the connection is opened with
`check_same_thread=False`; SQLAlchemy never uses one connection from two tasks at once, and the
connection's mutex keeps the thread idle meanwhile). The BEGIN, which may wait on another
process's writer in the busy handler, and the COMMIT, which may checkpoint the WAL, still go to
the thread.

This is the aiosqlite DBAPI adapter of SQLAlchemy with its cursor replaced; the engine gets it
as its DBAPI module (`create_async_engine(module=...)`, gateway/db.py). It reaches into
aiosqlite's work queue as SQLAlchemy's own adapter does (its isolation-level setter), so both
libraries are pinned below the next versions in pyproject.toml. Streaming (server-side)
cursors keep the stock ones.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# What the thread hands back: description, rows, row count, last row id, in a transaction.
_Outcome = tuple[Any, list[Any], int, int | None, bool]


def _run(
    connection: sqlite3.Connection,
    operation: str,
    parameters: Any,
    many: bool,
    begin: str | None,
) -> _Outcome:
    """On aiosqlite's thread: the transaction's BEGIN if it is the first statement, and the
    whole statement, cursor to close."""
    if begin is not None:
        connection.execute(begin)
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid, connection.in_transaction
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement is one trip to the thread (module docstring)."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: OneTripConnection) -> None:
        # Not the parent's: it opens an aiosqlite cursor, a trip of its own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1  # sqlite3's: the rows a `fetchmany()` without a size returns

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    # The parent's read the aiosqlite cursor this one never opens.
    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    async def _async_soft_close(self) -> None:
        return  # the thread closed the cursor already

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._trip(operation, parameters, many=False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._trip(operation, seq_of_parameters, many=True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _trip(self, operation: str, parameters: Any, *, many: bool) -> None:
        adapted = self._adapt_connection
        assert isinstance(adapted, OneTripConnection)
        begin, adapted.begin_with = adapted.begin_with, None
        if begin is not None:
            adapted.in_transaction = True  # whatever becomes of the statement
            adapted.on_loop = adapted.brief_next and begin == IMMEDIATE
            adapted.brief_next = False
            on_loop = False  # the BEGIN may wait on another process's writer
        else:
            on_loop = adapted.on_loop and adapted.in_transaction
        call = partial(_run, operation=operation, parameters=parameters, many=many, begin=begin)
        async with adapted._execute_mutex:
            outcome = adapted.here(call) if on_loop else await adapted.on_thread(call)
        self._description, rows, self._rowcount, self._lastrowid, adapted.in_transaction = outcome
        self._rows = collections.deque(rows)


IMMEDIATE = "BEGIN IMMEDIATE"


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("begin_with", "brief_next", "in_transaction", "on_loop")

    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # a subclass, as the stock one

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        # Whether SQLite has a transaction open, as of the last statement, commit or rollback.
        self.in_transaction = True
        # The BEGIN the next statement starts with (None: none owed).
        self.begin_with: str | None = None
        # The transaction about to begin is brief (module docstring); the one open is, and its
        # statements after the first run on the loop's thread.
        self.brief_next = False
        self.on_loop = False

    def here(self, call: partial[_Outcome]) -> _Outcome:
        """`call(connection)` on the event loop's thread (a brief transaction's statement)."""
        driver: Any = self._connection
        if not driver._running:
            raise ValueError("Connection closed")
        return call(driver._conn)

    async def on_thread(self, call: partial[_Outcome]) -> _Outcome:
        """`call(connection)` on aiosqlite's thread, as aiosqlite runs its own calls."""
        driver: Any = self._connection
        if not driver._running:
            raise ValueError("Connection closed")  # as aiosqlite says it: its thread has ended
        future: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
        driver._tx.put_nowait((future, partial(call, driver._conn)))
        return await future

    def commit(self) -> None:
        # Begun, and nothing ran: nothing to commit.
        self.begin_with, self.brief_next, self.on_loop = None, False, False
        if not self.in_transaction:
            return  # no trip to the thread
        super().commit()
        self.in_transaction = False

    def rollback(self) -> None:
        self.begin_with, self.brief_next, self.on_loop = None, False, False
        if not self.in_transaction:
            return  # nothing to roll back: no trip to the thread
        super().rollback()
        self.in_transaction = False


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        # A brief transaction's statements run on the loop's thread, not the one that opened
        # the connection (module docstring).
        kw["check_same_thread"] = False
        stock = super().connect(*arg, **kw)
        return OneTripConnection(self, stock._connection)


def dbapi() -> OneTripDBAPI:
    """The DBAPI module to give a SQLite engine."""
    return OneTripDBAPI(aiosqlite, sqlite3)
