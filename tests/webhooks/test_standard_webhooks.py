"""Standard Webhooks signatures, checked by the `standardwebhooks` package (the library a
customer would install) inside a real HTTP receiver on 127.0.0.1: deliveries, retries, replays,
the rotation overlap (a receiver holding only the old secret and one holding only the new
both verify), secrets issued before these headers, and the test tool's requests."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.testclient import TestClient

from gateway.clock import now, set_clock
from gateway.db import SessionFactory, transaction
from gateway.models import DeliveryStatus, WebhookSubscription
from gateway.webhooks import signing
from gateway.work import kinds
from tests.api.conftest import PLAYBOOK_YAML, YAML
from tests.conftest import RunWorker
from tests.support.tenants import Tenant
from tests.support.webhook_endpoint import Received, WebhookEndpoint

from .conftest import LEAD_IN, deliveries, new_play, record, settle
from .conftest import subscribe as subscribe_url
from .readme import readme_recipe

# The README's recipes, run as written.
verified_event = readme_recipe("verified_event")
standard_spelling = readme_recipe("standard_spelling")
_verify_by_hand = readme_recipe("verify")


def verify_by_hand(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """The README's hand-written `Gateway-*` check, given headers the way a web framework
    hands them over (case-insensitive)."""
    verified: bool = _verify_by_hand(secret, httpx.Headers(headers), body)
    return verified


class Holder:
    """A customer's endpoint: verifies every request with the library and the secret it holds
    right now, answers 400 when that fails (as a real receiver would), and keeps the outcome."""

    def __init__(self, receiver: WebhookEndpoint) -> None:
        self.secret = ""
        self.outcomes: list[tuple[str, bool]] = []  # (secret held, verified)
        receiver.answer = self.answer

    def answer(self, got: Received) -> int:
        event = verified_event(self.secret, got.headers, got.body)
        self.outcomes.append((self.secret, event is not None))
        return 200 if event is not None else 400


def library_verifies(secret: str, got: Received) -> bool:
    try:
        Webhook(secret).verify(got.body, got.headers)
    except (WebhookVerificationError, ValueError):  # ValueError: a secret it can't decode
        return False
    return True


def subscribe(client: TestClient, tenant: Tenant, receiver: WebhookEndpoint) -> dict[str, Any]:
    return subscribe_url(client, tenant, receiver.url + "/hook")


def rotate(client: TestClient, tenant: Tenant, hook: dict[str, Any]) -> str:
    rotated = client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=tenant.headers)
    assert rotated.status_code == 200, rotated.text
    secret: str = rotated.json()["secret"]
    return secret


class StartedClock:
    """Gateway time starting at the real now (the library checks timestamps against the real
    clock), moved forward by the test."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Iterator[StartedClock]:
    fake = StartedClock()
    set_clock(fake)
    try:
        yield fake
    finally:
        set_clock(None)


def test_issued_secrets_are_standard_and_keep_the_gateway_key() -> None:
    secret = signing.new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert len(key) == 32 and signing.standard_key(secret) == key
    assert signing.standard_secret(secret) == secret
    body, moment = '{"id":"evt_1","lead_first_name":"Zoë"}'.encode(), datetime.now(UTC)
    stamp = int(moment.timestamp())
    # The library's own signer and ours agree byte for byte.
    assert Webhook(secret).sign("evt_1", moment, body.decode()) == (
        "v1," + signing.standard_signature(secret, "evt_1", stamp, body)
    )
    # The Gateway-* key is still the secret's text, so a hand-written receiver is unaffected.
    headers = signing.headers([secret], "evt_1", "dlv_1", stamp, body)
    assert verify_by_hand(secret, headers, body)
    assert Webhook(secret).verify(body, headers) == {"id": "evt_1", "lead_first_name": "Zoë"}


