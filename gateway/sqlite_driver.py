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
single-row writes, the hot paths) makes no trip at all. Holding SQLite's write lock since its
BEGIN IMMEDIATE, its statements and its COMMIT wait on no lock and take microseconds, less than
the hand-off itself, so they run on the event loop's thread (the
connection is opened with `check_same_thread=False`; SQLAlchemy never uses one connection from
two tasks at once, and the connection's mutex keeps the thread idle meanwhile). Its BEGIN runs
there too when the lock is free, with the busy handler off; when another process (a worker
beside the web) holds the lock, it is tried again there every millisecond for a while
(`BEGIN_POLL_SECONDS`), and past that waits its turn on the thread, in the busy handler. Reads
alone (`gateway.db.read_alone`: an API key's lookup) run there too, with no BEGIN at all (each
is its own read transaction, which takes no lock), and in WAL mode a reader waits on no writer
(the checkpoints here are PASSIVE, which block no reader). Any rollback runs on the loop's
thread (it waits on no lock and writes nothing), so another read session makes one trip, its
first statement's. While a call given to the thread is still running there (its task was
cancelled while it waited), nothing runs on the loop's: it queues behind.

A COMMIT in WAL mode (synchronous=NORMAL) appends to the WAL and syncs nothing; what can take
milliseconds is the checkpoint that copies the WAL into the database file and syncs it, which
SQLite runs inside the commit that finds the WAL past 1,000 pages. That automatic checkpoint
is off on these connections (gateway/db.py): instead, every CHECKPOINT_EVERY-th commit of an
engine goes to the thread and checkpoints there, as the automatic one would have (PASSIVE:
it waits on no reader or writer). A brief COMMIT on the loop's thread saved about 150 µs of
CPU per unit of work (bench/RESULTS.md §20).

This is the aiosqlite DBAPI adapter of SQLAlchemy with its cursor replaced; the engine gets it
as its DBAPI module (`create_async_engine(module=...)`, gateway/db.py). It reaches into
aiosqlite's work queue as SQLAlchemy's own adapter does (its isolation-level setter), so both
libraries are pinned below the next versions in pyproject.toml. Streaming (server-side)
cursors keep the stock ones.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

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
_T = TypeVar("_T")

log = logging.getLogger(__name__)


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
        async with adapted._execute_mutex:
            begin, adapted.begin_with = adapted.begin_with, None
            if begin is not None:
                adapted.in_transaction = True  # whatever becomes of the statement
                adapted.on_loop, adapted.brief_next = adapted.brief_next, False
                if begin == IMMEDIATE:
                    # A brief transaction begins here when the write lock is free, or is freed
                    # soon; when another process holds it longer, its BEGIN waits its turn on
                    # the thread.
                    on_loop = (
                        adapted.on_loop and adapted.thread_idle() and await adapted.begin_soon()
                    )
                    if on_loop:
                        begin = None
                else:
                    # A brief read's deferred BEGIN takes no lock, and in WAL mode its reads
                    # wait on no writer: the BEGIN goes with its first statement, here.
                    on_loop = adapted.on_loop and adapted.thread_idle()
            elif adapted.reads_alone:
                # `read_alone`'s statement, its own read transaction: as a brief read's.
                on_loop = adapted.thread_idle()
            else:
                on_loop = adapted.on_loop and adapted.in_transaction and adapted.thread_idle()
            call = partial(_run, operation=operation, parameters=parameters, many=many, begin=begin)
            outcome = adapted.here(call) if on_loop else await adapted.on_thread(call)
        self._description, rows, self._rowcount, self._lastrowid, adapted.in_transaction = outcome
        self._rows = collections.deque(rows)


IMMEDIATE = "BEGIN IMMEDIATE"
# A brief transaction whose BEGIN finds the write lock held by another process (a worker's
# transaction, beside the web) tries again on the loop's thread this often, for up to
# BEGIN_POLL_FOR, before it leaves the wait to SQLite's busy handler on the driver's thread.
# The handler sleeps 1, 2, 5, 10, 15, 20, 25 ms between its tries, so a lock held 10 ms is
# taken 18 ms after the first try, one held 20 ms after 33, however soon it was free: at 200
# inbound texts a second beside a worker, that was the webhook's p99. A try is a few
# microseconds (BEGIN IMMEDIATE with the busy handler off).
BEGIN_POLL_SECONDS = 0.001
BEGIN_POLL_FOR = 0.1
# An engine's commits from one checkpoint of the WAL to the next: with a few pages written by
# each, about the 1,000 pages at which SQLite's automatic checkpoint would run.
CHECKPOINT_EVERY = 250


