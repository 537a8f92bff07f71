"""Fixtures for webhook tests: a customer's webhook endpoint (tests.support.webhook_endpoint)
running for each test, an account allowed to use it, plays to record activities on, and a worker
that runs until the deliveries settle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from arq import create_pool
from sqlmodel import col, select
from starlette.testclient import TestClient

from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.engine.records import record_activity
from gateway.ids import new_id
from gateway.leads import LeadCreate, upsert_lead
from gateway.models import (
    Activity,
    ActivityType,
    DeliveryStatus,
    Play,
    PlayState,
    WebhookDelivery,
)
from gateway.settings import Settings
from gateway.work import bind
from gateway.worker import build_worker, redis_settings, stop_worker
from tests.conftest import RunWorker
from tests.support.tenants import Tenant, new_tenant
from tests.support.webhook_endpoint import WebhookEndpoint, WebhookEndpointServer


@pytest.fixture
def receiver() -> Iterator[WebhookEndpoint]:
    found = WebhookEndpoint()
    server = WebhookEndpointServer(found)
    server.start()
    found.server = server  # type: ignore[attr-defined]
    try:
        yield found
    finally:
        server.stop()


@pytest.fixture
async def tenant(sessions: SessionFactory) -> Tenant:
    return await new_tenant(sessions, "Acme Lending", private=True)


@pytest.fixture
async def other_tenant(sessions: SessionFactory) -> Tenant:
    return await new_tenant(sessions, "Other Insurance", private=True)


def subscribe(client: TestClient, tenant: Tenant, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/webhooks", headers=tenant.headers, json={"url": url, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


DEFAULT_PHONE = "+14155550123"
LEAD_IN = {
    "first_name": "Ann",
    "last_name": "Lee",
    "email": "ann@example.com",
    "additional_info": {"loan_amount": 350000, "source": {"campaign": "spring"}},
    "originators": [{"origin": "EverQuote", "key": "eq-123"}, {"origin": "CRM", "key": "c-9"}],
}


async def new_play(
    sessions: SessionFactory,
    account_id: str,
    phone: str = DEFAULT_PHONE,
    playbook_id: str = "hello",
    lead: dict[str, Any] | None = None,
) -> Play:
    if lead is None:
        lead = dict(LEAD_IN)
        if phone != DEFAULT_PHONE:  # originators name one lead each
            lead["originators"] = [{"origin": "EverQuote", "key": f"eq-{phone}"}]
    async with transaction(sessions) as session:
        found = await upsert_lead(
            session, account_id, LeadCreate.model_validate({"phone": phone, **lead})
        )
        play = Play(
            id=new_id("play"),
            account_id=account_id,
            lead_id=found.id,
            playbook_id=playbook_id,
            playbook_version=1,
            state=PlayState.RUNNING,
        )
        session.add(play)
    return play


async def record(
    sessions: SessionFactory, play: Play, *labels: str, kind: ActivityType = ActivityType.EVENT
) -> list[Activity]:
    """Record activities on `play`, in one transaction, the way the engine does."""
    async with transaction(sessions) as session:
        return [
            await record_activity(session, play, kind, label, f"note {label}") for label in labels
        ]


async def deliveries(sessions: SessionFactory, **where: Any) -> list[WebhookDelivery]:
    async with sessions() as session:
        query = select(WebhookDelivery).order_by(col(WebhookDelivery.activity_id))
        for name, value in where.items():
            query = query.where(getattr(WebhookDelivery, name) == value)
        return list((await session.exec(query)).all())


async def settle(run_worker: RunWorker, sessions: SessionFactory, rounds: int = 50) -> None:
    """Run burst workers until nothing is pending and due (each starts with the sweep)."""
    for _ in range(rounds):
        await run_worker()
        pending = await deliveries(sessions, status=DeliveryStatus.PENDING)
        if not [d for d in pending if d.next_attempt_at is None or d.next_attempt_at <= now()]:
            return
    raise AssertionError("deliveries did not settle")


@pytest.fixture
async def background_worker(
    settings: Settings, sessions: SessionFactory
) -> AsyncIterator[SessionFactory]:
    """A long-running worker (not burst) in this loop, for tests about timing; yields sessions
    whose commits hand their staged jobs to it (as the engine's do), not to its next sweep."""
    assert settings.redis_url is not None
    worker = build_worker(settings, settings.redis_url, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    redis = await create_pool(redis_settings(settings.redis_url))
    try:
        yield bind(sessions, redis)
    finally:
        await redis.aclose()
        await stop_worker(worker, task, grace=0)