async def test_deliveries_verify_with_the_library_on_retry_and_replay(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
    clock: StartedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kinds, "MAX_DEFER_SECONDS", 0.0)  # the retry waits go through the sweep
    hook = subscribe(client, tenant, receiver)
    holder = Holder(receiver)
    holder.secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()  # not ours
    # A non-ASCII name: the library verifies the body as UTF-8 text, we sign its bytes.
    play = await new_play(sessions, tenant.account_id, lead={**LEAD_IN, "first_name": "Zoë"})
    [activity] = await record(sessions, play, "started")
    await run_worker()  # the wrong secret: refused with 400, retried later
    [delivery] = await deliveries(sessions)
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_status_code == 400
    assert delivery.next_attempt_at is not None
    holder.secret = hook["secret"]  # the receiver is deployed with the right secret
    clock.at = delivery.next_attempt_at
    await settle(run_worker, sessions)
    replayed = client.post(f"/v1/deliveries/{delivery.id}/replay", headers=tenant.headers)
    assert replayed.status_code == 202, replayed.text
    await settle(run_worker, sessions)

    first, retry, replay = receiver.received
    assert holder.outcomes == [
        (holder.outcomes[0][0], False), (hook["secret"], True), (hook["secret"], True)
    ]  # fmt: skip
    assert retry.json["lead_first_name"] == "Zoë"
    for got in (first, retry, replay):
        # One stable id everywhere: the event's, on the first try, the retry and the replay.
        assert got.headers["webhook-id"] == activity.public_id == got.json["id"]
        assert got.headers["webhook-id"] == got.headers["gateway-event-id"]
        assert got.headers["webhook-timestamp"] == got.headers["gateway-timestamp"]
        assert library_verifies(hook["secret"], got)
        assert verify_by_hand(hook["secret"], got.headers, got.body)  # Gateway-* still holds
        assert not library_verifies(hook["secret"], Received(got.path, got.headers,
                                                              got.body + b" ", got.at))  # fmt: skip
    # Each attempt is signed when it is sent: the retry's timestamp is the later one.
    assert int(retry.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    [after] = await deliveries(sessions)
    assert after.status == DeliveryStatus.DELIVERED and after.total_attempts == 3


async def test_rotation_overlap_both_secrets_verify(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    hook = subscribe(client, tenant, receiver)
    old = hook["secret"]
    new = rotate(client, tenant, hook)
    holder = Holder(receiver)
    play = await new_play(sessions, tenant.account_id)
    holder.secret = old  # a receiver not yet redeployed
    await record(sessions, play, "started")
    await settle(run_worker, sessions)
    holder.secret = new  # a receiver already redeployed
    await record(sessions, play, "interested")
    await settle(run_worker, sessions)
    assert holder.outcomes == [(old, True), (new, True)]
    assert [d.status for d in await deliveries(sessions)] == ["delivered", "delivered"]
    for got in receiver.received:
        # Both secrets' signatures in the one header, new first, space-separated.
        parts = got.headers["webhook-signature"].split(" ")
        assert [p.split(",")[0] for p in parts] == ["v1", "v1"]
        assert library_verifies(old, got) and library_verifies(new, got)
        assert Webhook(new).sign(got.headers["webhook-id"], datetime.fromtimestamp(
            int(got.headers["webhook-timestamp"]), UTC), got.body.decode()) == parts[0]  # fmt: skip

    # After the overlap only the new secret signs.
    async with transaction(sessions) as session:
        row = await session.get(WebhookSubscription, hook["id"])
        assert row is not None
        row.previous_secret_expires_at = now() - timedelta(seconds=1)
        session.add(row)
    await record(sessions, play, "completed")
    await settle(run_worker, sessions)
    last = receiver.received[-1]
    assert len(last.headers["webhook-signature"].split(" ")) == 1
    assert library_verifies(new, last) and not library_verifies(old, last)
    assert holder.outcomes[-1] == (new, True)


async def test_secrets_issued_before_standard_signing_keep_working(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    receiver: WebhookEndpoint,
    run_worker: RunWorker,
) -> None:
    hook = subscribe(client, tenant, receiver)
    # A secret as the gateway issued them until now: URL-safe base64 without padding.
    legacy = "whsec_" + secrets.token_urlsafe(32)
    while not {"-", "_"} & set(legacy.removeprefix("whsec_")):  # what a library can't read
        legacy = "whsec_" + secrets.token_urlsafe(32)
    async with transaction(sessions) as session:
        row = await session.get(WebhookSubscription, hook["id"])
        assert row is not None
        row.secret = legacy
        session.add(row)
    play = await new_play(sessions, tenant.account_id)
    await record(sessions, play, "started")
    await settle(run_worker, sessions)
    [got] = receiver.received
    assert verify_by_hand(legacy, got.headers, got.body)  # receivers built on Gateway-* unchanged
    converted = standard_spelling(legacy)  # the README's one-time conversion
    assert converted == signing.standard_secret(legacy) and converted != legacy
    assert library_verifies(converted, got)
    assert not library_verifies(legacy, got)  # why the README says to convert it

    # Rotating away from it: the new secret is read as is, the converted old one still verifies.
    new = rotate(client, tenant, hook)
    await record(sessions, play, "interested")
    await settle(run_worker, sessions)
    last = receiver.received[-1]
    assert library_verifies(new, last) and library_verifies(converted, last)
    assert verify_by_hand(legacy, last.headers, last.body)


async def test_the_test_tool_signs_the_standard_way(
    client: TestClient, tenant: Tenant, receiver: WebhookEndpoint
) -> None:
    client.put("/v1/playbooks/hello", content=PLAYBOOK_YAML, headers={**tenant.headers, **YAML})
    hook = subscribe(client, tenant, receiver)
    holder = Holder(receiver)
    holder.secret = hook["secret"]
    path = f"/v1/webhooks/{hook['id']}/test?playbook_id=hello&activity=qualified"
    answered = client.post(path, headers=tenant.headers)
    assert answered.status_code == 200, answered.text
    assert answered.json()["delivered"] is True and answered.json()["status_code"] == 200
    [got] = receiver.received
    assert got.headers["webhook-id"] == answered.json()["payload"]["id"] == got.json["id"]
    assert got.headers["webhook-id"].startswith("evt_test_")
    assert verified_event(hook["secret"], got.headers, got.body) == answered.json()["payload"]

    new = rotate(client, tenant, hook)  # during the overlap the test tool signs with both too
    holder.secret = new
    assert client.post(path, headers=tenant.headers).json()["delivered"] is True
    last = receiver.received[-1]
    assert library_verifies(new, last) and library_verifies(hook["secret"], last)
    assert holder.outcomes == [(hook["secret"], True), (new, True)]
