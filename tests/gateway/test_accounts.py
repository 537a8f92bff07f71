"""API keys: shown once, stored hashed with a visible prefix, revocable."""

from __future__ import annotations

from sqlmodel import select

from gateway import accounts
from gateway.db import SessionFactory, transaction
from gateway.models import ApiKey


async def test_key_is_stored_as_hash_with_prefix(sessions: SessionFactory) -> None:
    async with transaction(sessions) as session:
        account, issued = await accounts.create_account(session, "Acme")
    assert issued.secret.startswith("gw_") and len(issued.secret) > 30
    async with sessions() as session:
        stored = (await session.exec(select(ApiKey))).one()
    assert stored.key_hash == accounts.hash_key(issued.secret)
    assert issued.secret not in (stored.key_hash, stored.prefix)
    assert issued.secret.startswith(stored.prefix) and len(stored.prefix) == 11
    assert stored.account_id == account.id


async def test_authenticate_and_revoke(sessions: SessionFactory) -> None:
    async with transaction(sessions) as session:
        account, issued = await accounts.create_account(session, "Acme")
        second = await accounts.create_key(session, account.id, "crm")
    async with transaction(sessions) as session:
        found = await accounts.authenticate(session, issued.secret)
        assert found is not None and found[0].id == account.id
        assert await accounts.authenticate(session, issued.secret + "x") is None
    async with transaction(sessions) as session:
        revoked = await accounts.revoke_key(session, issued.key.id)
        assert revoked is not None and revoked.revoked_at is not None
    async with transaction(sessions) as session:
        assert await accounts.authenticate(session, issued.secret) is None
        assert await accounts.authenticate(session, second.secret) is not None


async def test_revoke_is_scoped_by_account(sessions: SessionFactory) -> None:
    async with transaction(sessions) as session:
        _a, key_a = await accounts.create_account(session, "A")
        b, _key_b = await accounts.create_account(session, "B")
    async with transaction(sessions) as session:
        assert await accounts.revoke_key(session, key_a.key.id, account_id=b.id) is None
    async with transaction(sessions) as session:
        assert await accounts.authenticate(session, key_a.secret) is not None
