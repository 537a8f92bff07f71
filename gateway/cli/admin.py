"""`gateway migrate`, `accounts`, `keys`, `webhooks` and `sandbox`: the operator's records."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import accounts, migrate
from gateway.cli.common import account_named, with_session
from gateway.models import ApiKey, KeyScope
from gateway.settings import Settings
from gateway.webhooks.addresses import set_private_allowed


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def cmd_accounts_create(settings: Settings, args: argparse.Namespace) -> int:
    account, issued = asyncio.run(
        with_session(settings, lambda s: accounts.create_account(s, args.name))
    )
    print(f"account {account.id} {account.name}")
    print(f"api key {issued.secret}")
    print("store the key now: it is shown only once", file=sys.stderr)
    return 0


def cmd_accounts_list(settings: Settings, args: argparse.Namespace) -> int:
    for account in asyncio.run(with_session(settings, accounts.list_accounts)):
        print(f"{account.id}\t{account.created_at.isoformat()}\t{account.name}")
    return 0


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> accounts.IssuedKey:
        await account_named(session, args.account)
        return await accounts.create_key(session, args.account, args.name, KeyScope(args.scope))

    issued = asyncio.run(with_session(settings, work))
    print(f"key {issued.key.id} {issued.secret}")
    print("store the key now: it is shown only once", file=sys.stderr)
    return 0


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> list[ApiKey]:
        await account_named(session, args.account)  # "no keys" and "no such account" differ
        return await accounts.list_keys(session, args.account)

    for key in asyncio.run(with_session(settings, work)):
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        used = key.last_used_at.isoformat() if key.last_used_at else "never used"
        print(f"{key.id}\t{key.prefix}...\t{key.name}\t{key.scope}\t{state}\t{used}")
    return 0


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    key = asyncio.run(with_session(settings, lambda s: accounts.revoke_key(s, args.key_id)))
    if key is None:
        print(f"error: no key {args.key_id}", file=sys.stderr)
        return 1
    print(f"key {key.id} revoked")
    return 0


def cmd_webhooks_private(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> None:
        await account_named(session, args.account)
        await set_private_allowed(session, args.account, not args.off)

    asyncio.run(with_session(settings, work))
    state = "refused" if args.off else "allowed"
    print(f"private and loopback webhook addresses {state} for {args.account}")
    return 0


def cmd_sandbox_credentials(settings: Settings, args: argparse.Namespace) -> int:
    """The built-in sandbox's credentials for this DATA_DIR (curl -u SID:TOKEN)."""
    if not settings.uses_sandbox:
        print("error: Twilio credentials are configured; there is no sandbox", file=sys.stderr)
        return 1
    creds = settings.sandbox_credentials
    if args.curl:
        print(f"{creds.account_sid}:{creds.auth_token}")
    else:
        print(f"account SID {creds.account_sid}")
        print(f"auth token  {creds.auth_token}")
    return 0
