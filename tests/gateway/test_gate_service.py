"""The gate as the gateway runs it: the ledger's status and the account's settings decide."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from starlette.testclient import TestClient

from gateway import accounts, gate
from gateway.db import SessionFactory, transaction
from gateway.models import Account

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PHONE = "+14155550123"  # San Francisco: America/Los_Angeles
NOON_PACIFIC = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)  # Wednesday 12:00 PST
NIGHT_PACIFIC = datetime(2026, 11, 19, 6, 0, tzinfo=UTC)  # Wednesday 22:00 PST


async def _account(sessions: SessionFactory, account_id: str) -> Account:
    async with sessions() as session:
        account = await session.get(Account, account_id)
    assert account is not None
    return account


def _drip_play(client: TestClient, secret: str) -> str:
    """A play for PHONE of the example drip, whose playbook says `email_after_opt_out: true`."""
    headers = {"Authorization": secret}
    for name in ("insurance-xdate", "insurance-quote-drip"):
        text = (EXAMPLES / f"{name}.yaml").read_text()
        text = text.replace("email_after_opt_out: false", "email_after_opt_out: true")
        put = client.put(
            f"/v1/playbooks/{name}",
            content=text,
            headers={**headers, "Content-Type": "application/yaml"},
        )
        assert put.status_code == 201, put.text
    created = client.post(
        "/v1/plays",
        headers=headers,
        json={
            "playbook_id": "insurance-quote-drip",
            "lead": {"phone": PHONE, "first_name": "Ann", "email": "ann@example.com"},
            "settings": {"partner_name": "Acme Insurance", "agency_phone": "(415) 555-0100"},
        },
    )
    assert created.status_code == 201, created.text
    play_id: str = created.json()["id"]
    return play_id


async def test_api_opt_out_blocks_next_sms_and_call(
    client: TestClient, issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    account = await _account(sessions, issued_key.key.account_id)
    async with sessions() as session:
        before = await gate.decide(
            session, account, PHONE, channel="sms", purpose="initiated", at=NOON_PACIFIC
        )
    assert before.action == "allow"
    assert before.zones == ("America/Los_Angeles",)
    assert before.validity_period == 8 * 3600  # until 20:00 local

    play_id = _drip_play(client, issued_key.secret)
    response = client.post(
        "/v1/opt-outs", headers={"Authorization": issued_key.secret}, json={"phone": PHONE}
    )
    assert response.status_code == 201

    async with sessions() as session:
        for channel in ("sms", "call"):
            for purpose in ("initiated", "reply"):
                decision = await gate.decide(
                    session, account, PHONE, channel=channel, purpose=purpose, at=NOON_PACIFIC
                )
                assert (decision.action, decision.reason) == ("block", "opted_out")
        email = await gate.decide(
            session, account, PHONE, channel="email", purpose="initiated", at=NOON_PACIFIC
        )
        assert email.action == "block"
        # A play whose playbook keeps emailing after a STOP.
        email_continues = await gate.decide(
            session,
            account,
            PHONE,
            channel="email",
            purpose="initiated",
            play=play_id,
            at=NOON_PACIFIC,
        )
        assert email_continues.action == "allow"
        confirmation = await gate.decide(
            session, account, PHONE, channel="sms", purpose="confirmation", at=NIGHT_PACIFIC
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
        night = await gate.decide(
            session, account, PHONE, channel="call", purpose="initiated", at=NIGHT_PACIFIC
        )
    assert night.action == "defer" and night.reason == "quiet_hours"
    assert night.until == datetime(2026, 11, 19, 18, 0, tzinfo=UTC)  # 10:00 PST Thursday
