"""Two units of work that write at once both commit: on SQLite the second waits for the first
instead of failing with "database is locked"."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import text

from gateway.db import SessionFactory, transaction


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
