"""SQLite statements in one trip to aiosqlite's thread (gateway/sqlite_driver.py): what a
statement gives back is what the stock driver gives, in fewer trips."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import sqlite_driver
from gateway.db import create_engine, read_alone, session_factory, transaction


class _Trips:
    """Counts what is put on a connection's work queue, and passes it on."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.count = 0

    def put_nowait(self, item: Any) -> None:
        self.count += 1
        self.queue.put_nowait(item)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as connection:
        await connection.execute(
            text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE NOT NULL)")
        )
    yield engine
    await engine.dispose()


async def _trips(connection: AsyncConnection) -> _Trips:
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    trips = _Trips(driver._tx)
    driver._tx = trips
    return trips


async def test_a_statement_is_one_trip_and_gives_back_what_sqlite_does(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        trips = await _trips(connection)
        inserted = await connection.execute(text("INSERT INTO t (v) VALUES ('a')"))
        assert inserted.lastrowid == 1
        many = await connection.execute(
            text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}, {"v": "d"}]
        )
        assert many.rowcount == 3
        updated = await connection.execute(text("UPDATE t SET v = v || '!' WHERE id > 2"))
        assert updated.rowcount == 2
        rows = (await connection.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b"), (3, "c!"), (4, "d!")]
        some = await connection.execute(text("SELECT id FROM t ORDER BY id"))
        assert [r.id for r in some.fetchmany()] == [1]  # sqlite3's arraysize, 1
        assert [r.id for r in some.fetchmany(2)] == [2, 3]
        returned = await connection.execute(
            text("UPDATE t SET v = 'z' WHERE id = 1 RETURNING id, v")
        )
        assert list(returned.keys()) == ["id", "v"]
        assert [tuple(r) for r in returned.all()] == [(1, "z")]
        # Five statements and the RETURNING one, a trip each (the stock driver made 3 or 4
        # each); the transaction's BEGIN (gateway/db.py's) went in the first one's.
        assert trips.count == 6
        await connection.commit()
        assert trips.count == 7
        # A transaction begun in which nothing ran has nothing to commit.
        await connection.begin()
        await connection.commit()
        assert trips.count == 7
        assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 4


async def test_errors_are_the_databases_and_the_connection_goes_on(engine: AsyncEngine) -> None:
    """Including a failed first statement, whose trip began the transaction."""
    async with engine.connect() as connection:
        await connection.execute(text("INSERT INTO t (v) VALUES ('a')"))
        await connection.commit()
        with pytest.raises(exc.IntegrityError):
            await connection.execute(text("INSERT INTO t (v) VALUES ('a')"))
        await connection.rollback()
        with pytest.raises(exc.OperationalError):
            await connection.execute(text("SELECT nope FROM t"))
        await connection.rollback()
        count = (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one()
        assert count == 1


async def test_a_rollback_makes_no_trip(engine: AsyncEngine) -> None:
    """With nothing open there is nothing to roll back; with a transaction open, it is rolled
    back on the loop's thread (it waits on no lock and writes nothing)."""
    async with engine.connect() as connection:
        trips = await _trips(connection)
        await connection.execute(text("INSERT INTO t (v) VALUES ('a')"))
        await connection.commit()
        after_commit = trips.count
        raw = await connection.get_raw_connection()
        raw.dbapi_connection.rollback()  # type: ignore[union-attr]  # what the pool's reset does
        assert trips.count == after_commit
        await connection.execute(text("INSERT INTO t (v) VALUES ('b')"))
        await connection.rollback()
        assert trips.count == after_commit + 1  # BEGIN with the INSERT; the ROLLBACK is here
        values = (await connection.execute(text("SELECT v FROM t"))).scalars().all()
        assert values == ["a"]


async def test_a_call_left_running_on_the_thread_keeps_the_connection_there(
    engine: AsyncEngine,
) -> None:
    """A task cancelled while the thread ran its statement leaves the statement running: until
    it ends, what comes next (a rollback, a brief unit's statement) queues behind it on the
    thread instead of running beside it on the loop's."""
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
        "SELECT count(*) FROM c"
    )
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        adapted: Any = raw.dbapi_connection
        trips = await _trips(connection)
        running = asyncio.create_task(adapted.on_thread(lambda conn: conn.execute(slow).fetchall()))
        await asyncio.sleep(0.05)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert not adapted.thread_idle()
        adapted.in_transaction = True  # as if the cancelled statement had begun one
        await connection.run_sync(lambda sync: sync.connection.dbapi_connection.rollback())
        assert trips.count == 2  # the slow statement, then the rollback behind it
        assert adapted.thread_idle()


async def _brief_units(engine: AsyncEngine, brief: bool) -> tuple[int, list[str]]:
    """Two units of work through `gateway.db.transaction`: the trips they made, and what the
    table holds after the second rolled back."""
    sessions = session_factory(engine)
    trips: _Trips | None = None
    async with transaction(sessions, brief=brief) as session:
        connection = await session.connection()
        trips = await _trips(connection)
        await connection.execute(text("INSERT INTO t (v) VALUES ('a')"))  # with the BEGIN
        await connection.execute(text("INSERT INTO t (v) VALUES ('b')"))
        await connection.execute(text("UPDATE t SET v = v || '!' WHERE v = 'b'"))
        rows = (await connection.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
        assert rows == ["a", "b!"]
    made = trips.count
    with pytest.raises(exc.IntegrityError):
        async with transaction(sessions, brief=brief) as session:
            connection = await session.connection()
            await connection.execute(text("INSERT INTO t (v) VALUES ('c')"))
            await connection.execute(text("INSERT INTO t (v) VALUES ('a')"))  # taken: it fails
    async with engine.connect() as connection:
        values = (await connection.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
    return made, list(values)


async def test_a_brief_unit_of_work_makes_no_trip_to_the_thread(
    engine: AsyncEngine,
) -> None:
    """Its BEGIN (the lock being free), statements and COMMIT run on the event loop's thread;
    what they do and what an error undoes is as on the driver's."""
    made, values = await _brief_units(engine, brief=True)
    assert made == 0
    assert values == ["a", "b!"]  # the failed unit's 'c' was rolled back with it


def _wal_frames(path: Path) -> int:
    """The frames in the database's WAL, as a checkpoint by a connection of the test's own
    counts them."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        (frames,) = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1:2]
    finally:
        other.close()
    return int(frames)


async def test_the_wal_is_checkpointed_on_the_thread_every_so_many_commits(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint would run inside a brief unit's COMMIT, on the loop's thread:
    it is off, and every CHECKPOINT_EVERY-th commit of the engine checkpoints on the driver's
    thread instead, so the WAL stays about that many commits long."""
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY", 20)
    sessions = session_factory(engine)
    async with engine.connect() as connection:
        automatic = (await connection.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
    assert automatic == 0
    trips: list[int] = []
    for n in range(200):
        async with transaction(sessions, brief=True) as session:
            connection = await session.connection()
            counted = await _trips(connection)
            await connection.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": f"v{n}"})
        trips.append(counted.count)
    # One brief unit in twenty went to the thread: the one that checkpointed.
    assert 9 <= sum(trips) <= 11
    # Two hundred commits wrote a few frames each; since the last checkpoint, under twenty.
    assert _wal_frames(tmp_path / "driver.db") <= 20 * 4


async def test_a_brief_unit_waits_for_another_processs_writer_on_the_thread(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """With the write lock held elsewhere, its BEGIN waits in the busy handler on the driver's
    thread, not on the loop, and goes on once the lock is free."""
    other = sqlite3.connect(tmp_path / "driver.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    sessions = session_factory(engine)
    trips: list[_Trips] = []

    async def unit() -> None:
        async with transaction(sessions, brief=True) as session:
            connection = await session.connection()
            trips.append(await _trips(connection))
            await connection.execute(text("INSERT INTO t (v) VALUES ('a')"))
            await connection.execute(text("INSERT INTO t (v) VALUES ('b')"))

    waiting = asyncio.create_task(unit())
    await asyncio.sleep(0.2)  # the loop runs meanwhile: this test does
    assert not waiting.done()
    other.execute("COMMIT")
    await asyncio.wait_for(waiting, 10)
    other.close()
    assert trips[0].count == 1  # the BEGIN with the first INSERT, on the thread
    async with engine.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one()
    assert count == 2


async def test_a_brief_unit_begins_on_the_loop_once_another_processs_short_write_ends(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """A lock held for less than BEGIN_POLL_FOR: the BEGIN is tried again on the loop's thread
    until it is free (the busy handler's next try could be tens of milliseconds later), so
    the unit makes no trip to the driver's thread at all."""
    other = sqlite3.connect(tmp_path / "driver.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(sqlite_driver.BEGIN_POLL_FOR / 5, other.commit)
    sessions = session_factory(engine)
    async with transaction(sessions, brief=True) as session:
        connection = await session.connection()
        trips = await _trips(connection)
        await connection.execute(text("INSERT INTO t (v) VALUES ('a')"))
        other_waited = other.in_transaction is False  # the other's write had ended first
    other.close()
    assert other_waited
    assert trips.count == 0  # BEGIN and INSERT on the loop's thread
    async with engine.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one()
    assert count == 1


async def test_a_unit_of_work_not_said_brief_makes_a_trip_per_statement(
    engine: AsyncEngine,
) -> None:
    made, values = await _brief_units(engine, brief=False)
    assert made == 5  # four statements, and the COMMIT
    assert values == ["a", "b!"]


async def test_a_plain_session_after_a_brief_unit_goes_to_the_thread(
    engine: AsyncEngine,
) -> None:
    """Brief is the unit's, not the connection's: the pool hands the connection on."""
    sessions = session_factory(engine)
    async with transaction(sessions, brief=True) as session:
        brief = await session.connection()
        await brief.execute(text("INSERT INTO t (v) VALUES ('a')"))
        driver = (await brief.get_raw_connection()).driver_connection
    async with sessions() as session:
        connection = await session.connection()
        assert (await connection.get_raw_connection()).driver_connection is driver
        trips = await _trips(connection)
        await connection.execute(text("SELECT v FROM t"))
        await connection.execute(text("SELECT count(*) FROM t"))
        assert trips.count == 2


async def test_a_brief_read_makes_no_trip_even_while_another_process_writes(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """`read_alone` (an API key's lookup): its reads run on the loop's thread, each its own read
    transaction (no BEGIN is said, as on PostgreSQL's autocommit connection), and they wait on
    no writer, even one in another process holding the write lock with an uncommitted row
    (which it does not see)."""
    async with transaction(session_factory(engine)) as session:
        await (await session.connection()).execute(text("INSERT INTO t (v) VALUES ('a')"))
    other = sqlite3.connect(tmp_path / "driver.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (v) VALUES ('b')")
        async with read_alone(session_factory(engine)) as session:
            connection = await session.connection()
            trips = await _trips(connection)
            values = (await connection.execute(text("SELECT v FROM t"))).scalars().all()
            sqlite = (await connection.get_raw_connection()).driver_connection._conn
            between = sqlite.in_transaction  # a BEGIN would hold a transaction open here
            count = (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one()
        assert (list(values), count) == (["a"], 1)
        assert not between
        assert trips.count == 0
    finally:
        other.execute("ROLLBACK")
        other.close()
