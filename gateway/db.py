"""Async database engine and sessions (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from weakref import WeakKeyDictionary

from sqlalchemy import (
    BindParameter,
    Connection,
    CursorResult,
    Engine,
    Row,
    bindparam,
    event,
    exc,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import DateTime, TypeDecorator
from sqlalchemy.util.concurrency import greenlet_spawn
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import sqlite_driver
from gateway.settings import normalize_database_url

SessionFactory = async_sessionmaker[AsyncSession]

# session.info keys of the durable-work hand-off (`gateway.work.staging`): the jobs a
# transaction staged, and (from a factory bound to Redis) what enqueues them after its commit.
STAGED = "gateway.work.staged"
HANDOFF = "gateway.work.handoff"
Handoff = Callable[[Collection[Any]], Awaitable[None]]


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware datetime (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# How long a SQLite writer waits for another one before "database is locked"; long enough for
# a burst of short write transactions queued ahead of it.
SQLITE_BUSY_SECONDS = 20
# Execution option set by `transaction()`: on SQLite its BEGIN takes the write lock at once.
_IMMEDIATE = "gateway_begin_immediate"
# Execution option set by `transaction(brief=True)`: on SQLite the unit runs on the event
# loop's thread, its COMMIT excepted (gateway/sqlite_driver.py).
_BRIEF = "gateway_brief"
_SERIALIZED = "gateway.db.serialized"  # session.info: a `transaction()` on SQLite
# Execution option set by `read_alone` on SQLite: no BEGIN at all, so that each statement is
# its own read transaction (SQLite's autocommit), as on PostgreSQL's autocommit connection.
_NO_BEGIN = "gateway_no_begin"
# One writer at a time per process and SQLite engine, in arrival order. Without it, a burst of
# concurrent writers (requests, a worker's jobs) all wait in SQLite's busy handler, which polls
# with sleeps growing to 100 ms: the lock sits free while they sleep, the queue drains at a
# fraction of the rate SQLite can commit, and writers past the busy timeout fail with
# "database is locked". Between processes (`gateway web` beside `gateway worker`) only one
# writer from each is ever in the busy handler.
_WRITERS: WeakKeyDictionary[Engine, asyncio.Lock] = WeakKeyDictionary()


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the web and the worker read while one of them writes; busy_timeout makes
    # concurrent writers wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    # SQLite would checkpoint inside whichever commit finds the WAL past 1,000 pages, and a
    # brief unit commits on the event loop's thread: the driver checkpoints on its own thread
    # instead, every so many commits (gateway/sqlite_driver.py).
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()
    # The driver's own BEGIN is off: `_sqlite_begin` says BEGIN itself (SQLAlchemy's recipe).
    dbapi_connection.isolation_level = None


POOL_RECYCLE = 1800  # seconds a PostgreSQL connection is kept before a fresh one replaces it


def _alive(
    _dbapi_connection: DBAPIConnection,
    record: ConnectionPoolEntry,
    _proxy: PoolProxiedConnection,
) -> None:
    # asyncpg marks a connection closed as soon as its socket ends; the pool then drops it
    # and checks out another (DisconnectionError from a checkout handler means exactly that).
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise exc.DisconnectionError("the database server closed this connection")


def _sqlite_begin(connection: Connection) -> None:
    # A deferred transaction that reads, then writes after another writer has committed, fails
    # at once with "database is locked" (SQLITE_BUSY_SNAPSHOT) whatever the busy timeout: the
    # busy handler is not even called. A unit of work therefore takes the write lock at BEGIN
    # and waits its turn there; plain read sessions stay deferred and never block a writer.
    options = connection.get_execution_options()
    begin = "BEGIN IMMEDIATE" if options.get(_IMMEDIATE, False) else "BEGIN"
    driver = connection.connection.dbapi_connection
    if isinstance(driver, sqlite_driver.OneTripConnection):
        driver.reads_alone = bool(options.get(_NO_BEGIN, False))
        # Sent with the first statement, in its trip (none for `read_alone`).
        driver.begin_with = None if driver.reads_alone else begin
        driver.brief_next = bool(options.get(_BRIEF, False))
    elif not options.get(_NO_BEGIN, False):
        connection.exec_driver_sql(begin)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for the URL, with SQLite tuned for a web and a worker side by side."""
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_SECONDS}, module=sqlite_driver.dbapi()
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # No pre-ping: it costs three round trips (BEGIN, ping, ROLLBACK) on every checkout.
    # `_alive` asks the driver instead, which knows without a round trip when the server
    # closed the socket (a restart, an idle timeout), and `pool_recycle` bounds a connection's
    # age for the middleboxes that drop idle ones silently.
    engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_recycle=POOL_RECYCLE)
    event.listen(engine.sync_engine, "checkout", _alive)
    return engine


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def _writer_turn(session: AsyncSession) -> asyncio.Lock | None:
    """On SQLite, the lock this process's write transactions take turns on; None elsewhere."""
    return _engine_turn(session.bind)


