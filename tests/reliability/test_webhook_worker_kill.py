"""Drill: `kill -9` the worker while it delivers a backlog of webhooks in batches, and start it
again each time. Every activity must reach the endpoint, each play's in order, and every
delivery must end `delivered`. Delivery is at least once: an event may arrive twice only where
a kill came between its request and the record of the answer, so the repeats are at most what
a run holds unrecorded at each kill (`delivery.RECORDING_WINDOW` times `policy.MAX_IN_FLIGHT`),
always with the same event id.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from sqlmodel import col, select

from gateway import webhook_policy as policy
from gateway.db import transaction
from gateway.engine.records import record_activity
from gateway.ids import new_id
from gateway.models import (
    Account,
    ActivityType,
    DeliveryStatus,
    Lead,
    Play,
    PlayState,
    WebhookDelivery,
)
from gateway.webhooks import delivery
from gateway.webhooks.addresses import set_private_allowed
from tests.reliability.drill import FULL, Drill, lead_phones, wait_for
from tests.support.webhook_endpoint import WebhookEndpoint, WebhookEndpointServer

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

PLAYS = 500 if FULL else 100
PER_PLAY = 3
KILLS = 5 if FULL else 2
DEADLINE_SECONDS = 600 if FULL else 150
LABELS = ("started", "interested", "completed")


async def test_worker_killed_mid_batch_loses_no_webhook_delivery(drill: Drill) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    endpoint = WebhookEndpoint()
    endpoint.delays["/hook"] = 0.02  # requests are in flight when a kill lands
    server = WebhookEndpointServer(endpoint)
    server.start()
    try:
        async with transaction(drill.sessions) as session:
            account = (await session.exec(select(Account))).one()
            await set_private_allowed(session, account.id, True)
        created = await drill.api.post("/v1/webhooks", json={"url": f"{endpoint.url}/hook"})
        assert created.status_code == 201, created.text
        expected = await _record(drill, account.id)
        drill.worker.start()  # its first sweep finds the backlog
        total = PLAYS * PER_PLAY
        moments = sorted(drill.rng.sample(range(total // 10, total * 8 // 10), KILLS))
        for at in moments:

            async def reached(at: int = at) -> bool:
                return len(endpoint.received) >= at

            await wait_for(
                f"webhook request number {at}",
                reached,
                deadline,
                lambda: f"{len(endpoint.received)} so far\n{drill.worker.log_tail()}",
            )
            await asyncio.sleep(drill.rng.uniform(0.0, 0.05))
            drill.worker.kill()
            drill.worker.start()  # the process manager's part
        last_kill = time.monotonic()

        async def settled() -> bool:
            return not await _pending(drill)

        await wait_for(
            "every delivery settled",
            settled,
            deadline,
            lambda: f"{len(endpoint.received)} requests\n{drill.worker.log_tail()}",
        )
        settled_after = time.monotonic() - last_kill
    finally:
        server.stop()

    async with drill.sessions() as session:
        rows = (await session.exec(select(WebhookDelivery))).all()
    assert Counter(d.status for d in rows) == {DeliveryStatus.DELIVERED: total}, drill.seed
    arrivals = Counter(body["id"] for body in endpoint.bodies())
    assert set(arrivals) == {event for events in expected.values() for event in events}
    repeats = sum(n - 1 for n in arrivals.values())
    unrecorded = delivery.RECORDING_WINDOW * policy.MAX_IN_FLIGHT
    assert repeats <= KILLS * unrecorded, (repeats, drill.seed)
    for play_id, events in expected.items():
        firsts = [b["id"] for b in endpoint.bodies() if b["activity_play_id"] == play_id]
        assert list(dict.fromkeys(firsts)) == events, (play_id, drill.seed)
    assert drill.worker.kills == KILLS
    print(
        f"{total} deliveries, {KILLS} kills: {len(endpoint.received)} requests, {repeats} "
        f"repeated; all delivered {settled_after:.1f} s after the last kill"
    )


async def _record(drill: Drill, account_id: str) -> dict[str, list[str]]:
    """The backlog: PER_PLAY activities on each of PLAYS plays, written the engine's way (with
    their deliveries) and committed before the worker starts; each play's event ids in order."""
    expected: dict[str, list[str]] = {}
    async with transaction(drill.sessions) as session:
        for phone in lead_phones(PLAYS):
            lead = Lead(id=new_id("lead"), account_id=account_id, phone=phone)
            play = Play(
                id=new_id("play"),
                account_id=account_id,
                lead_id=lead.id,
                playbook_id="drill",
                playbook_version=1,
                state=PlayState.STOPPED,
            )
            session.add_all([lead, play])
            await session.flush()
            expected[play.id] = [
                (await record_activity(session, play, ActivityType.EVENT, label)).public_id
                for label in LABELS[:PER_PLAY]
            ]
    return expected


async def _pending(drill: Drill) -> int:
    async with drill.sessions() as session:
        query = select(WebhookDelivery.id).where(
            col(WebhookDelivery.status) == DeliveryStatus.PENDING
        )
        return len((await session.exec(query)).all())
