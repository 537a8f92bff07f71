"""Creating accounts and API keys, and turning a presented key into its account."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import serialized
from gateway.ids import new_id
from gateway.models import Account, ApiKey, KeyScope

KEY_PREFIX = "gw_"
VISIBLE_PREFIX_LEN = len(KEY_PREFIX) + 8


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: `secret` is shown once and never stored."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    # Keys carry 192 random bits, so one SHA-256 is enough; a slow KDF would only slow every call.
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_account(session: AsyncSession, name: str) -> tuple[Account, IssuedKey]:
    """A new account with its first API key."""
    account = Account(id=new_id("acct"), name=name)
    session.add(account)
    await session.flush()
    return account, await create_key(session, account.id)


async def create_key(
    session: AsyncSession,
    account_id: str,
    name: str = "default",
    scope: KeyScope = KeyScope.FULL,
) -> IssuedKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(24)
    key = ApiKey(
        id=new_id("key"),
        account_id=account_id,
        name=name,
        scope=scope,
        prefix=secret[:VISIBLE_PREFIX_LEN],
        key_hash=hash_key(secret),
    )
    session.add(key)
    await session.flush()
    return IssuedKey(key=key, secret=secret)


async def revoke_key(
    session: AsyncSession, key_id: str, account_id: str | None = None
) -> ApiKey | None:
    """Revoke a key (idempotent); scoped to `account_id` when given. None when no such key."""
    query = select(ApiKey).where(ApiKey.id == key_id)
    if account_id is not None:
        query = query.where(ApiKey.account_id == account_id)
    key = (await session.exec(query)).first()
    if key is not None and key.revoked_at is None:
        key.revoked_at = now()
        session.add(key)
        await session.flush()
    return key


async def authenticate(session: AsyncSession, secret: str) -> tuple[Account, ApiKey] | None:
    """The account and key for a presented secret; None when unknown or revoked."""
    row = (await session.exec(_BY_KEY, params={"key_hash": hash_key(secret)})).first()
    return None if row is None else (row[0], row[1])


# `authenticate`'s statement (every API request asks it), built once.
_BY_KEY = (
    select(Account, ApiKey)
    .join(ApiKey, col(ApiKey.account_id) == Account.id)
    .where(ApiKey.key_hash == bindparam("key_hash"), col(ApiKey.revoked_at).is_(None))
)


async def list_accounts(session: AsyncSession) -> list[Account]:
    return list((await session.exec(select(Account).order_by(col(Account.created_at)))).all())


async def list_keys(session: AsyncSession, account_id: str) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.account_id == account_id).order_by(col(ApiKey.created_at))
    return list((await session.exec(query)).all())


async def mark_key_used(session: AsyncSession, key_id: str) -> None:
    key = await session.get(ApiKey, key_id)
    if key is not None:
        key.last_used_at = now()
        session.add(key)


async def lock_account(session: AsyncSession, account_id: str) -> None:
    """Hold the account's row until the transaction ends, so that transactions that count the
    account's rows of a kind before adding one (its webhooks, its numbers) take turns, and the
    bound holds however many requests race: each counts what the one before it committed. On
    PostgreSQL a FOR UPDATE; on SQLite a `transaction()` holds the one write lock from its
    BEGIN already."""
    if not serialized(session):
        await session.exec(_LOCK, params={"account_id": account_id})


# `lock_account`'s statement, built once.
_LOCK = select(Account.id).where(col(Account.id) == bindparam("account_id")).with_for_update()
