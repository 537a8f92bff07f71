"""`/v1/webhooks`: CRUD, the secret shown once, rotation, label and playbook validation, SSRF
refusals, and tenant isolation on every route."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.api.webhooks import MAX_WEBHOOKS
from gateway.app import create_app
from gateway.db import SessionFactory
from gateway.settings import Settings
from tests.api.conftest import PLAYBOOK_YAML, YAML
from tests.support.tenants import Tenant, new_tenant
from tests.support.webhook_endpoint import WebhookEndpoint

from .conftest import subscribe

HOOK = "https://crm.example.com/hooks"


def publish(client: TestClient, tenant: Tenant, playbook_id: str = "hello") -> None:
    response = client.put(
        f"/v1/playbooks/{playbook_id}", content=PLAYBOOK_YAML, headers={**tenant.headers, **YAML}
    )
    assert response.status_code == 201, response.text


def test_create_shows_secret_once_and_lists(client: TestClient, tenant: Tenant) -> None:
    publish(client, tenant)
    created = subscribe(
        client, tenant, "http://127.0.0.1:9/hook", activities=["qualified", "opted_out"],
        playbook_id="hello", description="CRM",
    )  # fmt: skip
    assert created["secret"].startswith("whsec_")
    assert created["activities"] == ["qualified", "opted_out"]
    assert created["breaker"] == {
        "state": "closed", "consecutive_failures": 0, "opened_at": None, "next_probe_at": None,
    }  # fmt: skip
    shown = client.get(f"/v1/webhooks/{created['id']}", headers=tenant.headers).json()
    assert "secret" not in shown and shown["url"] == "http://127.0.0.1:9/hook"
    listed = client.get("/v1/webhooks", headers=tenant.headers).json()["data"]
    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]
    everything = subscribe(client, tenant, "http://127.0.0.1:9/all")
    assert everything["activities"] == "all" and everything["playbook_id"] is None


def test_an_account_has_at_most_max_webhooks(client: TestClient, tenant: Tenant) -> None:
    for i in range(MAX_WEBHOOKS):
        subscribe(client, tenant, f"http://127.0.0.1:9/hook{i}")
    refused = client.post(
        "/v1/webhooks", headers=tenant.headers, json={"url": "http://127.0.0.1:9/one-more"}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "limit_reached"
    listed = client.get("/v1/webhooks", headers=tenant.headers).json()["data"]
    assert len(listed) == MAX_WEBHOOKS
    # One deleted makes room for one.
    assert (
        client.delete(f"/v1/webhooks/{listed[0]['id']}", headers=tenant.headers).status_code == 204
    )
    subscribe(client, tenant, "http://127.0.0.1:9/one-more")


def test_update_and_delete(client: TestClient, tenant: Tenant) -> None:
    publish(client, tenant)
    created = subscribe(client, tenant, "http://127.0.0.1:9/hook")
    path = f"/v1/webhooks/{created['id']}"
    changed = client.patch(
        path, headers=tenant.headers, json={"activities": ["started"], "playbook_id": "hello"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["activities"] == ["started"]
    assert changed.json()["playbook_id"] == "hello"
    off = client.patch(path, headers=tenant.headers, json={"enabled": False}).json()
    assert off["enabled"] is False
    null = client.patch(path, headers=tenant.headers, json={"url": None})
    assert null.status_code == 422 and null.json()["error"]["field"] == "url"
    assert client.delete(path, headers=tenant.headers).status_code == 204
    assert client.get(path, headers=tenant.headers).status_code == 404


def test_rotation_returns_a_new_secret_and_keeps_the_old_for_a_day(
    client: TestClient, tenant: Tenant
) -> None:
    created = subscribe(client, tenant, "http://127.0.0.1:9/hook")
    rotated = client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=tenant.headers)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"] != created["secret"] and body["secret"].startswith("whsec_")
    assert body["previous_secret_expires_at"] is not None


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"activities": ["no_such_label"]}, "activities[0]", "unknown_label"),
        ({"activities": ["qualified", "Bad Label"]}, "activities.1", "invalid"),
        ({"activities": []}, "activities", "invalid"),
        ({"activities": "some"}, "activities", "invalid"),
        ({"playbook_id": "missing"}, "playbook_id", "invalid"),
        ({"activities": ["scheduled"], "playbook_id": "hello"}, "activities[0]", "unknown_label"),
        ({"secret": "mine"}, "secret", "invalid"),
    ],
)
def test_bad_filters_are_422(
    client: TestClient, tenant: Tenant, fields: dict[str, Any], field: str, code: str
) -> None:
    publish(client, tenant)
    response = client.post(
        "/v1/webhooks", headers=tenant.headers, json={"url": "http://127.0.0.1:9/h", **fields}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"].startswith(field.split(".", maxsplit=1)[0])


def test_labels_of_every_playbook_and_status_changes_are_accepted(
    client: TestClient, tenant: Tenant
) -> None:
    publish(client, tenant)
    created = subscribe(
        client,
        tenant,
        "http://127.0.0.1:9/hook",
        activities=["qualified", "started", "opted_in", "opted_out", "party_line_completed"],
    )
    assert len(created["activities"]) == 5


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://100.64.0.1/hook",
    ],
)
async def test_private_addresses_refused_without_the_operators_allowance(
    client: TestClient, sessions: SessionFactory, url: str
) -> None:
    tenant = await new_tenant(sessions, "No Private", private=False)
    response = client.post("/v1/webhooks", headers=tenant.headers, json={"url": url})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "url_refused"
    assert response.json()["error"]["field"] == "url"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "not a url",
        "https://user:pw@example.com/hook",
        "https:///nohost",
        "https://example.com:99999/hook",
        "https://does-not-resolve.invalid/hook",
    ],
)
def test_malformed_urls_refused(client: TestClient, tenant: Tenant, url: str) -> None:
    response = client.post("/v1/webhooks", headers=tenant.headers, json={"url": url})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "url_refused"


async def test_patch_to_a_private_address_is_refused(
    client: TestClient, sessions: SessionFactory
) -> None:
    tenant = await new_tenant(sessions, "No Private", private=False)
    created = subscribe(client, tenant, "https://93.184.216.34/hook")  # a public IP literal
    moved = client.patch(
        f"/v1/webhooks/{created['id']}", headers=tenant.headers,
        json={"url": "https://127.0.0.1/hook"},
    )  # fmt: skip
    assert moved.status_code == 422 and moved.json()["error"]["code"] == "url_refused"
    # The allowance is the operator's: the account can't grant it to itself.
    grant = client.patch(
        "/v1/account", headers=tenant.headers,
        json={"compliance": {"allow_private_webhooks": True}},
    )  # fmt: skip
    assert grant.status_code == 422


async def test_https_required_in_production(
    settings: Settings, sessions: SessionFactory, engine: Any
) -> None:
    settings.environment = "production"
    tenant = await new_tenant(sessions, "Prod", private=True)
    with TestClient(create_app(settings)) as client:
        plain = client.post(
            "/v1/webhooks", headers=tenant.headers, json={"url": "http://127.0.0.1:9/h"}
        )
        assert plain.status_code == 422
        assert "https" in plain.json()["error"]["message"]
        secure = client.post(
            "/v1/webhooks", headers=tenant.headers, json={"url": "https://127.0.0.1:9/h"}
        )
        assert secure.status_code == 201, secure.text


async def test_tenant_isolation_on_every_route(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, receiver: WebhookEndpoint
) -> None:
    mine = subscribe(client, tenant, receiver.url + "/a")
    path = f"/v1/webhooks/{mine['id']}"
    theirs = other_tenant.headers
    calls = [
        client.get(path, headers=theirs),
        client.patch(path, headers=theirs, json={"enabled": False}),
        client.post(f"{path}/rotate-secret", headers=theirs),
        client.get(f"{path}/deliveries", headers=theirs),
        client.post(f"{path}/replay?since=2020-01-01T00:00:00Z", headers=theirs),
        client.post(f"{path}/test", headers=theirs),
        client.delete(path, headers=theirs),
    ]
    assert [c.status_code for c in calls] == [404] * len(calls)
    assert client.get("/v1/webhooks", headers=theirs).json()["data"] == []
    # Still there and unchanged for its owner; nothing was sent by the other account's test.
    assert client.get(path, headers=tenant.headers).json()["enabled"] is True
    assert receiver.received == []
