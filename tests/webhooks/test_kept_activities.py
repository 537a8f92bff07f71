"""Activities kept to their transaction's commit (`gateway.activity_webhooks.record`): written
together, in the order they were recorded, with their deliveries; gone with a rollback; seen by
`has_activity` before they are written; refused a commit that would lose them."""

from __future__ import annotations

import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from gateway.db import SessionFactory, numbered_values, transaction
from gateway.engine.lifecycle import has_activity
from gateway.engine.records import record_activity
from gateway.models import Activity, ActivityType, Play, WebhookDelivery
from gateway.webhook_payloads import _with_subscriptions
from tests.support.sql import statements
from tests.support.tenants import Tenant
from tests.support.webhook_endpoint import WebhookEndpoint

from .conftest import deliveries, new_play, subscribe


async def test_a_transactions_activities_are_written_at_its_commit_together_and_in_order(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant, receiver: WebhookEndpoint
) -> None:
    subscribe(client, tenant, receiver.url + "/a")
    subscribe(client, tenant, receiver.url + "/b")
    plays = [await new_play(sessions, tenant.account_id, f"+1415555{i:04d}") for i in range(4)]
    recorded: list[Activity] = []
    async with transaction(sessions) as session:
        with statements("activities") as written_early:
            for play in plays:
                for label in ("started", "interested", "qualified"):
                    recorded.append(await record_activity(session, play, ActivityType.EVENT, label))
        assert written_early == []  # nothing written while the batch runs
        assert all(a.id is None for a in recorded)
    # The commit wrote them: their ids follow the order they were recorded in.
    ids = [a.id for a in recorded]
    assert None not in ids and ids == sorted(ids)  # type: ignore[type-var]
    async with sessions() as session:
        rows = (await session.exec(select(Activity).order_by(col(Activity.id)))).all()
    assert [(a.play_id, a.label) for a in rows] == [(a.play_id, a.label) for a in recorded]

    # One delivery per subscription and activity, each play's in its order.
    owed = await deliveries(sessions)
    assert len(owed) == 2 * len(recorded)
    for play in plays:
        labels = [d.label for d in owed if d.order_key == play.id]
        assert labels == ["started", "started", "interested", "interested"] + ["qualified"] * 2


async def test_kept_activities_cost_one_statement_of_each_kind_however_many_plays(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant, receiver: WebhookEndpoint
) -> None:
    subscribe(client, tenant, receiver.url + "/a")
    plays = [await new_play(sessions, tenant.account_id, f"+1415555{i:04d}") for i in range(6)]
    with statements() as seen:
        async with transaction(sessions) as session:
            for play in plays:
                await record_activity(session, play, ActivityType.EVENT, "started")
                await record_activity(session, play, ActivityType.OUTCOME, "qualified")
    activities = [s for s in seen if s.startswith("INSERT INTO activities")]
    # At the commit, on PostgreSQL in one statement with the play log's entries.
    delivered = [s for s in seen if "INSERT INTO webhook_deliveries" in s]
    # The account's subscriptions and the activities' leads: one read.
    read = [s for s in seen if "JOIN webhook_subscriptions" in s or "FROM leads" in s]
    assert (len(activities), len(delivered), len(read)) == (1, 1, 1)
    assert "JOIN leads" in read[0]
    assert len(await deliveries(sessions)) == 12


