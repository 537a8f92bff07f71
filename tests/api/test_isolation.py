"""Tenant isolation on every playbook, rep, source and lead route: account A's key gets 404 for
account B's objects, can't reference them, and never sees them in a list."""

from __future__ import annotations

from starlette.testclient import TestClient

from gateway.db import SessionFactory, transaction
from gateway.leads import LeadCreate, upsert_lead
from tests.support.tenants import Tenant

from .conftest import PLAYBOOK_YAML, YAML, add_rep, publish

PHONE = "+14155550123"


async def test_a_cannot_see_or_touch_b(
    client: TestClient, sessions: SessionFactory, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    publish(client, tenant_b, "b-only")
    rep = add_rep(client, tenant_b, "Bea", "+14155550109")
    rule = client.post(
        "/v1/sources",
        headers=tenant_b.headers,
        json={"origin": "EverQuote", "playbook_id": "b-only", "rep_ids": [rep]},
    ).json()
    async with transaction(sessions) as session:
        lead = await upsert_lead(
            session,
            tenant_b.account_id,
            LeadCreate.model_validate(
                {"phone": PHONE, "originators": [{"origin": "EverQuote", "key": "eq-1"}]}
            ),
        )
    a = tenant_a.headers

    # Reads and writes of B's objects by id: 404, and nothing changes.
    not_found = [
        client.get("/v1/playbooks/b-only", headers=a),
        client.get("/v1/playbooks/b-only?version=1", headers=a),
        client.get(f"/v1/reps/{rep}", headers=a),
        client.patch(f"/v1/reps/{rep}", headers=a, json={"available": False}),
        client.delete(f"/v1/reps/{rep}", headers=a),
        client.get(f"/v1/sources/{rule['id']}", headers=a),
        client.patch(f"/v1/sources/{rule['id']}", headers=a, json={"origin": "Mine"}),
        client.post(f"/v1/sources/{rule['id']}/clone", headers=a, json={"origin": "Mine"}),
        client.delete(f"/v1/sources/{rule['id']}", headers=a),
        client.get(f"/v1/leads/{lead.id}", headers=a),
        client.patch(f"/v1/leads/{lead.id}", headers=a, json={"first_name": "Eve"}),
    ]
    assert [r.status_code for r in not_found] == [404] * len(not_found)

    # Lists and searches show nothing of B.
    for path in (
        "/v1/playbooks",
        "/v1/reps",
        "/v1/sources",
        "/v1/sources?origin=EverQuote",
        "/v1/leads",
        f"/v1/leads?phone={PHONE}",
        "/v1/leads?origin=EverQuote&key=eq-1",
    ):
        assert client.get(path, headers=a).json()["data"] == [], path

    # B's playbook and reps can't be referenced by A.
    publish(client, tenant_a, "a-own")
    for payload, field in [
        ({"origin": "X", "playbook_id": "b-only", "distribution": "manual"}, "playbook_id"),
        ({"origin": "X", "playbook_id": "a-own", "rep_ids": [rep]}, "rep_ids[0]"),
    ]:
        response = client.post("/v1/sources", headers=a, json=payload)
        assert response.status_code == 422 and response.json()["error"]["field"] == field
    goto_b = "name: G\nsteps:\n  - id: go\n    kind: goto\n    playbook: b-only\n"
    # B's playbook is not A's: for A it is not published yet (a warning, not an error).
    warned = client.put("/v1/playbooks/g", content=goto_b, headers={**a, **YAML})
    assert warned.status_code == 201
    assert "unknown_playbook" in [w["code"] for w in warned.json()["warnings"]]
    checked = client.post("/v1/playbooks/validate", content=goto_b, headers={**a, **YAML})
    assert "unknown_playbook" in [w["code"] for w in checked.json()["warnings"]]

    # The same playbook id and origin are A's own, independent of B's.
    mine = client.put("/v1/playbooks/b-only", content=PLAYBOOK_YAML, headers={**a, **YAML})
    assert mine.status_code == 201 and mine.json()["version"] == 1
    own_rule = client.post(
        "/v1/sources",
        headers=a,
        json={"origin": "EverQuote", "playbook_id": "b-only", "distribution": "manual"},
    )
    assert own_rule.status_code == 201

    # B still has everything, unchanged.
    b = tenant_b.headers
    assert client.get(f"/v1/reps/{rep}", headers=b).json()["available"] is True
    assert client.get(f"/v1/sources/{rule['id']}", headers=b).json()["origin"] == "EverQuote"
    assert client.get(f"/v1/leads/{lead.id}", headers=b).json()["first_name"] is None
    assert client.get("/v1/playbooks/b-only", headers=b).json()["latest_version"] == 1
    assert [p["id"] for p in client.get("/v1/playbooks", headers=b).json()["data"]] == ["b-only"]
