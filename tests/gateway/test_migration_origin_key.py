"""Migration 0016 on existing data: source rules whose origins differ only in case get one
case-folded key each; the oldest keeps its origin, a later one is renamed as a duplicate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from gateway.db import create_engine
from gateway.migrate import upgrade
from tests.conftest import TEST_DATABASE_URL
from tests.support.databases import create_database, drop_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _seed(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for account in ("acc_a", "acc_b"):
                await connection.execute(
                    text("INSERT INTO accounts (id, name, created_at) VALUES (:id, :id, :at)"),
                    {"id": account, "at": T0},
                )
            rows = [
                ("src_2", "acc_a", "everquote", T0 + timedelta(hours=2)),
                ("src_1", "acc_a", "EverQuote", T0 + timedelta(hours=1)),
                ("src_3", "acc_a", "QuoteWizard", T0),
                ("src_4", "acc_b", "EVERQUOTE", T0 + timedelta(hours=5)),  # another account
            ]
            for rule_id, account, origin, at in rows:
                await connection.execute(
                    text(
                        "INSERT INTO source_rules (id, account_id, origin, playbook_id, "
                        "distribution, rep_ids, cursor, settings, created_at, updated_at) VALUES "
                        "(:id, :account, :origin, 'hello', 'manual', '[]', 0, '{}', :at, :at)"
                    ),
                    {"id": rule_id, "account": account, "origin": origin, "at": at},
                )
    finally:
        await engine.dispose()


async def _read(url: str) -> dict[str, tuple[str, str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT id, origin, origin_key FROM source_rules"))
            return {r[0]: (r[1], r[2]) for r in rows}
    finally:
        await engine.dispose()


def test_case_duplicates_are_kept_and_renamed(tmp_path: Path) -> None:
    url = asyncio.run(create_database(TEST_DATABASE_URL, tmp_path))
    try:
        upgrade(url, "0015")
        asyncio.run(_seed(url))
        upgrade(url)
        rules = asyncio.run(_read(url))
    finally:
        asyncio.run(drop_database(TEST_DATABASE_URL, url))
    assert rules == {
        "src_1": ("EverQuote", "everquote"),
        "src_2": ("everquote (duplicate src_2)", "everquote (duplicate src_2)"),
        "src_3": ("QuoteWizard", "quotewizard"),
        "src_4": ("EVERQUOTE", "everquote"),
    }
