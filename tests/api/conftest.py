"""Fixtures for the inbound API tests: two accounts (for isolation), a published playbook, reps."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from gateway.db import SessionFactory
from tests.support.playbooks import PLAYBOOK_YAML
from tests.support.tenants import Tenant, new_tenant

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
async def tenant_a(sessions: SessionFactory) -> Tenant:
    return await new_tenant(sessions, "A Lending")


@pytest.fixture
async def tenant_b(sessions: SessionFactory) -> Tenant:
    return await new_tenant(sessions, "B Insurance")


def publish(client: TestClient, tenant: Tenant, playbook_id: str = "hello") -> dict[str, object]:
    response = client.put(
        f"/v1/playbooks/{playbook_id}",
        content=PLAYBOOK_YAML,
        headers={**tenant.headers, **YAML},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def add_rep(
    client: TestClient, tenant: Tenant, name: str, phone: str, available: bool = True
) -> str:
    response = client.post(
        "/v1/reps",
        headers=tenant.headers,
        json={"name": name, "phone": phone, "available": available},
    )
    assert response.status_code == 201, response.text
    rep_id: str = response.json()["id"]
    return rep_id
