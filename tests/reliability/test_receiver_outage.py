"""The customer's webhook receiver is down for 10 minutes of simulated time while real plays
run (texted conversations through the sandbox), then comes back: every activity arrives, with
the id it was recorded with, first arrivals in each play's order.

Unlike tests/webhooks/test_reliability.py (activities recorded directly, a shortened retry
schedule, real time), this keeps the production retry schedule and circuit breaker and moves
the shared virtual clock; every wait goes through the sweep (MAX_DEFER_SECONDS = 0) so no job
waits on the wall clock.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlmodel import col, select

from gateway.clock import now
from gateway.db import transaction
from gateway.models import Activity, DeliveryStatus, WebhookDelivery
from gateway.webhooks.addresses import set_private_allowed
from gateway.work import kinds
from tests.reliability.support_callbacks import CONVERSATION, MORTGAGE, publish_mortgage, start
from tests.support.party_line import drive
from tests.support.stack import Stack
from tests.support.webhook_endpoint import WebhookEndpoint, WebhookEndpointServer
from twilio_sandbox import Reply

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

LEADS = 40 if os.environ.get("RELIABILITY_FULL") == "1" else 6
DOWN = timedelta(minutes=10)
STEP_SECONDS = 20.0  # virtual time between worker runs
MAX_ROUNDS = 120  # bound on the recovery: 40 virtual minutes


async def _owed(stack: Stack) -> list[WebhookDelivery]:
    async with stack.sessions() as session:
        query = select(WebhookDelivery).where(WebhookDelivery.status == DeliveryStatus.PENDING)
        return list((await session.exec(query)).all())


async def test_receiver_down_ten_minutes_then_back(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kinds, "MAX_DEFER_SECONDS", 0.0)
    receiver = WebhookEndpoint()
    server = WebhookEndpointServer(receiver)
    try:
        async with transaction(stack.sessions) as session:
            await set_private_allowed(session, stack.account_id, True)
        hook = await stack.api.post("/v1/webhooks", json={"url": receiver.url + "/hook"})
        assert hook.status_code == 201, hook.text
        await publish_mortgage(stack)
        went_down = now()
        phones = [f"+1415555{3000 + i:04d}" for i in range(LEADS)]
        for phone in phones:
            stack.sandbox.phones.script(phone, replies=[Reply(text) for text in CONVERSATION])
            await start(stack, phone, MORTGAGE)
        await drive(stack)  # every conversation to its outcome; every delivery fails
        while now() < went_down + DOWN:
            await stack.sandbox.advance(STEP_SECONDS)
            await stack.run_worker()
        assert receiver.received == []
        shown = (await stack.api.get(f"/v1/webhooks/{hook.json()['id']}")).json()
        assert shown["breaker"]["state"] == "open"
        assert await _owed(stack)

        server.start()
        for _ in range(MAX_ROUNDS):
            await stack.sandbox.advance(STEP_SECONDS)
            await stack.run_worker()
            if not await _owed(stack):
                break
    finally:
        server.stop()

    assert await _owed(stack) == []
    async with stack.sessions() as session:
        activities = (await session.exec(select(Activity).order_by(col(Activity.id)))).all()
        dead = (
            await session.exec(
                select(WebhookDelivery).where(WebhookDelivery.status != DeliveryStatus.DELIVERED)
            )
        ).all()
    assert dead == []
    assert {a.label for a in activities} >= {"started", "interested", "textback_requested"}
    bodies = receiver.bodies()
    assert {b["id"] for b in bodies} == {a.public_id for a in activities}
    plays = {a.play_id for a in activities}
    assert len(plays) == LEADS
    for play_id in plays:
        expected = [a.public_id for a in activities if a.play_id == play_id]
        arrived = [b["id"] for b in bodies if b["activity_play_id"] == play_id]
        # First arrivals in the play's order; a repeat is only ever of the same id.
        assert list(dict.fromkeys(arrived)) == expected
