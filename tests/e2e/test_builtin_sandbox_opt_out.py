"""The built-in sandbox (what `gateway run` serves under /sandbox without Twilio credentials)
follows the account's `twilio_answers_default_keywords`: once an account says Twilio's default
opt-out handling is off, the sandbox stops answering STOP on its numbers (those it has and those
it registers later), so a lead who texts STOP gets exactly one confirmation, the gateway's.

The whole stack on 127.0.0.1 as in tests/support/stack.py, except that the sandbox is the one
the gateway serves itself, reached only over HTTP: its control API with the credentials the
gateway made for it, and the gateway's API with the account's key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import accounts
from gateway.app import _register_numbers, create_app
from gateway.db import SessionFactory, transaction
from gateway.ids import new_id
from gateway.models import Account, SenderNumber
from gateway.settings import SANDBOX_PATH, Settings
from tests.conftest import RunWorker
from tests.support.servers import serve
from twilio_sandbox import Sandbox
from twilio_sandbox.messaging import KEYWORD_REPLIES

LEAD = "+14155550123"
OUR_NUMBER = "+14155550100"
HANDLING_OFF = {"compliance": {"twilio_answers_default_keywords": False}}


@dataclass
class BuiltIn:
    api: httpx.AsyncClient  # the gateway, with the account's key
    control: httpx.AsyncClient  # the built-in sandbox's control API
    run_worker: RunWorker

    async def register(self, number: str) -> None:
        created = await self.api.post("/v1/numbers", json={"number": number})
        assert created.status_code == 201, created.text

    async def turn_twilio_handling_off(self) -> None:
        patched = await self.api.patch("/v1/account", json=HANDLING_OFF)
        assert patched.status_code == 200, patched.text
        assert patched.json()["compliance"]["twilio_answers_default_keywords"] is False

    async def conversation(self) -> list[dict[str, Any]]:
        answer = await self.control.get(f"/phones/{LEAD}/messages")
        assert answer.status_code == 200, answer.text
        messages: list[dict[str, Any]] = answer.json()
        return messages

    async def settle(self) -> None:
        assert (await self.control.post("/settle", json={})).status_code == 200

    async def text(self, body: str) -> list[tuple[str, str]]:
        """The lead texts `body` to our number; every answer it gets as (direction, body)."""
        before = len(await self.conversation())
        sent = await self.control.post("/sms", json={"from": LEAD, "to": OUR_NUMBER, "body": body})
        assert sent.status_code == 200, sent.text
        await self.settle()  # the text reaches the gateway's webhook (and Twilio answers, if on)
        await self.run_worker()  # the gateway sends what it queued in answer
        await self.settle()  # and the sandbox delivers it
        after = (await self.conversation())[before:]
        assert [m["body"] for m in after if m["from"] == LEAD] == [body]
        assert all(m["status"] == "delivered" for m in after if m["to"] == LEAD)
        return [(m["direction"], m["body"]) for m in after if m["to"] == LEAD]


@pytest.fixture
async def builtin(
    settings: Settings, engine: AsyncEngine, sessions: SessionFactory, run_worker: RunWorker
) -> AsyncIterator[BuiltIn]:
    # Rate limits wait by the wall clock; nothing here is about them.
    settings.sms_rate_limits = False
    assert settings.uses_sandbox and settings.twilio_api_url is None  # the gateway serves it
    async with serve(create_app(settings)) as url:
        settings.public_base_url = url  # read late by the sandbox's callback fence and sends
        async with transaction(sessions) as session:
            _account, key = await accounts.create_account(session, "Acme Lending")
        async with (
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {key.secret}"}, timeout=30
            ) as api,
            httpx.AsyncClient(
                base_url=f"{url}{SANDBOX_PATH}/_sandbox",
                auth=(settings.twilio_sid, settings.twilio_token),
                timeout=30,
            ) as control,
        ):
            yield BuiltIn(api, control, run_worker)


def _gateways_confirmation(answers: list[tuple[str, str]]) -> None:
    [(direction, body)] = answers
    assert direction == "outbound-api"  # sent by the gateway through the REST API
    assert "Acme Lending: you are unsubscribed" in body


async def test_by_default_the_sandbox_answers_as_twilio_does(builtin: BuiltIn) -> None:
    await builtin.register(OUR_NUMBER)
    assert await builtin.text("STOP") == [("outbound-reply", KEYWORD_REPLIES["STOP"])]


async def test_turning_twilio_handling_off_leaves_the_gateways_confirmation_alone(
    builtin: BuiltIn,
) -> None:
    await builtin.register(OUR_NUMBER)
    await builtin.turn_twilio_handling_off()

    _gateways_confirmation(await builtin.text("STOP"))
    # No STOP list in the sandbox either: the gateway's resubscribed answer to START is not
    # refused (21610) and is the only one.
    [(direction, body)] = await builtin.text("START")
    assert direction == "outbound-api" and "Acme Lending: you are resubscribed" in body

    # Turned back on: Twilio's answer again, and none from the gateway.
    patched = await builtin.api.patch(
        "/v1/account", json={"compliance": {"twilio_answers_default_keywords": True}}
    )
    assert patched.status_code == 200, patched.text
    assert await builtin.text("STOP") == [("outbound-reply", KEYWORD_REPLIES["STOP"])]


async def test_a_number_registered_after_the_setting_is_off_follows_it(builtin: BuiltIn) -> None:
    await builtin.turn_twilio_handling_off()
    await builtin.register(OUR_NUMBER)

    _gateways_confirmation(await builtin.text("STOP"))


async def test_at_start_up_each_number_follows_its_accounts_setting(
    settings: Settings, sessions: SessionFactory
) -> None:
    """What the gateway's start-up tells its sandbox (the sandbox's own state may be new or
    lost): a number of an account with Twilio's handling off gets both switches off."""
    async with transaction(sessions) as session:
        off, _ = await accounts.create_account(session, "Off Lending")
        on, _ = await accounts.create_account(session, "On Lending")
        account = await session.get(Account, off.id)
        assert account is not None
        account.compliance = HANDLING_OFF["compliance"]
        session.add(account)
        session.add(SenderNumber(id=new_id("num"), account_id=off.id, number=OUR_NUMBER))
        session.add(SenderNumber(id=new_id("num"), account_id=on.id, number="+14155550199"))
    async with Sandbox(settings.twilio_sid, settings.twilio_token) as sandbox:
        await _register_numbers(sandbox, sessions, "http://127.0.0.1:8000")
        assert sandbox.answers_keywords(OUR_NUMBER) is False
        assert sandbox.filters_stop(OUR_NUMBER) is False
        assert sandbox.answers_keywords("+14155550199") is True
        assert sandbox.filters_stop("+14155550199") is True
