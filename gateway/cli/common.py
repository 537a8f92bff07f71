"""What the `gateway` commands share: a database session, the account they name, one-line errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import migrate
from gateway.cli import CommandError
from gateway.db import create_engine, session_factory, transaction
from gateway.models import Account
from gateway.settings import Settings

T = TypeVar("T")


async def with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    await migrate_embedded(settings)
    engine = create_engine(settings.database)
    try:
        async with transaction(session_factory(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


async def migrate_embedded(settings: Settings) -> None:
    if settings.embedded_database:
        # A fresh machine has no schema yet; the embedded database migrates itself.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await migrate.upgrade_async(settings.database)


async def account_named(session: AsyncSession, account_id: str) -> Account:
    """The account, or the command stops with "no account ID" (and exit 1)."""
    account = await session.get(Account, account_id)
    if account is None:
        raise CommandError(f"no account {account_id}")
    return account
