"""Migrations go up, down and up again on the database under test (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import inspect
from sqlmodel import SQLModel

import gateway.models  # noqa: F401
from gateway.db import create_engine
from gateway.migrate import downgrade, upgrade
from tests.conftest import TEST_DATABASE_URL
from tests.support.databases import create_database, drop_database


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    url = asyncio.run(create_database(TEST_DATABASE_URL, tmp_path))
    try:
        upgrade(url)
        assert asyncio.run(_tables(url)) == set(SQLModel.metadata.tables)
        downgrade(url, "base")
        assert asyncio.run(_tables(url)) == set()
        upgrade(url)
        assert "api_keys" in asyncio.run(_tables(url))
    finally:
        asyncio.run(drop_database(TEST_DATABASE_URL, url))
