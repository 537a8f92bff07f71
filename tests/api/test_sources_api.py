"""Source rules through the API, and round-robin assignment under concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from starlette.testclient import TestClient

from gateway.db import SessionFactory, transaction
from gateway.models import Rep, SourceRule
from gateway.reps import assign_rep
from tests.support.tenants import Tenant

from .conftest import add_rep, publish


def test_source_lifecycle(client: TestClient, tenant_a: Tenant) -> None:
    publish(client, tenant_a)
    publish(client, tenant_a, "other")
    sam = add_rep(client, tenant_a, "Sam", "+14155550101")
    kim = add_rep(client, tenant_a, "Kim", "+14155550102")
    created = client.post(
        "/v1/sources",
        headers=tenant_a.headers,
        json={
            "origin": "EverQuote",
            "playbook_id": "hello",
            "rep_ids": [sam, kim],
            "settings": {"max_consent_age_days": 30},
        },
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["distribution"] == "round_robin" and rule["rep_ids"] == [sam, kim]
    assert rule["settings"] == {"max_consent_age_days": 30}
    assert client.get(f"/v1/sources/{rule['id']}", headers=tenant_a.headers).json() == rule

    changed = client.patch(
        f"/v1/sources/{rule['id']}",
        headers=tenant_a.headers,
        json={"playbook_id": "other", "rep_ids": [kim]},
    ).json()
    assert changed["playbook_id"] == "other" and changed["rep_ids"] == [kim]
    assert changed["origin"] == "EverQuote" and changed["settings"] == rule["settings"]

    manual = client.patch(
        f"/v1/sources/{rule['id']}",
        headers=tenant_a.headers,
        json={"distribution": "manual", "rep_ids": []},
    )
    assert manual.status_code == 200 and manual.json()["distribution"] == "manual"

    clone = client.post(
        f"/v1/sources/{rule['id']}/clone", headers=tenant_a.headers, json={"origin": "QuoteWizard"}
    )
    assert clone.status_code == 201, clone.text
    assert clone.json()["origin"] == "QuoteWizard" and clone.json()["id"] != rule["id"]
    assert clone.json()["playbook_id"] == "other"

    listed = client.get("/v1/sources", headers=tenant_a.headers).json()["data"]
    assert [r["origin"] for r in listed] == ["EverQuote", "QuoteWizard"]
    only = client.get("/v1/sources?origin=QuoteWizard", headers=tenant_a.headers).json()["data"]
    assert [r["id"] for r in only] == [clone.json()["id"]]

    assert client.delete(f"/v1/sources/{rule['id']}", headers=tenant_a.headers).status_code == 204
    assert client.get(f"/v1/sources/{rule['id']}", headers=tenant_a.headers).status_code == 404


def test_one_rule_per_origin(client: TestClient, tenant_a: Tenant) -> None:
    publish(client, tenant_a)
    body = {"origin": "EverQuote", "playbook_id": "hello", "distribution": "manual"}
    first = client.post("/v1/sources", headers=tenant_a.headers, json=body).json()
    again = client.post("/v1/sources", headers=tenant_a.headers, json=body)
    assert again.status_code == 409
    assert again.json()["error"]["existing_id"] == first["id"]
    assert again.json()["error"]["field"] == "origin"

    other = client.post(
        "/v1/sources", headers=tenant_a.headers, json={**body, "origin": "QuoteWizard"}
    ).json()
    moved = client.patch(
        f"/v1/sources/{other['id']}", headers=tenant_a.headers, json={"origin": "EverQuote"}
    )
    assert moved.status_code == 409 and moved.json()["error"]["existing_id"] == first["id"]
    cloned = client.post(
        f"/v1/sources/{other['id']}/clone", headers=tenant_a.headers, json={"origin": "EverQuote"}
    )
    assert cloned.status_code == 409 and cloned.json()["error"]["existing_id"] == first["id"]
    assert len(client.get("/v1/sources", headers=tenant_a.headers).json()["data"]) == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"origin": "X", "playbook_id": "nope", "distribution": "manual"}, "playbook_id"),
        ({"origin": "X", "playbook_id": "hello"}, "rep_ids"),
        ({"origin": "X", "playbook_id": "hello", "rep_ids": ["rep_nobody"]}, "rep_ids[0]"),
        ({"origin": "X", "playbook_id": "hello", "distribution": "fifo"}, "distribution"),
        (
            {"origin": "X", "playbook_id": "hello", "distribution": "manual", "rep_ids": ["r"]},
            "rep_ids",
        ),
        ({"origin": "", "playbook_id": "hello", "distribution": "manual"}, "origin"),
        (
            {
                "origin": "X",
                "playbook_id": "hello",
                "distribution": "manual",
                "settings": {"a": []},
            },
            "settings.a",
        ),
        ({"origin": "X", "playbook_id": "hello", "distribution": "manual", "x": 1}, "x"),
    ],
)
def test_bad_rules_are_422(
    client: TestClient, tenant_a: Tenant, payload: dict[str, object], field: str
) -> None:
    publish(client, tenant_a)
    response = client.post("/v1/sources", headers=tenant_a.headers, json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert client.get("/v1/sources", headers=tenant_a.headers).json()["data"] == []


def test_bad_changes_and_clones(client: TestClient, tenant_a: Tenant) -> None:
    publish(client, tenant_a)
    rule = client.post(
        "/v1/sources",
        headers=tenant_a.headers,
        json={"origin": "X", "playbook_id": "hello", "distribution": "manual"},
    ).json()
    for payload, field in [
        ({"distribution": "round_robin"}, "rep_ids"),
        ({"origin": None}, "origin"),
        ({"playbook_id": "nope"}, "playbook_id"),
    ]:
        response = client.patch(f"/v1/sources/{rule['id']}", headers=tenant_a.headers, json=payload)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
    missing = client.post(f"/v1/sources/{rule['id']}/clone", headers=tenant_a.headers, json={})
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "origin"
    assert client.get(f"/v1/sources/{rule['id']}", headers=tenant_a.headers).json() == rule


async def _rule_with_reps(sessions: SessionFactory, tenant: Tenant, available: list[bool]) -> str:
    async with transaction(sessions) as session:
        reps = [
            Rep(
                id=f"rep_{i}_{tenant.account_id[-6:]}",
                account_id=tenant.account_id,
                name=f"Rep {i}",
                phone=f"+1415555010{i}",
                available=up,
            )
            for i, up in enumerate(available)
        ]
        session.add_all(reps)
        rule = SourceRule(
            id=f"src_{tenant.account_id[-6:]}",
            account_id=tenant.account_id,
            origin="EverQuote",
            playbook_id="hello",
            rep_ids=[rep.id for rep in reps],
        )
        session.add(rule)
    return rule.id


async def _assign(sessions: SessionFactory, rule_id: str) -> str | None:
    async with transaction(sessions) as session:
        rule = await session.get(SourceRule, rule_id)
        assert rule is not None
        rep = await assign_rep(session, rule)
        return rep.id if rep else None


async def test_round_robin_is_even_under_concurrency(
    sessions: SessionFactory, tenant_a: Tenant
) -> None:
    rule_id = await _rule_with_reps(sessions, tenant_a, [True, False, True])
    picked = await asyncio.gather(*(_assign(sessions, rule_id) for _ in range(30)))
    counts = Counter(picked)
    suffix = tenant_a.account_id[-6:]
    assert counts == {f"rep_0_{suffix}": 15, f"rep_2_{suffix}": 15}


async def test_round_robin_in_order_and_when_nobody_is_available(
    sessions: SessionFactory, tenant_a: Tenant
) -> None:
    rule_id = await _rule_with_reps(sessions, tenant_a, [True, True, True])
    suffix = tenant_a.account_id[-6:]
    picked = [await _assign(sessions, rule_id) for _ in range(4)]
    assert picked == [f"rep_{i}_{suffix}" for i in (0, 1, 2, 0)]
    async with transaction(sessions) as session:
        for i in range(3):
            rep = await session.get(Rep, f"rep_{i}_{suffix}")
            assert rep is not None
            rep.available = False
            session.add(rep)
    assert await _assign(sessions, rule_id) is None


async def test_manual_rules_assign_nobody(sessions: SessionFactory, tenant_a: Tenant) -> None:
    rule_id = await _rule_with_reps(sessions, tenant_a, [True])
    async with transaction(sessions) as session:
        rule = await session.get(SourceRule, rule_id)
        assert rule is not None
        rule.distribution = "manual"
        assert await assign_rep(session, rule) is None
