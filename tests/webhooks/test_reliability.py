"""Reliability against a real receiver: down then back, 500 forever (simulated time: the ~24 h
schedule runs in a second), the circuit breaker, a slow endpoint next to a fast one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from gateway import webhook_policy as policy
from gateway.clock import set_clock
from gateway.db import SessionFactory
from gateway.models import DeliveryStatus, WebhookSubscription
from gateway.work import kinds
from tests.conftest import RunWorker
from tests.support.tenants import Tenant
from tests.support.webhook_endpoint import WebhookEndpoint

from .conftest import deliveries, new_play, record, subscribe


async def until(condition: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


class FakeClock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    set_clock(fake)
    try:
        yield fake
    finally:
        set_clock(None)


async def test_receiver_down_then_back_gets_everything_in_order(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policy, "RETRY_SCHEDULE", (0.05,) * 11)
    monkeypatch.setattr(policy, "BREAKER_PROBE_EVERY", timedelta(seconds=0.2))
    hook = subscribe(client, tenant, receiver.url + "/hook")
    receiver.server.stop()  # type: ignore[attr-defined]
    plays = [await new_play(sessions, tenant.account_id, f"+1415555{i:04d}") for i in range(5)]
    expected: dict[str, list[str]] = {}
    for play in plays:
        recorded = await record(sessions, play, "started", "interested", "qualified", "completed")
        expected[play.id] = [a.public_id for a in recorded]
    await run_worker()  # connection refused: retries, then the breaker opens
    shown = client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.headers).json()
    assert shown["breaker"]["state"] == "open"
    assert receiver.received == []

    receiver.server.start()  # type: ignore[attr-defined]
    for _ in range(100):
        await asyncio.sleep(0.2)
        await run_worker()  # the sweep sends the probe; its success drains the rest
        owed = await deliveries(sessions, status=DeliveryStatus.PENDING)
        if not owed:
            break
    assert not await deliveries(sessions, status=DeliveryStatus.PENDING)
    for play in plays:
        ids = [b["id"] for b in receiver.bodies() if b["activity_play_id"] == play.id]
        # Every activity arrived, first arrivals in the play's order, repeats only of the same id.
        assert list(dict.fromkeys(ids)) == expected[play.id]
    assert len({b["id"] for b in receiver.bodies()}) == 20
    shown = client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.headers).json()
    assert shown["breaker"]["state"] == "closed"


async def test_500_forever_is_dead_lettered_after_the_schedule_and_the_breaker_recovers(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
) -> None:
    monkeypatch.setattr(kinds, "MAX_DEFER_SECONDS", 0.0)  # every wait goes through the sweep
    receiver.answer = lambda _r: 500
    hook = subscribe(client, tenant, receiver.url + "/hook")
    play = await new_play(sessions, tenant.account_id)
    [activity] = await record(sessions, play, "started")
    started = clock.at
    opened_after: int | None = None
    for _ in range(40):
        await run_worker()
        [delivery] = await deliveries(sessions)
        async with sessions() as session:
            subscription = await session.get(WebhookSubscription, hook["id"])
        assert subscription is not None
        if subscription.breaker_probe_at is not None and opened_after is None:
            opened_after = len(receiver.received)
        if delivery.status != DeliveryStatus.PENDING:
            break
        assert delivery.next_attempt_at is not None
        clock.at = max(delivery.next_attempt_at, subscription.breaker_probe_at or clock.at)
    assert delivery.status == DeliveryStatus.DEAD
    tries = len(policy.RETRY_SCHEDULE) + 1
    assert delivery.attempts == tries == len(receiver.received)
    assert {r.json["id"] for r in receiver.received} == {activity.public_id}
    elapsed = (clock.at - started).total_seconds()
    total = sum(policy.RETRY_SCHEDULE)
    assert total * (1 - policy.JITTER) <= elapsed <= total * (1 + policy.JITTER) + 600
    assert 20 * 3600 < elapsed < 30 * 3600  # "about 24 hours"
    assert opened_after == policy.BREAKER_THRESHOLD
    listed = client.get(
        f"/v1/webhooks/{hook['id']}/deliveries?status=dead", headers=tenant.headers
    ).json()["data"]
    assert listed[0]["last_status_code"] == 500 and "retries exhausted" in listed[0]["last_error"]
    shown = client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.headers).json()
    assert shown["breaker"]["state"] == "open"

    # Open breaker: a new activity waits for the probe instead of going out now.
    other = await new_play(sessions, tenant.account_id, "+14155550999")
    await record(sessions, other, "started")
    await run_worker()
    assert len(receiver.received) == tries
    # The endpoint recovers; the next probe succeeds and closes the breaker by itself.
    receiver.answer = lambda _r: 200
    clock.at += policy.BREAKER_PROBE_EVERY + timedelta(seconds=1)
    await run_worker()
    assert receiver.received[-1].json["activity_play_id"] == other.id
    shown = client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.headers).json()
    assert shown["breaker"] == {
        "state": "closed", "consecutive_failures": 0, "opened_at": None, "next_probe_at": None,
    }  # fmt: skip
    # The dead letter comes back on request, with its original id.
    replay = client.post(f"/v1/deliveries/{delivery.id}/replay", headers=tenant.headers)
    assert replay.status_code == 202
    await run_worker()
    assert receiver.received[-1].json["id"] == activity.public_id


async def test_slow_endpoint_does_not_delay_another_subscription(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    background_worker: SessionFactory,
) -> None:
    # Every /slow request is held open until the fast subscription has everything: were fast
    # deliveries queued behind slow slots, they could not all arrive while those are held.
    # (Held for less than the gateway's request timeout, so no slow try fails meanwhile.)
    release = threading.Event()
    receiver.holds["/slow"] = release
    receiver.hold_limit = policy.REQUEST_TIMEOUT - 2
    subscribe(client, tenant, receiver.url + "/slow")
    subscribe(client, tenant, receiver.url + "/fast")
    plays = [await new_play(sessions, tenant.account_id, f"+1415556{i:04d}") for i in range(12)]
    for play in plays:
        await record(background_worker, play, "started")
    await until(lambda: len(receiver.bodies("/fast")) == 12, receiver.hold_limit)
    held, ran_out = len(receiver.bodies("/slow")), receiver.holds_run_out
    release.set()
    assert len(receiver.bodies("/fast")) == 12
    assert ran_out == 0, "a slow request was answered before every fast delivery arrived"
    # The slow endpoint never had more than MAX_IN_FLIGHT requests open at a time.
    assert 1 <= held <= policy.MAX_IN_FLIGHT
    await until(lambda: len(receiver.bodies("/slow")) == 12, 60)
    assert len(receiver.bodies("/slow")) == 12
