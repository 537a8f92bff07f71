"""Leads: `upsert_lead` (what POST /v1/plays and POST /v1/leads use) and the /v1/leads routes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlmodel import select
from starlette.testclient import TestClient

from gateway import leads
from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.errors import ApiError
from gateway.leads import LeadCreate, OriginatorConflict, upsert_lead
from gateway.models import Consent, Lead, LeadOriginator
from tests.support.tenants import Tenant

PHONE = "+14155550123"


async def _upsert(sessions: SessionFactory, account_id: str, **fields: Any) -> Lead:
    async with transaction(sessions) as session:
        return await upsert_lead(session, account_id, LeadCreate.model_validate(fields))


async def test_upsert_creates_then_updates_one_lead(
    sessions: SessionFactory, tenant_a: Tenant
) -> None:
    first = await _upsert(
        sessions,
        tenant_a.account_id,
        phone="(415) 555-0123",
        first_name="Ana",
        state="texas",
        postal_code="75001",
        additional_info={"loan": 250000, "note": "x"},
        originators=[{"origin": "EverQuote", "key": "eq-1"}],
        consent={"captured_at": "2026-11-20T10:00:00Z", "source": "web form", "text": "I agree"},
    )
    assert first.phone == PHONE and first.state == "TX"
    second = await _upsert(
        sessions,
        tenant_a.account_id,
        phone=PHONE,
        last_name="Lopez",
        additional_info={"note": None, "credit": "good"},
        originators=[
            {"origin": "EverQuote", "key": "eq-1"},
            {"origin": "QuoteWizard", "key": "qw-9"},
        ],
    )
    assert second.id == first.id
    assert (second.first_name, second.last_name) == ("Ana", "Lopez")
    assert second.additional_info == {"loan": 250000, "credit": "good"}
    async with sessions() as session:
        assert len((await session.exec(select(Lead))).all()) == 1
        consents = (await session.exec(select(Consent))).all()
        assert [(c.lead_id, c.source) for c in consents] == [(first.id, "web form")]


async def test_originator_of_another_lead_is_a_conflict(
    sessions: SessionFactory, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    await _upsert(
        sessions, tenant_a.account_id, phone=PHONE, originators=[{"origin": "EQ", "key": "1"}]
    )
    with pytest.raises(OriginatorConflict) as raised:
        await _upsert(
            sessions,
            tenant_a.account_id,
            phone="+14155550124",
            first_name="Bo",
            originators=[{"origin": "EQ", "key": "1"}],
        )
    assert raised.value.status_code == 409 and raised.value.field == "originators[0]"
    async with sessions() as session:
        phones = (await session.exec(select(Lead.phone))).all()
    assert phones == [PHONE]  # the refused lead was rolled back
    # Another account may use the same originator.
    other = await _upsert(
        sessions, tenant_b.account_id, phone=PHONE, originators=[{"origin": "EQ", "key": "1"}]
    )
    assert other.account_id == tenant_b.account_id


async def test_a_lead_keeps_a_bounded_count_of_originators(
    sessions: SessionFactory, tenant_a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each webhook of a lead carries all its originators: past the bound (3 here; 100 as
    shipped), a request that adds one is a 409 that changes nothing (the lead's fields
    included), and one that names only those it has still goes through."""
    monkeypatch.setattr(leads, "MAX_LEAD_ORIGINATORS", 3)
    kept = [{"origin": "EQ", "key": str(n)} for n in range(3)]
    lead = await _upsert(sessions, tenant_a.account_id, phone=PHONE, originators=kept)
    with pytest.raises(ApiError) as raised:
        await _upsert(
            sessions,
            tenant_a.account_id,
            phone=PHONE,
            first_name="Bo",
            originators=[{"origin": "EQ", "key": "3"}],
        )
    assert raised.value.status_code == 409 and raised.value.code == "limit_reached"
    async with sessions() as session:
        keys = (await session.exec(select(LeadOriginator.key))).all()
        assert sorted(keys) == ["0", "1", "2"]
        assert (await session.get(Lead, lead.id)).first_name is None  # type: ignore[union-attr]
    again = await _upsert(
        sessions, tenant_a.account_id, phone=PHONE, first_name="Bo", originators=kept[:1]
    )
    assert again.first_name == "Bo"


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"phone": "nope"}, "phone"),
        ({"phone": PHONE, "state": "Narnia"}, "state"),
        ({"phone": PHONE, "postal_code": "1234"}, "postal_code"),
        ({"phone": PHONE, "email": "a@b"}, "email"),
        ({"phone": PHONE, "additional_info": {"x": "y" * 20_000}}, "additional_info"),
        ({"phone": PHONE, "originators": [{"origin": "", "key": "k"}]}, "originators"),
        ({"phone": PHONE, "consent": {"captured_at": "2026-11-20T10:00:00"}}, "consent"),
        ({"phone": PHONE, "extra": 1}, "extra"),
    ],
)
def test_lead_in_refuses_bad_fields(fields: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as raised:
        LeadCreate.model_validate(fields)
    assert raised.value.errors()[0]["loc"][0] == where


def test_consent_in_the_future_is_refused() -> None:
    future = (now() + timedelta(hours=1)).isoformat()
    with pytest.raises(ValidationError, match="future"):
        LeadCreate.model_validate({"phone": PHONE, "consent": {"captured_at": future}})


async def test_get_list_and_patch(
    client: TestClient, sessions: SessionFactory, tenant_a: Tenant
) -> None:
    lead = await _upsert(
        sessions,
        tenant_a.account_id,
        phone=PHONE,
        first_name="Ana",
        additional_info={"loan": 1, "keep": True},
        originators=[{"origin": "EverQuote", "key": "eq-1"}],
        consent={"captured_at": "2026-11-20T10:00:00Z", "url": "https://acme.example/form"},
    )
    other = await _upsert(
        sessions,
        tenant_a.account_id,
        phone="+14155550124",
        originators=[{"origin": "QuoteWizard", "key": "qw-1"}],
    )
    body = client.get(f"/v1/leads/{lead.id}", headers=tenant_a.headers).json()
    assert body["phone"] == PHONE and body["first_name"] == "Ana"
    assert body["originators"] == [{"origin": "EverQuote", "key": "eq-1"}]
    assert body["consents"][0]["url"] == "https://acme.example/form"
    assert body["consents"][0]["captured_at"] == "2026-11-20T10:00:00Z"

    def ids(query: str) -> list[str]:
        response = client.get(f"/v1/leads{query}", headers=tenant_a.headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["data"]]

    assert ids("") == [lead.id, other.id]
    assert ids("?phone=(415)%20555-0124") == [other.id]
    assert ids("?origin=EverQuote") == [lead.id]
    assert ids("?origin=EverQuote&key=eq-1") == [lead.id]
    assert ids("?origin=EverQuote&key=eq-2") == []

    page = client.get("/v1/leads?limit=1", headers=tenant_a.headers).json()
    assert [item["id"] for item in page["data"]] == [lead.id]
    rest = client.get(f"/v1/leads?limit=1&cursor={page['next_cursor']}", headers=tenant_a.headers)
    assert [item["id"] for item in rest.json()["data"]] == [other.id]

    patched = client.patch(
        f"/v1/leads/{lead.id}",
        headers=tenant_a.headers,
        json={
            "first_name": None,
            "state": "CA",
            "additional_info": {"loan": 2, "keep": None, "new": {"a": 1}},
        },
    )
    assert patched.status_code == 200, patched.text
    changed = patched.json()
    assert changed["first_name"] is None and changed["state"] == "CA"
    assert changed["additional_info"] == {"loan": 2, "new": {"a": 1}}
    assert changed["originators"] == body["originators"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?phone=123", "phone"),
        ("?key=eq-1", "key"),
        ("?cursor=abc", "cursor"),
        ("?limit=0", "limit"),
        ("?colour=red", "colour"),
    ],
)
def test_bad_lead_queries_are_422(
    client: TestClient, tenant_a: Tenant, query: str, field: str
) -> None:
    response = client.get(f"/v1/leads{query}", headers=tenant_a.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"phone": "+14155550199"}, "phone"),
        ({"state": "ZZ"}, "state"),
        ({"email": "nope"}, "email"),
        ({"additional_info": None}, "additional_info"),
        ({"additional_info": {"big": "x" * 20_000}}, "additional_info"),
    ],
)
async def test_bad_lead_changes_are_422(
    client: TestClient,
    sessions: SessionFactory,
    tenant_a: Tenant,
    payload: dict[str, Any],
    field: str,
) -> None:
    lead = await _upsert(sessions, tenant_a.account_id, phone=PHONE, first_name="Ana")
    response = client.patch(f"/v1/leads/{lead.id}", headers=tenant_a.headers, json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    again = client.get(f"/v1/leads/{lead.id}", headers=tenant_a.headers).json()
    assert again["first_name"] == "Ana" and again["phone"] == PHONE


async def test_merged_additional_info_is_size_limited(
    client: TestClient, sessions: SessionFactory, tenant_a: Tenant
) -> None:
    lead = await _upsert(
        sessions, tenant_a.account_id, phone=PHONE, additional_info={"a": "x" * 9_000}
    )
    response = client.patch(
        f"/v1/leads/{lead.id}",
        headers=tenant_a.headers,
        json={"additional_info": {"b": "y" * 9_000}},
    )
    assert response.status_code == 422 and response.json()["error"]["field"] == "additional_info"


def test_unknown_lead_is_404(client: TestClient, tenant_a: Tenant) -> None:
    assert client.get("/v1/leads/lead_nope", headers=tenant_a.headers).status_code == 404
    assert client.patch("/v1/leads/lead_nope", headers=tenant_a.headers, json={}).status_code == 404


async def test_non_finite_numbers_are_422(
    client: TestClient, sessions: SessionFactory, tenant_a: Tenant
) -> None:
    lead = await _upsert(sessions, tenant_a.account_id, phone=PHONE)
    headers = {**tenant_a.headers, "Content-Type": "application/json"}
    response = client.patch(
        f"/v1/leads/{lead.id}", headers=headers, content='{"additional_info": {"a": NaN}}'
    )
    assert response.status_code == 422 and response.json()["error"]["field"] == "additional_info"
    client.put(
        "/v1/playbooks/hello",
        content="name: H\nsteps:\n  - id: a\n    kind: wait\n    duration: 1h\n",
        headers={**tenant_a.headers, "Content-Type": "application/yaml"},
    )
    rule = client.post(
        "/v1/sources",
        headers=headers,
        content='{"origin": "X", "playbook_id": "hello", "distribution": "manual",'
        ' "settings": {"x": Infinity}}',
    )
    assert rule.status_code == 422 and rule.json()["error"]["field"] == "settings.x"
