"""Units of work that write at once all commit: on SQLite a later one waits for an earlier one
instead of failing with "database is locked", and within one process they take turns on the
process's own lock rather than in SQLite's busy handler."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from gateway import db
from gateway.db import SessionFactory, session_factory, transaction
from gateway.errors import is_unavailable
from tests.conftest import TEST_DATABASE_URL

sqlite_only = pytest.mark.skipif(TEST_DATABASE_URL is not None, reason="SQLite's writer lock")


async def test_a_reader_that_then_writes_is_not_refused(sessions: SessionFactory) -> None:
    async with transaction(sessions) as session:
        await (await session.connection()).execute(
            text("CREATE TABLE IF NOT EXISTS writer_probe (n INTEGER)")
        )
        await (await session.connection()).execute(text("DELETE FROM writer_probe"))
    first_has_read = asyncio.Event()
    second_done = asyncio.Event()

    async def first() -> None:
        async with transaction(sessions) as session:
            await (await session.connection()).execute(text("SELECT count(*) FROM writer_probe"))
            first_has_read.set()
            # Give the second writer its chance to commit in between. With a deferred BEGIN it
            # does, and this transaction's write then fails at once (SQLITE_BUSY_SNAPSHOT);
            # with BEGIN IMMEDIATE it can't, it waits for this one.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(second_done.wait(), 0.5)
            await (await session.connection()).execute(text("INSERT INTO writer_probe VALUES (1)"))

    async def second() -> None:
        await first_has_read.wait()
        async with transaction(sessions) as session:
            await (await session.connection()).execute(text("INSERT INTO writer_probe VALUES (2)"))
        second_done.set()

    await asyncio.gather(first(), second())
    async with sessions() as session:
        rows = (
            await (await session.connection()).execute(
                text("SELECT n FROM writer_probe ORDER BY n")
            )
        ).all()
    assert [row.n for row in rows] == [1, 2]


def _no_busy_handler(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # After the engine's own pragmas: a writer that finds the lock taken fails at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


@sqlite_only
async def test_writers_of_one_process_take_turns_without_the_busy_handler(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    event.listen(engine.sync_engine, "connect", _no_busy_handler)
    sessions = session_factory(engine)
    try:
        async with transaction(sessions) as session:
            await (await session.connection()).execute(text("CREATE TABLE t (n INTEGER)"))

        async def write(n: int) -> None:
            async with transaction(sessions) as session:
                connection = await session.connection()
                await connection.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
                await asyncio.sleep(0.002)  # the other writers run while this one holds the lock
                await connection.execute(text("UPDATE t SET n = n + 1000 WHERE n = :n"), {"n": n})

        # Forty writers at once, as a burst of requests or a worker's jobs: without turns, every
        # writer but the first would meet SQLite's lock taken and, with no busy handler, fail.
        await asyncio.gather(*(write(n) for n in range(40)))
        async with sessions() as session:
            rows = (await (await session.connection()).execute(text("SELECT n FROM t"))).all()
        assert sorted(row.n for row in rows) == [n + 1000 for n in range(40)]
    finally:
        await engine.dispose()


@sqlite_only
async def test_a_turn_not_given_in_time_is_an_outage(
    sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that waits past SQLITE_BUSY_SECONDS for its turn gets a TimeoutError, which
    the API answers as a 503 (like a lock held by another process past the busy timeout)."""
    monkeypatch.setattr(db, "SQLITE_BUSY_SECONDS", 0.2)
    async with transaction(sessions):  # holds this process's turn
        with pytest.raises(TimeoutError) as waited:
            async with transaction(sessions):
                pass
    assert is_unavailable(waited.value)
    async with transaction(sessions) as session:  # the turn was given back
        assert (await (await session.connection()).execute(text("SELECT 1"))).scalar() == 1
