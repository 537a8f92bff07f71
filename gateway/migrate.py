"""Applying Alembic migrations from code (the CLI, `gateway run`, and the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


# "heads": branches made side by side (merged later by a merge revision) all apply.
def upgrade(database_url: str, revision: str = "heads") -> None:
    """Bring the database to `revision` (blocking; call from sync code or a thread)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "heads") -> None:
    """`upgrade` from async code: runs in a worker thread with its own loop."""
    await asyncio.to_thread(upgrade, database_url, revision)
