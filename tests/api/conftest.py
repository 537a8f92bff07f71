"""Fixtures for the inbound API tests: two accounts (for isolation), a published playbook, reps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from gateway import accounts
from gateway.db import SessionFactory, transaction

PLAYBOOK_YAML = """\
name: Hello
activities:
  outcomes: [qualified]
steps:
  - id: hi
    kind: ask
    text: "Hi {lead.first_name|there}, still interested? Reply YES"
    choices:
      - keywords: [yes, yep]
        outcome: qualified
"""
YAML = {"Content-Type": "application/yaml"}


def auth(issued: accounts.IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued.secret}"}


@dataclass
class Tenant:
    """An account's key and ready-made headers."""

    key: accounts.IssuedKey

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.key)

    @property
    def account_id(self) -> str:
        return self.key.key.account_id


@pytest.fixture
async def tenant_a(sessions: SessionFactory) -> Tenant:
    async with transaction(sessions) as session:
        _account, issued = await accounts.create_account(session, "A Lending")
    return Tenant(issued)


@pytest.fixture
async def tenant_b(sessions: SessionFactory) -> Tenant:
    async with transaction(sessions) as session:
        _account, issued = await accounts.create_account(session, "B Insurance")
    return Tenant(issued)


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