def _try_begin(connection: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE, or False if another process holds the write lock (with the busy
    handler off, at once)."""
    try:
        connection.execute(IMMEDIATE)
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
            raise
        return False
    return True


def _commit_and_checkpoint(connection: sqlite3.Connection) -> None:
    connection.commit()
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").close()
    except sqlite3.Error as error:
        # The commit stands, so the unit of work must not be told it failed: a caller would
        # do it again (a second play for one lead). Another connection checkpointing now is
        # as good; anything else leaves the WAL to the next checkpoint, a few hundred commits
        # on, and is logged.
        if getattr(error, "sqlite_errorcode", None) not in (
            sqlite3.SQLITE_BUSY,
            sqlite3.SQLITE_LOCKED,
        ):
            log.warning("WAL checkpoint after a commit failed: %s", error)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = (
        "_last_call",
        "begin_with",
        "brief_next",
        "busy_ms",
        "in_transaction",
        "on_loop",
        "reads_alone",
    )

    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # a subclass, as the stock one

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        # Whether SQLite has a transaction open, as of the last statement, commit or rollback.
        self.in_transaction = True
        # The BEGIN the next statement starts with (None: none owed).
        self.begin_with: str | None = None
        # The transaction about to begin is brief (module docstring); the one open is, and runs
        # on the loop's thread.
        self.brief_next = False
        self.on_loop = False
        # No BEGIN until the next commit or rollback: each statement reads alone, on the
        # loop's thread (`gateway.db.read_alone`).
        self.reads_alone = False
        self.busy_ms: int | None = None  # the connection's busy timeout, once read
        self._last_call: list[bool] | None = None  # whether the last call given the thread ended

    def begin_here(self) -> bool:
        """BEGIN IMMEDIATE on the event loop's thread if the write lock is free now: the busy
        handler is off for it, so it never waits. False when another process holds the lock
        (nothing has begun)."""
        return self.here(self._begin_now)

    async def begin_soon(self) -> bool:
        """`begin_here`, tried again every BEGIN_POLL_SECONDS while another process holds the
        write lock, for up to BEGIN_POLL_FOR; False past that (nothing has begun)."""
        if self.begin_here():
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BEGIN_POLL_FOR
        self.here(self._busy_off)
        try:
            while loop.time() < deadline:
                await asyncio.sleep(BEGIN_POLL_SECONDS)
                if self.here(_try_begin):
                    return True
            return False
        finally:
            self.here(self._busy_on)

    def _begin_now(self, connection: sqlite3.Connection) -> bool:
        self._busy_off(connection)
        try:
            return _try_begin(connection)
        finally:
            self._busy_on(connection)

    def _busy_off(self, connection: sqlite3.Connection) -> None:
        if self.busy_ms is None:
            self.busy_ms = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
        connection.execute("PRAGMA busy_timeout = 0")

    def _busy_on(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"PRAGMA busy_timeout = {self.busy_ms}")

    def here(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        """`call(connection)` on the event loop's thread (a brief transaction's statement, a
        rollback)."""
        return call(self._live()._conn)

    def _live(self) -> Any:
        """The aiosqlite connection, whose thread must still run."""
        driver: Any = self._connection
        if not driver._running:
            raise ValueError("Connection closed")  # as aiosqlite says it: its thread has ended
        return driver

    def thread_idle(self) -> bool:
        """Whether the thread is done with everything it was given. A task cancelled while it
        waited on the thread leaves the call running there; until it ends, the connection is
        the thread's, and what comes next is queued behind it."""
        return self._last_call is None or self._last_call[0]

    async def on_thread(self, call: Callable[[sqlite3.Connection], _T]) -> _T:
        """`call(connection)` on aiosqlite's thread, as aiosqlite runs its own calls."""
        driver = self._live()
        done = [False]
        self._last_call = done  # the thread runs its calls in order: the last done, all done

        def tracked() -> _T:
            try:
                return call(driver._conn)
            finally:
                done[0] = True

        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        driver._tx.put_nowait((future, tracked))
        return await future

    def commit(self) -> None:
        # Begun, and nothing ran: nothing to commit.
        on_loop, self.begin_with, self.brief_next, self.on_loop = self.on_loop, None, False, False
        self.reads_alone = False
        if not self.in_transaction:
            return  # no trip to the thread
        checkpoint = self.dbapi.committed()
        try:
            if checkpoint:
                await_(self.on_thread(_commit_and_checkpoint))
            elif on_loop and self.thread_idle():
                self.here(sqlite3.Connection.commit)  # a brief unit's (module docstring)
            else:
                await_(self.on_thread(sqlite3.Connection.commit))
        except Exception as error:
            self._handle_exception(error)
        self.in_transaction = False

    def rollback(self) -> None:
        self.begin_with, self.brief_next, self.on_loop = None, False, False
        self.reads_alone = False
        if not self.in_transaction:
            return  # nothing to roll back: no trip to the thread
        try:
            if self.thread_idle():
                # Here: a rollback waits on no lock and writes nothing.
                self.here(sqlite3.Connection.rollback)
            else:
                await_(self.on_thread(sqlite3.Connection.rollback))
        except Exception as error:
            self._handle_exception(error)
        self.in_transaction = False


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """One engine's: it counts the engine's commits to its next checkpoint."""

    def __init__(self, aiosqlite: Any, sqlite: Any) -> None:
        super().__init__(aiosqlite, sqlite)
        self.commits = 0  # since the last checkpoint

    def committed(self) -> bool:
        """Count a commit; True when it is the one that checkpoints."""
        self.commits += 1
        if self.commits < CHECKPOINT_EVERY:
            return False
        self.commits = 0
        return True

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        # A brief transaction's statements run on the loop's thread, not the one that opened
        # the connection (module docstring).
        kw["check_same_thread"] = False
        stock = super().connect(*arg, **kw)
        return OneTripConnection(self, stock._connection)


def dbapi() -> OneTripDBAPI:
    """The DBAPI module to give a SQLite engine."""
    return OneTripDBAPI(aiosqlite, sqlite3)
