"""Test databases: a fresh, migrated database per test session on SQLite or PostgreSQL."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

import gateway.models  # noqa: F401 - every table on the metadata
from gateway.settings import normalize_database_url


async def create_database(server_url: str | None, directory: Path) -> str:
    """A new empty database: a SQLite file in `directory`, or a new database on the server."""
    name = f"gw_test_{secrets.token_hex(6)}"
    if server_url is None:
        return f"sqlite+aiosqlite:///{directory / (name + '.db')}"
    url = make_url(normalize_database_url(server_url))
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str | None, database_url: str) -> None:
    if server_url is None:
        return  # the file lives in pytest's temporary directory
    name = make_url(database_url).database
    admin = create_async_engine(normalize_database_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def copy_sqlite(template_url: str, directory: Path) -> str:
    """A copy of a migrated SQLite database file: a fresh database in a millisecond."""
    source = Path(make_url(template_url).database or "")
    target = directory / "test.db"
    shutil.copyfile(source, target)
    return f"sqlite+aiosqlite:///{target}"


async def empty_tables(engine: AsyncEngine) -> None:
    """Empty every table of a PostgreSQL database (TRUNCATE skips the ledger's row triggers)."""
    tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
