"""Successes recorded together (gateway/webhooks/delivered.py), on the real database and
Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, update
from starlette.testclient import TestClient

from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.models import DeliveryStatus, WebhookDelivery
from gateway.webhooks import delivered
from tests.support.sql import statements
from tests.support.tenants import Tenant

from .conftest import deliveries, new_play, record, subscribe


def _success(delivery: WebhookDelivery) -> delivered.Success:
    assert delivery.subscription_id is not None
    return delivered.Success(
        delivery_id=delivery.id,
        account_id=delivery.account_id,
        subscription_id=delivery.subscription_id,
        order_key=delivery.order_key,
        probing=False,
        moment=now(),
        status_code=200,
        excerpt="ok",
        error=None,
    )


async def _owed(
    client: TestClient, sessions: SessionFactory, tenant: Tenant, plays: int
) -> list[WebhookDelivery]:
    """One delivery owed to a subscription for each of `plays` plays, plus a second activity
    on the first play (owed after its first)."""
    subscribe(client, tenant, "http://127.0.0.1:9/hook", activities="all")
    first = await new_play(sessions, tenant.account_id)
    await record(sessions, first, "started", "qualified")
    for n in range(1, plays):
        play = await new_play(sessions, tenant.account_id, phone=f"+1415555{n:04d}")
        await record(sessions, play, "started")
    return await deliveries(sessions, status=DeliveryStatus.PENDING)


async def test_successes_waiting_together_are_one_update(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant
) -> None:
    owed = await _owed(client, sessions, tenant, plays=5)
    second = [d for d in owed if d.order_key == owed[0].order_key][1]
    firsts = [d for d in owed if d.id != second.id]
    with statements("UPDATE webhook_deliveries") as updates:
        results = await asyncio.gather(*(delivered.record(sessions, _success(d)) for d in firsts))
    assert results == [DeliveryStatus.DELIVERED] * len(firsts)
    # Recorded one by one, it was one UPDATE per delivery.
    assert len(updates) < len(firsts)
    by_id = {d.id: d for d in await deliveries(sessions)}
    assert all(by_id[d.id].status == DeliveryStatus.DELIVERED for d in firsts)
    assert all(by_id[d.id].attempts == 1 and by_id[d.id].delivered_at for d in firsts)
    assert by_id[second.id].status == DeliveryStatus.PENDING


async def test_a_delivery_settled_meanwhile_keeps_its_status_and_the_others_are_recorded(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant
) -> None:
    owed = await _owed(client, sessions, tenant, plays=3)
    cancelled = owed[-1]
    async with transaction(sessions) as session:
        await session.exec(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == cancelled.id)  # type: ignore[arg-type]
            .values(status=DeliveryStatus.CANCELLED)
        )
    results = await asyncio.gather(*(delivered.record(sessions, _success(d)) for d in owed))
    assert results[-1] == DeliveryStatus.CANCELLED
    assert results[:-1] == [DeliveryStatus.DELIVERED] * (len(owed) - 1)
    by_id = {d.id: d for d in await deliveries(sessions)}
    assert by_id[cancelled.id].status == DeliveryStatus.CANCELLED
    assert by_id[cancelled.id].delivered_at is None


@pytest.fixture
def first_group_fails() -> Iterator[list[int]]:
    """The first UPDATE that records several deliveries at once fails (as a deadlock or a
    dropped connection would make it); yields how many deliveries each UPDATE run named."""
    sizes: list[int] = []

    def fail_first(
        _conn: object, _cursor: object, statement: str, params: Any, _ctx: object, _many: bool
    ) -> None:
        if statement.startswith("UPDATE webhook_deliveries"):
            named = [p for p in params if isinstance(p, str) and p.startswith("dlv_")]
            sizes.append(len(named))
            if len(named) > 1 and len(sizes) == 1:
                raise RuntimeError("injected: the grouped transaction fails")

    event.listen(Engine, "before_cursor_execute", fail_first)
    try:
        yield sizes
    finally:
        event.remove(Engine, "before_cursor_execute", fail_first)


async def test_a_failed_group_is_recorded_one_by_one(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    first_group_fails: list[int],
) -> None:
    owed = await _owed(client, sessions, tenant, plays=4)
    results = await asyncio.gather(*(delivered.record(sessions, _success(d)) for d in owed))
    assert results == [DeliveryStatus.DELIVERED] * len(owed)
    assert first_group_fails[0] == len(owed)  # the group was tried, and failed
    assert first_group_fails[1:] == [1] * len(owed)  # then each alone
    by_id = {d.id: d for d in await deliveries(sessions)}
    assert all(by_id[d.id].status == DeliveryStatus.DELIVERED for d in owed)
    assert all(by_id[d.id].attempts == 1 for d in owed)


@pytest.mark.parametrize("count", [1, 8, delivered.MAX_GROUP])
async def test_successes_are_found_by_their_ids_not_by_the_status_index(
    sessions: SessionFactory, count: int
) -> None:
    """SQLite has no statistics to plan by: with the status among the conditions, it read every
    pending delivery by the status index instead of the recorded ones by their keys once eight
    or more were recorded together (a backlog of thousands cost each group thousands of page
    reads). Every group size up to the largest must go by the keys."""
    async with sessions() as session:
        connection = await session.connection()
        if connection.dialect.name != "sqlite":
            pytest.skip("SQLite's planner")
        # The statement as the driver gets it, from the same call `_in_one` makes.
        with statements("UPDATE webhook_deliveries") as seen:
            ids = [f"dlv_{n}" for n in range(count)]
            values = {"ids": ids, "moment": now(), "status_code": 200}
            await connection.execute(delivered._DELIVERED, {**values, "excerpt": "", "error": None})
        [sql] = seen
        plan = await connection.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {sql}", ("x",) * sql.count("?")
        )
        steps = [row[3] for row in plan]
    assert steps == [
        "SEARCH webhook_deliveries USING INDEX sqlite_autoindex_webhook_deliveries_1 (id=?)"
    ], steps
