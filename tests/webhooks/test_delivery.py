"""Deliveries against a real local receiver: the payload field for field, the signature by the
documented recipe, 410, Retry-After, rotation, replay, the test tool, opt-out status changes."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from gateway import optouts
from gateway.db import SessionFactory, transaction
from gateway.models import (
    Activity,
    ActivityType,
    Channel,
    DeliveryStatus,
    Lead,
    LedgerEvent,
    LedgerSource,
)
from gateway.webhooks import signing
from tests.api.conftest import PLAYBOOK_YAML, YAML
from tests.conftest import RunWorker
from tests.support.tenants import Tenant
from tests.support.webhook_endpoint import Received, WebhookEndpoint

from .conftest import deliveries, new_play, record, settle, subscribe
from .readme import readme_recipe

# The verification recipe of the README's "Receiving webhooks" section, run as written.
verify: Callable[..., bool] = readme_recipe("verify")


def headers_of(received: Received) -> httpx.Headers:
    return httpx.Headers(received.headers)


async def test_payload_field_for_field_and_signature(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    hook = subscribe(client, tenant, receiver.url + "/hook", activities="all")
    play = await new_play(sessions, tenant.account_id)
    [activity] = await record(sessions, play, "qualified", kind=ActivityType.OUTCOME)
    await settle(run_worker, sessions)

    [got] = receiver.received
    async with sessions() as session:
        lead = await session.get(Lead, play.lead_id)
    assert lead is not None
    assert got.json == {
        "id": activity.public_id,
        "account_id": tenant.account_id,
        "activity_type": "outcome",
        "activity_label": "qualified",
        "activity_play_id": play.id,
        "activity_note": "note qualified",
        "activity_created_at": activity.created_at.isoformat().replace("+00:00", "Z"),
        "lead_id": lead.id,
        "lead_first_name": "Ann",
        "lead_last_name": "Lee",
        "lead_email": "ann@example.com",
        "lead_opted_out": False,
        "lead_created_at": lead.created_at.isoformat().replace("+00:00", "Z"),
        "lead_additional_info": {"loan_amount": 350000, "source": {"campaign": "spring"}},
        "lead_originators": [
            {"origin": "EverQuote", "key": "eq-123"},
            {"origin": "CRM", "key": "c-9"},
        ],
    }
    headers = headers_of(got)
    assert headers["content-type"] == "application/json"
    assert headers["gateway-event-id"] == activity.public_id
    assert verify(hook["secret"], headers, got.body)
    assert signing.verify(hook["secret"], headers, got.body, now=time.time())
    # A different secret, a tampered body or a stale timestamp all fail.
    assert not verify("whsec_wrong", headers, got.body)
    assert not verify(hook["secret"], headers, got.body + b" ")
    assert not signing.verify(hook["secret"], headers, got.body, now=time.time() + 3600)

    [delivery] = await deliveries(sessions)
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1
    assert headers["gateway-delivery-id"] == delivery.id
    listed = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=tenant.headers).json()
    assert listed["data"][0]["status"] == "delivered"
    assert listed["data"][0]["last_status_code"] == 200
    assert listed["data"][0]["last_response"] == "answer 200"


async def test_filters_by_label(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    subscribe(client, tenant, receiver.url + "/all")
    subscribe(client, tenant, receiver.url + "/started", activities=["started"])
    play = await new_play(sessions, tenant.account_id)
    other = await new_play(sessions, tenant.account_id, "+14155550124", playbook_id="other")
    await record(sessions, play, "started", "interested")
    await record(sessions, other, "started")
    await settle(run_worker, sessions)
    everything = receiver.bodies("/all")
    assert [b["activity_label"] for b in everything if b["activity_play_id"] == play.id] == [
        "started", "interested",
    ]  # fmt: skip
    assert [b["activity_label"] for b in everything if b["activity_play_id"] == other.id] == [
        "started"
    ]
    started = receiver.bodies("/started")
    assert sorted(b["activity_play_id"] for b in started) == sorted([play.id, other.id])
    assert {b["activity_label"] for b in started} == {"started"}


async def test_gone_disables_the_subscription(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    hook = subscribe(client, tenant, receiver.url + "/hook")
    receiver.answer = lambda _r: 410
    play = await new_play(sessions, tenant.account_id)
    await record(sessions, play, "started", "interested")
    await settle(run_worker, sessions)
    assert len(receiver.received) == 1  # the second was cancelled, not sent
    shown = client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.headers).json()
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]
    assert [d.status for d in await deliveries(sessions)] == ["cancelled", "cancelled"]
    # Nothing new is owed while disabled; re-enabling and replaying brings it all back.
    await record(sessions, play, "completed")
    assert len(await deliveries(sessions)) == 2
    replay = client.post(
        f"/v1/webhooks/{hook['id']}/replay?since=2000-01-01T00:00:00Z", headers=tenant.headers
    )
    assert replay.status_code == 409
    receiver.answer = lambda _r: 200
    client.patch(f"/v1/webhooks/{hook['id']}", headers=tenant.headers, json={"enabled": True})
    replay = client.post(
        f"/v1/webhooks/{hook['id']}/replay",
        params={"since": "2000-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert replay.status_code == 202 and replay.json() == {"replayed": 3}
    await settle(run_worker, sessions)
    labels = [b["activity_label"] for b in receiver.bodies()]
    assert labels == ["started", "started", "interested", "completed"]


async def test_retry_after_is_a_floor(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    subscribe(client, tenant, receiver.url + "/hook")
    receiver.answer = lambda _r: (503, {"Retry-After": "120"})
    play = await new_play(sessions, tenant.account_id)
    await record(sessions, play, "started")
    await run_worker()
    [delivery] = await deliveries(sessions)
    assert delivery.status == "pending" and delivery.last_status_code == 503
    assert delivery.next_attempt_at is not None and delivery.last_attempt_at is not None
    wait = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
    assert 119 <= wait <= 121  # the schedule says ~10 s; the endpoint asked for 120


async def test_rotation_signs_with_both_secrets_for_a_day(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    hook = subscribe(client, tenant, receiver.url + "/hook")
    rotated = client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=tenant.headers)
    new_secret = rotated.json()["secret"]
    play = await new_play(sessions, tenant.account_id)
    await record(sessions, play, "started")
    await settle(run_worker, sessions)
    [got] = receiver.received
    headers = headers_of(got)
    assert headers["gateway-signature"].count("v1=") == 2
    assert verify(new_secret, headers, got.body) and verify(hook["secret"], headers, got.body)


async def test_replay_one_delivery_sends_the_same_event_id(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
    other_tenant: Tenant,
) -> None:
    subscribe(client, tenant, receiver.url + "/hook")
    play = await new_play(sessions, tenant.account_id)
    await record(sessions, play, "started")
    await settle(run_worker, sessions)
    [delivery] = await deliveries(sessions)
    path = f"/v1/deliveries/{delivery.id}/replay"
    assert client.post(path, headers=other_tenant.headers).status_code == 404
    replayed = client.post(path, headers=tenant.headers)
    assert replayed.status_code == 202 and replayed.json()["status"] == "pending"
    await settle(run_worker, sessions)
    first, second = receiver.received
    assert first.body == second.body and first.json["id"] == second.json["id"]
    [after] = await deliveries(sessions)
    assert after.status == "delivered" and after.replays == 1 and after.total_attempts == 2


async def test_the_test_tool(
    client: TestClient, tenant: Tenant, receiver: WebhookEndpoint, sessions: SessionFactory
) -> None:
    client.put("/v1/playbooks/hello", content=PLAYBOOK_YAML, headers={**tenant.headers, **YAML})
    hook = subscribe(client, tenant, receiver.url + "/hook")
    answered = client.post(
        f"/v1/webhooks/{hook['id']}/test?playbook_id=hello&activity=qualified",
        headers=tenant.headers,
    )
    assert answered.status_code == 200, answered.text
    result = answered.json()
    assert result["delivered"] is True and result["status_code"] == 200
    assert result["response"] == "answer 200"
    [got] = receiver.received
    assert got.json == result["payload"]
    assert got.json["id"].startswith("evt_test_") and got.json["activity_type"] == "outcome"
    assert set(got.json) == set(result["payload"]) and len(got.json) == 15
    assert verify(hook["secret"], headers_of(got), got.body)
    receiver.answer = lambda _r: 500
    failing = client.post(f"/v1/webhooks/{hook['id']}/test", headers=tenant.headers).json()
    assert failing["delivered"] is False and failing["status_code"] == 500
    unknown = client.post(f"/v1/webhooks/{hook['id']}/test?activity=nope", headers=tenant.headers)
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "activity"
    missing = client.post(
        f"/v1/webhooks/{hook['id']}/test?playbook_id=missing", headers=tenant.headers
    )
    assert missing.status_code == 422
    async with sessions() as session:
        assert (await session.exec(select(Activity))).all() == []


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.API])
async def test_opt_out_status_changes_are_activities(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
    channel: Channel,
) -> None:
    subscribe(client, tenant, receiver.url + "/hook", activities=["opted_out", "opted_in"])
    play = await new_play(sessions, tenant.account_id)
    phone = "+14155550123"
    for event in (LedgerEvent.OPT_OUT, LedgerEvent.OPT_OUT, LedgerEvent.OPT_IN):
        async with transaction(sessions) as session:
            await optouts.record(
                session, account_id=tenant.account_id, phone=phone, event=event,
                channel=channel, source=LedgerSource.KEYWORD,
            )  # fmt: skip
    # A phone without a lead still reports its status change.
    async with transaction(sessions) as session:
        await optouts.record(
            session, account_id=tenant.account_id, phone="+14155550199",
            event=LedgerEvent.OPT_OUT, channel=channel, source=LedgerSource.API,
        )  # fmt: skip
    await settle(run_worker, sessions)
    bodies = receiver.bodies()
    # In order for the lead (an opt-in never overtakes the opt-out before it).
    assert [(b["activity_label"], b["lead_opted_out"]) for b in bodies if b["lead_id"]] == [
        ("opted_out", True), ("opted_in", False),
    ]  # fmt: skip
    assert {b["lead_id"] for b in bodies} == {play.lead_id, None}
    assert [b["activity_label"] for b in bodies if b["lead_id"] is None] == ["opted_out"]
    assert {b["activity_play_id"] for b in bodies} == {None}
    assert {b["activity_type"] for b in bodies} == {"event"}


async def test_opt_out_through_the_api_is_delivered(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    subscribe(client, tenant, receiver.url + "/hook", activities=["opted_out"])
    created = client.post("/v1/opt-outs", headers=tenant.headers, json={"phone": "+14155550123"})
    assert created.status_code == 201, created.text
    await settle(run_worker, sessions)
    [body] = receiver.bodies()
    assert body["activity_label"] == "opted_out" and body["lead_opted_out"] is True
