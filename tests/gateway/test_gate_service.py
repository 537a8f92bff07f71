"""The gate as the gateway runs it: the ledger's status and the account's settings decide."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.testclient import TestClient

from gateway import accounts, gate
from gateway.db import SessionFactory, transaction
from gateway.models import Account

PHONE = "+14155550123"  # San Francisco: America/Los_Angeles
NOON_PACIFIC = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)  # Wednesday 12:00 PST
NIGHT_PACIFIC = datetime(2026, 11, 19, 6, 0, tzinfo=UTC)  # Wednesday 22:00 PST


async def _account(sessions: SessionFactory, account_id: str) -> Account:
    async with sessions() as session:
        account = await session.get(Account, account_id)
    assert account is not None
    return account


async def test_api_opt_out_blocks_next_sms_and_call(
    client: TestClient, issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    account = await _account(sessions, issued_key.key.account_id)
    async with sessions() as session:
        before = await gate.check(
            session, account, channel="sms", purpose="initiated", phone=PHONE, at=NOON_PACIFIC
        )
    assert before.action == "allow"
    assert before.zones == ("America/Los_Angeles",)
    assert before.validity_period == 8 * 3600  # until 20:00 local

    response = client.post(
        "/v1/opt-outs", headers={"Authorization": issued_key.secret}, json={"phone": PHONE}
    )
    assert response.status_code == 201

    async with sessions() as session:
        for channel in ("sms", "call"):
            for purpose in ("initiated", "reply"):
                decision = await gate.check(
                    session, account, channel=channel, purpose=purpose, phone=PHONE, at=NOON_PACIFIC
                )
                assert (decision.action, decision.reason) == ("block", "opted_out")
        email = await gate.check(
            session, account, channel="email", purpose="initiated", phone=PHONE, at=NOON_PACIFIC
        )
        assert email.action == "block"
        email_continues = await gate.check(
            session,
            account,
            channel="email",
            purpose="initiated",
            phone=PHONE,
            at=NOON_PACIFIC,
            email_continues_after_opt_out=True,
        )
        assert email_continues.action == "allow"
        confirmation = await gate.check(
            session, account, channel="sms", purpose="confirmation", phone=PHONE, at=NIGHT_PACIFIC
        )
        assert confirmation.action == "allow"


async def test_quiet_hours_defer_to_account_window(
    issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    async with transaction(sessions) as session:
        account = await session.get(Account, issued_key.key.account_id)
        assert account is not None
        account.compliance = {"window_start": "10:00", "window_end": "18:00"}
        session.add(account)
    account = await _account(sessions, issued_key.key.account_id)
    async with sessions() as session:
        night = await gate.check(
            session, account, channel="call", purpose="initiated", phone=PHONE, at=NIGHT_PACIFIC
        )
    assert night.action == "defer" and night.reason == "quiet_hours"
    assert night.until == datetime(2026, 11, 19, 18, 0, tzinfo=UTC)  # 10:00 PST Thursday
