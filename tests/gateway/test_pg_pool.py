"""PostgreSQL's pool without a pre-ping: a connection the server closed (a restart, an idle
timeout, an administrator) is replaced when it is checked out, and the unit of work that asks
for it never sees it."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import SessionFactory, create_engine, transaction
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(TEST_DATABASE_URL is None, reason="PostgreSQL's pool")


async def _backend_pid(sessions: SessionFactory) -> int:
    async with transaction(sessions) as session:
        pid = (await (await session.connection()).execute(text("SELECT pg_backend_pid()"))).scalar()
    assert isinstance(pid, int)
    return pid


async def test_a_connection_the_server_closed_is_replaced_at_checkout(
    engine: AsyncEngine, sessions: SessionFactory, database_url: str
) -> None:
    first = await _backend_pid(sessions)  # now idle in the pool
    admin = create_engine(database_url)
    try:
        async with admin.connect() as connection:
            ended = await connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": first}
            )
            assert ended.scalar() is True
    finally:
        await admin.dispose()
    # The server's goodbye reaches the idle connection's socket once the loop runs.
    await asyncio.sleep(0.5)
    second = await _backend_pid(sessions)
    assert second != first


async def test_the_pool_does_not_ping_on_checkout(engine: AsyncEngine) -> None:
    # The ping would cost three round trips (BEGIN, `;`, ROLLBACK) on every checkout.
    assert engine.sync_engine.pool._pre_ping is False
