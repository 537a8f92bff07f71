"""Migration 0021 on existing data: keys issued before scopes existed stay `full`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from gateway.db import create_engine
from gateway.migrate import downgrade, upgrade
from tests.conftest import TEST_DATABASE_URL
from tests.support.databases import create_database, drop_database


async def _seed(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("INSERT INTO accounts (id, name, created_at) VALUES ('acc', 'A', :at)"),
                {"at": datetime.now(UTC)},
            )
            await connection.execute(
                sa.text(
                    "INSERT INTO api_keys (id, account_id, name, prefix, key_hash, created_at) "
                    "VALUES ('key_old', 'acc', 'default', 'gw_old', 'hash', :at)"
                ),
                {"at": datetime.now(UTC)},
            )
    finally:
        await engine.dispose()


async def _scopes(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(sa.text("SELECT id, scope FROM api_keys"))
            return {row[0]: row[1] for row in rows}
    finally:
        await engine.dispose()


def test_keys_issued_before_scopes_stay_full(tmp_path: Path) -> None:
    url = asyncio.run(create_database(TEST_DATABASE_URL, tmp_path))
    try:
        upgrade(url, "0020")
        asyncio.run(_seed(url))
        upgrade(url, "0021")
        scopes = asyncio.run(_scopes(url))
        downgrade(url, "0020")  # and back: the column goes, the key stays
        upgrade(url, "0021")
        again = asyncio.run(_scopes(url))
    finally:
        asyncio.run(drop_database(TEST_DATABASE_URL, url))
    assert scopes == {"key_old": "full"}
    assert again == {"key_old": "full"}