async def _take_turn(turn: asyncio.Lock) -> None:
    """This process's SQLite writer turn; a TimeoutError past SQLITE_BUSY_SECONDS."""
    async with asyncio.timeout(SQLITE_BUSY_SECONDS):
        await turn.acquire()


def _engine_turn(bind: Any) -> asyncio.Lock | None:
    if not isinstance(bind, AsyncEngine) or bind.dialect.name != "sqlite":
        return None
    turn = _WRITERS.get(bind.sync_engine)
    if turn is None:
        turn = _WRITERS[bind.sync_engine] = asyncio.Lock()
    return turn


@asynccontextmanager
async def transaction(
    factory: SessionFactory, *, brief: bool = False
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block succeeds, rolls back when it raises; once it
    has committed, the jobs it staged (`gateway.work.stage`) go to Redis.

    `brief`: the unit is a handful of index lookups and single-row writes (a hot path: a send,
    a status callback, a new play). On SQLite it then runs on the event loop's thread (its
    BEGIN too, when no other process holds the write lock; its COMMIT excepted), where a
    statement costs less than the hand-off to the driver's (gateway/sqlite_driver.py). A
    statement that may touch many rows (cancelling whatever an endpoint is owed, releasing an
    account's held texts) must not be in one: it would hold the event loop meanwhile.

    On SQLite it holds the write lock from its first statement to its end: keep it short.
    Within a process, SQLite's writers take turns on an asyncio lock first (see `_WRITERS`);
    a turn not given within SQLITE_BUSY_SECONDS is a TimeoutError, an outage like a lock
    held by another process past the busy timeout. The hand-off happens after the turn is
    given back: Redis round trips never hold the write lock.
    """
    async with factory() as session:
        turn = _writer_turn(session)
        if turn is not None:
            await _take_turn(turn)
        try:
            await session.connection(execution_options={_IMMEDIATE: True, _BRIEF: brief})
            if turn is not None:
                session.info[_SERIALIZED] = True  # SQLite's BEGIN IMMEDIATE: `serialized`
            yield session
            await _settle(session)
            await session.commit()
        except BaseException:
            session.info.pop(STAGED, None)
            await session.rollback()
            raise
        finally:
            if turn is not None:
                turn.release()
        staged: dict[str, Any] | None = session.info.pop(STAGED, None)
        handoff: Handoff | None = session.info.get(HANDOFF)
        if staged and handoff is not None:
            await handoff(staged.values())


async def write_alone(factory: SessionFactory, statement: Any, params: dict[str, Any]) -> int:
    """One INSERT or UPDATE that is a whole unit of work (an inbound text's append), without a
    session; returns its row count. Nothing is staged: the caller hands off its work itself.

    Cheaper than `transaction(brief=True)` around the same statement: no ORM session, and on
    PostgreSQL no BEGIN and COMMIT round trips (a single statement is atomic on its own). On
    SQLite it takes this process's writer turn and runs on the event loop's thread, as a
    brief unit does. The connection's checkout, the statement and the commit are one awaited
    call: each awaited call of SQLAlchemy's asyncio API is a greenlet of its own, and six of
    them were most of the route's database CPU."""
    engine: AsyncEngine = factory.kw["bind"]
    turn = _engine_turn(engine)
    if turn is None:
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}
        return await greenlet_spawn(_write_alone, engine.sync_engine, statement, params, options)
    await _take_turn(turn)
    try:
        options = {_IMMEDIATE: True, _BRIEF: True}
        return await greenlet_spawn(_write_alone, engine.sync_engine, statement, params, options)
    finally:
        turn.release()


def _write_alone(
    engine: Engine, statement: Any, params: dict[str, Any], options: dict[str, Any]
) -> int:
    with engine.connect() as connection:
        connection.execution_options(**options)
        with connection.begin():
            return int(connection.execute(statement, params).rowcount)


@asynccontextmanager
async def read_alone(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """A session for a few index lookups that are a whole unit of work on their own (an API
    key's lookup), in autocommit: each SELECT sees one snapshot by itself, and no transaction
    is begun or ended. On PostgreSQL that saves the BEGIN and COMMIT round trips. On SQLite no
    BEGIN is said (each statement is its own read transaction), the session takes no writer
    turn and, being brief, runs on the event loop's thread: a read there waits on no writer
    (gateway/sqlite_driver.py), and the hand-off to the driver's thread cost more than the
    lookup."""
    async with factory() as session:
        if _engine_turn(factory.kw["bind"]) is None:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        else:
            await session.connection(execution_options={_BRIEF: True, _NO_BEGIN: True})
        yield session


async def first_row(
    session: AsyncSession, statement: Any, params: dict[str, Any]
) -> Row[Any] | None:
    """The first row of a read of columns (no model objects), by Core on the session's
    connection, in one awaited call.

    Why: the ORM executes a statement built from a model's attributes as an ORM statement
    even when it returns only columns; on the session's connection the same statement costs
    about 40 us less (bench/RESULTS.md §26). Objects pending in the session are written first,
    as the ORM's autoflush would have."""
    return await session.run_sync(_first_row, statement, params)


def _first_row(session: Session, statement: Any, params: dict[str, Any]) -> Row[Any] | None:
    return _core_execute(session, statement, params).first()


async def all_rows(
    session: AsyncSession, statement: Any, params: dict[str, Any]
) -> Sequence[Row[Any]]:
    """`first_row`, every row."""
    return await session.run_sync(_all_rows, statement, params)


def _all_rows(session: Session, statement: Any, params: dict[str, Any]) -> Sequence[Row[Any]]:
    return _core_execute(session, statement, params).all()


def _core_execute(session: Session, statement: Any, params: dict[str, Any]) -> CursorResult[Any]:
    if session.new or session.dirty or session.deleted:
        session.flush()
    return session.connection().execute(statement, params)


_Noted = TypeVar("_Noted")
_NOTHING_YET = object()  # `for_this_transaction`: no transaction has noted anything


def for_this_transaction(session: AsyncSession, key: str, new: Callable[[], _Noted]) -> _Noted:
    """What `session.info[key]` holds for the session's current transaction: made by `new()`
    when it was made in another one (a session may run several), so a note about a transaction
    (a contact lock held, a play it created, a text it queued) never outlives it."""
    transaction = session.sync_session.get_transaction()
    made_in, noted = session.info.get(key, (_NOTHING_YET, None))
    if made_in is not transaction:
        noted = new()
        session.info[key] = (transaction, noted)
    return cast(_Noted, noted)


# session.info key (`for_this_transaction`): what the transaction owes before it commits.
_BEFORE_COMMIT = "gateway.db.before_commit"
BeforeCommit = Callable[[AsyncSession], Awaitable[None]]


def before_commit(session: AsyncSession, settle: BeforeCommit) -> None:
    """`settle(session)` is awaited once before the session's transaction commits, however
    often it was asked for (`transaction()` does it, in the transaction: should it raise, the
    transaction rolls back). For rows kept to the commit whose writing needs awaited reads
    (an activity's webhook deliveries), which `commit_rows`' synchronous hook cannot do."""
    owed: dict[BeforeCommit, None] = for_this_transaction(session, _BEFORE_COMMIT, dict)
    owed[settle] = None


async def _settle(session: AsyncSession) -> None:
    owed: dict[BeforeCommit, None] = for_this_transaction(session, _BEFORE_COMMIT, dict)
    while owed:  # a settle may owe another
        settle = next(iter(owed))
        del owed[settle]
        await settle(session)


@event.listens_for(Session, "before_commit")
def _unsettled(session: Session) -> None:
    """A commit by any other way than `transaction()` would lose what was owed: refuse it."""
    made_in, owed = session.info.get(_BEFORE_COMMIT, (_NOTHING_YET, None))
    if owed and made_in is session.get_transaction():
        raise RuntimeError(f"committed outside gateway.db.transaction() with {len(owed)} owed")


def serialized(session: AsyncSession) -> bool:
    """Whether the session's transaction has held SQLite's one write lock since its BEGIN
    IMMEDIATE (every `transaction()` on SQLite): no other writer can change a row it reads, so
    a contact lock or a re-read after one adds nothing. Asked without an awaited call (each
    costs a greenlet): `transaction()` says so in the session's info."""
    return bool(session.info.get(_SERIALIZED, False))


def dialect_of(session: AsyncSession) -> str:
    """The name of the session's database dialect, without an awaited call for its connection."""
    bind: Any = session.bind
    return str(bind.dialect.name)


def conflict_insert(connection: AsyncConnection, model: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `model`'s table that can say ON CONFLICT, in the connection's dialect.

    Both dialects spell `on_conflict_do_nothing` / `on_conflict_do_update` the same way, so
    claims, locks and reservations are written once for SQLite and PostgreSQL.
    """
    return dialect_insert(connection.dialect.name, model)


def rows_of(model: Any, statement: Any, *also: Any) -> Any:
    """The `model` objects a Core INSERT or UPDATE of its table returns (RETURNING every
    column), refreshing those the session holds: for a statement built once. (The same UPDATE
    written against the model is rebuilt by the ORM on every run, cache key and all, and syncs
    the session's objects in Python; sqlmodel's exec has no overload for the result.)

    `also`: labelled columns returned beside each object (scalar subqueries, say), each row
    then the object followed by their values."""
    returning = statement.returning(*model.__table__.columns, *also)
    return select(model, *also).from_statement(returning).execution_options(populate_existing=True)


def dialect_insert(dialect: str, model: Any) -> postgresql.Insert | sqlite.Insert:
    """`conflict_insert` by the dialect's name, for a statement built once per dialect."""
    table = model.__table__
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class _Unindexed(ColumnElement[Any]):
    """`unindexed(column)`: the column as a value the planner reads no index by."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


def unindexed(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """`column`, for a condition that only filters rows another condition finds by their keys:
    on SQLite, the planner reads no index by it.

    SQLite plans without statistics: for `id IN (...) AND status = 'pending'` with eight ids or
    more it reads every pending row by an index that starts with the status, instead of the
    listed rows by their keys, and a backlog of thousands costs each statement thousands of
    page reads. SQLite's unary `+` leaves the value as it is and takes the column out of index
    selection. PostgreSQL gets the column as it is: it plans by statistics, and an expression
    there would hide the column from them too (without statistics it then scans the table)."""
    return _Unindexed(column)


@compiles(_Unindexed)
def _as_is(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(_Unindexed, "sqlite")
def _unary_plus(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.column, **kw)


_CONSTANT = re.compile(r"[a-z0-9_]+")


def numbered(name: str, count: int) -> list[BindParameter[Any]]:
    """Parameters `name_0` ... `name_<count - 1>`, for a statement built once per count (an IN
    list of ids, a multi-row VALUES): the values go in as `numbered_values(name, ...)`. Why not
    one "expanding" parameter: SQLAlchemy renders it into the SQL again on every execution
    (`among`)."""
    return [bindparam(f"{name}_{n}") for n in range(count)]


def numbered_values(name: str, values: Iterable[Any]) -> dict[str, Any]:
    """The values of `numbered(name, count)`'s parameters, by their names, in order."""
    return {f"{name}_{n}": value for n, value in enumerate(values)}


def among(column: Any, values: Iterable[str]) -> ColumnElement[bool]:
    """`column IN ('a', 'b', ...)` for constants of the code (statuses, kinds), written into the
    statement's SQL as literals.

    Why not `column.in_(values)`: that binds one "expanding" parameter, which SQLAlchemy
    renders into the SQL string again on every execution (a regular expression over the whole
    statement: about 1.5 % of a send's CPU, bench/RESULTS.md §26). Literals keep one compiled
    string per statement, and both databases plan them as an IN list of parameters. Only for
    the code's own constants (lower-case words), never for a value from a request."""
    literals = []
    for value in values:
        text = str(value)
        if not _CONSTANT.fullmatch(text):
            raise ValueError(f"among() takes the code's constants, not {text!r}")
        literals.append(literal_column(f"'{text}'", column.type))
    if not literals:
        raise ValueError("among() needs at least one value")
    in_list: ColumnElement[bool] = column.in_(literals)
    return in_list
