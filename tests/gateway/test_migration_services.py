"""Migration 0013 on existing data: a Messaging Service two accounts registered goes to the one
that registered it first; the other keeps its number, loses the service SID (and it's logged)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.db import create_engine
from gateway.migrate import upgrade
from tests.conftest import TEST_DATABASE_URL
from tests.support.databases import create_database, drop_database

SERVICE = "MG" + "a" * 32
ALONE = "MG" + "b" * 32
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _seed(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for account in ("acc_first", "acc_later"):
                await connection.execute(
                    text("INSERT INTO accounts (id, name, created_at) VALUES (:id, :id, :at)"),
                    {"id": account, "at": T0},
                )
            rows = [
                ("num_1", "acc_later", "+14155550101", SERVICE, T0 + timedelta(hours=2)),
                ("num_2", "acc_first", "+14155550102", SERVICE, T0 + timedelta(hours=1)),
                ("num_3", "acc_first", "+14155550103", SERVICE, T0 + timedelta(hours=3)),
                ("num_4", "acc_later", "+14155550104", ALONE, T0 + timedelta(hours=4)),
                ("num_5", "acc_later", "+14155550105", None, T0),
            ]
            for number_id, account, number, service, at in rows:
                await connection.execute(
                    text(
                        "INSERT INTO sender_numbers (id, account_id, number, kind, "
                        "messaging_service_sid, created_at) VALUES (:id, :account, :number, "
                        "'long_code', :service, :at)"
                    ),
                    {
                        "id": number_id,
                        "account": account,
                        "number": number,
                        "service": service,
                        "at": at,
                    },
                )
    finally:
        await engine.dispose()


async def _read(url: str) -> tuple[set[tuple[str, str]], dict[str, str | None]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            services = await connection.execute(
                text("SELECT sid, account_id FROM messaging_services")
            )
            numbers = await connection.execute(
                text("SELECT id, messaging_service_sid FROM sender_numbers")
            )
            return {(r[0], r[1]) for r in services}, {r[0]: r[1] for r in numbers}
    finally:
        await engine.dispose()


def test_existing_services_go_to_their_first_account(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = asyncio.run(create_database(TEST_DATABASE_URL, tmp_path))
    try:
        upgrade(url, "0011")
        asyncio.run(_seed(url))
        upgrade(url)
        services, numbers = asyncio.run(_read(url))
    finally:
        asyncio.run(drop_database(TEST_DATABASE_URL, url))
    assert services == {(SERVICE, "acc_first"), (ALONE, "acc_later")}
    assert numbers == {
        "num_1": None,  # the later account's number keeps its number, not the service
        "num_2": SERVICE,
        "num_3": SERVICE,
        "num_4": ALONE,
        "num_5": None,
    }
    assert "removed from number num_1" in caplog.text
