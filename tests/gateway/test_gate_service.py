"""The gate as the gateway runs it: the ledger's status and the account's settings decide."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete
from sqlmodel import col
from starlette.testclient import TestClient

from gateway import accounts, gate, optouts
from gateway.db import SessionFactory, transaction
from gateway.lead_number import NUMBERS_ORDER
from gateway.models import Account, Channel, LedgerEvent, LedgerSource, SenderNumber

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


async def test_the_accounts_rows_are_read_beside_the_facts(
    issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    """`Also.rows`: the account's numbers come back in their order beside the gate's facts,
    never another account's; an account with none still gets its facts (the outer join)."""
    account = await _account(sessions, issued_key.key.account_id)
    async with transaction(sessions) as session:
        other, _ = await accounts.create_account(session, "Other Lending")
        for i, owner in enumerate((account.id, other.id, account.id)):
            session.add(SenderNumber(id=f"num_{2 - i}", account_id=owner, number=f"+1415555010{i}"))
        await optouts.record(
            session, account_id=account.id, phone=PHONE, event=LedgerEvent.OPT_OUT,
            channel=Channel.API, source=LedgerSource.API,
        )  # fmt: skip
    also = gate.Also(key="test.numbers", columns=(), params={}, rows=NUMBERS_ORDER)
    async with sessions() as session:
        mine = await gate.gather(
            session, account, PHONE, channel="sms", purpose="initiated", at=NOON_PACIFIC, also=also
        )
        assert [n.number for n in mine.rows] == ["+14155550102", "+14155550100"]  # by id
        assert mine.request.opted_out
        none_left = await _account(sessions, other.id)
    async with transaction(sessions) as session:
        await session.exec(delete(SenderNumber).where(col(SenderNumber.account_id) == other.id))
    async with sessions() as session:
        theirs = await gate.gather(
            session, none_left, PHONE, channel="sms", purpose="initiated", at=NOON_PACIFIC,
            also=also,
        )  # fmt: skip
    assert theirs.rows == ()
    assert not theirs.request.opted_out  # the opt-out is the first account's
