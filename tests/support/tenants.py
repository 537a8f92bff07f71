"""An account as a test's tenant: its API key and ready-made headers."""

from __future__ import annotations

from dataclasses import dataclass

from gateway import accounts
from gateway.db import SessionFactory, transaction
from gateway.webhooks.addresses import set_private_allowed


@dataclass
class Tenant:
    """An account's key and ready-made headers."""

    key: accounts.IssuedKey

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key.secret}"}

    @property
    def account_id(self) -> str:
        return self.key.key.account_id


async def new_tenant(sessions: SessionFactory, name: str, private: bool = False) -> Tenant:
    """A new account with one key; `private`: the operator lets it reach webhook endpoints on
    127.0.0.1 (where the tests' endpoints listen)."""
    async with transaction(sessions) as session:
        _account, issued = await accounts.create_account(session, name)
        if private:
            await set_private_allowed(session, issued.key.account_id, True)
    return Tenant(issued)
