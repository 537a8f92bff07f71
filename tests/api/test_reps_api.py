"""Reps through the API: create, read, change, delete, and the refusals."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.support.tenants import Tenant

from .conftest import add_rep, publish


def test_rep_lifecycle(client: TestClient, tenant_a: Tenant) -> None:
    created = client.post(
        "/v1/reps",
        headers=tenant_a.headers,
        json={"name": "Sam", "phone": "(415) 555-0101", "email": "Sam@Acme.COM"},
    )
    assert created.status_code == 201, created.text
    rep = created.json()
    assert rep["phone"] == "+14155550101" and rep["email"] == "Sam@acme.com"
    assert rep["available"] is True and rep["id"].startswith("rep_")

    assert client.get(f"/v1/reps/{rep['id']}", headers=tenant_a.headers).json() == rep
    changed = client.patch(
        f"/v1/reps/{rep['id']}", headers=tenant_a.headers, json={"available": False, "email": None}
    ).json()
    assert changed["available"] is False and changed["email"] is None
    assert changed["name"] == "Sam"

    add_rep(client, tenant_a, "Kim", "+14155550102")
    everyone = client.get("/v1/reps", headers=tenant_a.headers).json()["data"]
    assert [r["name"] for r in everyone] == ["Sam", "Kim"]
    away = client.get("/v1/reps?available=false", headers=tenant_a.headers).json()["data"]
    assert [r["name"] for r in away] == ["Sam"]

    assert client.delete(f"/v1/reps/{rep['id']}", headers=tenant_a.headers).status_code == 204
    assert client.get(f"/v1/reps/{rep['id']}", headers=tenant_a.headers).status_code == 404
    assert client.delete(f"/v1/reps/{rep['id']}", headers=tenant_a.headers).status_code == 404


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "X", "phone": "12"}, "phone"),
        ({"name": "X", "phone": "+1415555010"}, "phone"),
        ({"name": "", "phone": "+14155550101"}, "name"),
        ({"name": "X", "phone": "+14155550101", "email": "nope"}, "email"),
        ({"name": "X", "phone": "+14155550101", "boss": True}, "boss"),
        ({"phone": "+14155550101"}, "name"),
    ],
)
def test_bad_reps_are_422(
    client: TestClient, tenant_a: Tenant, payload: dict[str, object], field: str
) -> None:
    response = client.post("/v1/reps", headers=tenant_a.headers, json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert client.get("/v1/reps", headers=tenant_a.headers).json()["data"] == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"phone": "555"}, "phone"), ({"name": None}, "name"), ({"available": None}, "available")],
)
def test_bad_rep_changes_are_422(
    client: TestClient, tenant_a: Tenant, payload: dict[str, object], field: str
) -> None:
    rep_id = add_rep(client, tenant_a, "Sam", "+14155550101")
    response = client.patch(f"/v1/reps/{rep_id}", headers=tenant_a.headers, json=payload)
    assert response.status_code == 422 and response.json()["error"]["field"] == field
    assert client.get(f"/v1/reps/{rep_id}", headers=tenant_a.headers).json()["name"] == "Sam"


def test_delete_refused_while_a_rule_lists_the_rep(client: TestClient, tenant_a: Tenant) -> None:
    publish(client, tenant_a)
    rep_id = add_rep(client, tenant_a, "Sam", "+14155550101")
    rule = client.post(
        "/v1/sources",
        headers=tenant_a.headers,
        json={"origin": "EverQuote", "playbook_id": "hello", "rep_ids": [rep_id]},
    ).json()
    refused = client.delete(f"/v1/reps/{rep_id}", headers=tenant_a.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["existing_id"] == rule["id"]
    assert client.get(f"/v1/reps/{rep_id}", headers=tenant_a.headers).status_code == 200
    assert client.delete(f"/v1/sources/{rule['id']}", headers=tenant_a.headers).status_code == 204
    assert client.delete(f"/v1/reps/{rep_id}", headers=tenant_a.headers).status_code == 204
