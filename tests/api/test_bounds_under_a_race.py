"""Bounded counts hold when requests race: each registration counts what the one before it
committed (an account's webhooks and numbers: `gateway.accounts.lock_account`; a lead's
originators: its row), so many at once never pass the bound together. On SQLite a transaction
holds the one write lock anyway; on PostgreSQL, without the account's lock, racing
registrations each counted the rows committed before any of them.

The whole stack on 127.0.0.1 (`tests.support.stack`), its requests sent at once."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlmodel import func, select

from gateway import leads
from gateway.api import numbers as numbers_api
from gateway.api import webhooks as webhooks_api
from gateway.db import transaction
from gateway.models import LeadOriginator
from gateway.webhooks.addresses import set_private_allowed
from tests.support.stack import LEAD, Stack

RACERS = 8


def outcome(answer: httpx.Response) -> tuple[int, str]:
    """A request's status, with its error's code if refused."""
    return answer.status_code, answer.json()["error"]["code"] if answer.is_error else ""


async def test_racing_webhook_registrations_stop_at_the_bound(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks_api, "MAX_WEBHOOKS", 3)
    async with transaction(stack.sessions) as session:
        await set_private_allowed(session, stack.account_id, True)  # hooks on 127.0.0.1

    async def register(n: int) -> tuple[int, str]:
        return outcome(
            await stack.api.post("/v1/webhooks", json={"url": f"http://127.0.0.1:9/h{n}"})
        )

    answers = await asyncio.gather(*(register(n) for n in range(RACERS)))
    assert sorted(answers) == [(201, "")] * 3 + [(409, "limit_reached")] * (RACERS - 3)
    listed = (await stack.api.get("/v1/webhooks")).json()["data"]
    assert len(listed) == 3


async def test_racing_number_registrations_stop_at_the_bound(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stack's account has its one number already: two more fit.
    monkeypatch.setattr(numbers_api, "MAX_NUMBERS", 3)
    numbers = [f"+1415555021{n}" for n in range(RACERS)]
    for number in numbers:
        stack.sandbox.add_number(number)

    async def register(number: str) -> tuple[int, str]:
        return outcome(await stack.api.post("/v1/numbers", json={"number": number}))

    answers = await asyncio.gather(*(register(number) for number in numbers))
    assert sorted(answers) == [(201, "")] * 2 + [(409, "limit_reached")] * (RACERS - 2)
    listed = (await stack.api.get("/v1/numbers")).json()["data"]
    assert len(listed) == 3


async def test_racing_requests_for_one_lead_stop_at_its_originators_bound(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No account lock here: the lead's upsert holds its row until the commit, so requests
    for one lead take turns, and each counts the originators the one before it added."""
    monkeypatch.setattr(leads, "MAX_LEAD_ORIGINATORS", 3)

    async def post(n: int) -> tuple[int, str]:
        originators = [{"origin": "EQ", "key": str(n)}]
        return outcome(
            await stack.api.post("/v1/leads", json={"phone": LEAD, "originators": originators})
        )

    answers = await asyncio.gather(*(post(n) for n in range(RACERS)))
    assert sorted(answers) == [(201, "")] * 3 + [(409, "limit_reached")] * (RACERS - 3)
    async with stack.sessions() as session:
        kept = (await session.exec(select(func.count()).select_from(LeadOriginator))).one()
    assert kept == 3