async def test_each_subscription_gets_the_lead_as_it_is_whatever_their_count(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant, receiver: WebhookEndpoint
) -> None:
    """The read of the subscriptions with the leads repeats a lead's rows beside each
    subscription: each payload still shows the lead's originators once each, and an account
    with no subscription owes nothing."""
    phones = ["+14155550301", "+14155550302"]
    plays = [
        await new_play(
            sessions,
            tenant.account_id,
            phone,
            lead={
                "first_name": f"Lead {number}",
                "originators": [
                    {"origin": "crm", "key": f"c-{number}"},
                    {"origin": "form", "key": f"f-{number}"},
                ],
            },
        )
        for number, phone in enumerate(phones)
    ]
    async with transaction(sessions) as session:  # no subscription yet
        await record_activity(session, plays[0], ActivityType.EVENT, "started")
    assert await deliveries(sessions) == []
    for name in ("a", "b", "c"):
        subscribe(client, tenant, f"{receiver.url}/{name}")
    async with transaction(sessions) as session:
        for play in plays:
            await record_activity(session, play, ActivityType.EVENT, "interested")
    owed = await deliveries(sessions)
    assert len(owed) == 3 * len(plays)
    for delivery in owed:
        [number] = [n for n, play in enumerate(plays) if play.id == delivery.order_key]
        assert delivery.payload["lead_first_name"] == f"Lead {number}"
        assert delivery.payload["lead_originators"] == [
            {"origin": "crm", "key": f"c-{number}"},
            {"origin": "form", "key": f"f-{number}"},
        ]
    # The leads' rows stand beside the first subscription only, not beside each: the other
    # two subscriptions a row each, then the two leads' two originators each.
    lead_ids = numbered_values("lead", [play.lead_id for play in plays])
    params = {"account_id": tenant.account_id, **lead_ids}
    async with sessions() as session:
        rows = (await session.exec(_with_subscriptions(len(plays)), params=params)).all()
    assert len(rows) == 2 + 2 * 2


async def test_a_rollback_leaves_neither_the_activities_nor_their_deliveries(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant, receiver: WebhookEndpoint
) -> None:
    subscribe(client, tenant, receiver.url + "/a")
    play = await new_play(sessions, tenant.account_id)
    with pytest.raises(RuntimeError, match="the step failed"):
        async with transaction(sessions) as session:
            await record_activity(session, play, ActivityType.EVENT, "started")
            raise RuntimeError("the step failed")
    async with sessions() as session:
        assert (await session.exec(select(Activity))).all() == []
        assert (await session.exec(select(WebhookDelivery))).all() == []
    # The session's next transaction owes nothing of the one rolled back.
    async with transaction(sessions) as session:
        await record_activity(session, play, ActivityType.EVENT, "interested")
    assert [d.label for d in await deliveries(sessions)] == ["interested"]


async def test_has_activity_sees_what_this_transaction_recorded_before_it_is_written(
    sessions: SessionFactory, tenant: Tenant
) -> None:
    play = await new_play(sessions, tenant.account_id)
    other = await new_play(sessions, tenant.account_id, "+14155550999")
    async with transaction(sessions) as session:
        assert not await has_activity(session, play.id, "qualified")
        await record_activity(session, play, ActivityType.OUTCOME, "qualified")
        assert await has_activity(session, play.id, "qualified")
        assert not await has_activity(session, other.id, "qualified")
        assert not await has_activity(session, play.id, "completed")
    async with transaction(sessions) as session:  # and once written, by its read
        assert await has_activity(session, play.id, "qualified")


async def test_a_commit_outside_transaction_that_would_lose_activities_is_refused(
    sessions: SessionFactory, tenant: Tenant
) -> None:
    play = await new_play(sessions, tenant.account_id)
    async with sessions() as session:
        fetched = await session.get(Play, play.id)
        assert fetched is not None
        await record_activity(session, fetched, ActivityType.EVENT, "started")
        with pytest.raises(RuntimeError, match=r"outside gateway\.db\.transaction\(\)"):
            await session.commit()
        await session.rollback()
    async with sessions() as session:
        assert (await session.exec(select(Activity))).all() == []


async def test_stopping_a_play_shows_the_activity_its_own_transaction_recorded(
    client: TestClient, *, sessions: SessionFactory, tenant: Tenant
) -> None:
    play = await new_play(sessions, tenant.account_id)
    response = client.post(f"/v1/plays/{play.id}/stop", headers=tenant.headers)
    assert response.status_code == 200, response.text
    labels = [a["label"] for a in response.json()["activities"]]
    assert labels == ["stopped"]
