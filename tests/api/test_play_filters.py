"""`GET /v1/plays` filtered by rep, source (a lead origin) and a start-time range, as the
console's Conversations list uses them: each filter narrows to exactly the matching plays of the
caller's account, and a bad value is a 422 naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from tests.support.tenants import Tenant

from .conftest import add_rep, publish


def _start(client: TestClient, tenant: Tenant, phone: str, origin: str | None) -> str:
    lead: dict[str, object] = {"phone": phone}
    if origin is not None:
        lead["originators"] = [{"origin": origin, "key": phone}]
    response = client.post(
        "/v1/plays", headers=tenant.headers, json={"playbook_id": "hello", "lead": lead}
    )
    assert response.status_code == 201, response.text
    play_id = response.json()["id"]
    assert isinstance(play_id, str)
    return play_id


def _ids(client: TestClient, tenant: Tenant, **query: str) -> list[str]:
    response = client.get("/v1/plays", headers=tenant.headers, params=query)
    assert response.status_code == 200, response.text
    return [play["id"] for play in response.json()["data"]]


def test_rep_source_and_date_range_filters(
    client: TestClient, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    for tenant in (tenant_a, tenant_b):
        publish(client, tenant)
    quote = _start(client, tenant_a, "+14155550101", "EverQuote")
    other = _start(client, tenant_a, "+14155550102", "SmartFinancial")
    bare = _start(client, tenant_a, "+14155550103", None)
    theirs = _start(client, tenant_b, "+14155550101", "EverQuote")
    rep = add_rep(client, tenant_a, "Dana", "+14155550109")
    lead_id = client.get(f"/v1/plays/{other}", headers=tenant_a.headers).json()["lead_id"]
    assigned = client.post(
        f"/v1/leads/{lead_id}/assign", headers=tenant_a.headers, json={"rep_id": rep}
    )
    assert assigned.status_code == 200, assigned.text

    assert _ids(client, tenant_a, source="EverQuote") == [quote]
    assert _ids(client, tenant_b, source="EverQuote") == [theirs]
    assert _ids(client, tenant_a, source="Nobody") == []
    assert _ids(client, tenant_a, rep_id=rep) == [other]
    # Another account's rep id finds nothing of this account, and this one's nothing of B's.
    assert _ids(client, tenant_b, rep_id=rep) == []
    assert _ids(client, tenant_a, rep_id=rep, source="EverQuote") == []

    created = [
        client.get(f"/v1/plays/{p}", headers=tenant_a.headers).json()["created_at"]
        for p in (quote, other, bare)
    ]
    first = datetime.fromisoformat(created[0])
    last = datetime.fromisoformat(created[2])
    assert _ids(client, tenant_a, since=first.isoformat()) == [quote, other, bare]
    # `until` is exclusive: the last play started at it is left out.
    assert bare not in _ids(client, tenant_a, until=last.isoformat())
    after = (last + timedelta(seconds=1)).isoformat()
    assert _ids(client, tenant_a, since=first.isoformat(), until=after) == [quote, other, bare]
    assert _ids(client, tenant_a, until=first.isoformat()) == []


def test_bad_filters_are_422s_naming_the_field(client: TestClient, tenant_a: Tenant) -> None:
    now = datetime.now(UTC)
    for query, field in (
        ({"since": now.isoformat(), "until": (now - timedelta(days=1)).isoformat()}, "until"),
        ({"since": now.isoformat(), "until": now.isoformat()}, "until"),
        ({"until": "yesterday"}, "until"),
        ({"source": ""}, "source"),
        ({"source": "x" * 101}, "source"),
        ({"rep_id": "r" * 41}, "rep_id"),
    ):
        response = client.get("/v1/plays", headers=tenant_a.headers, params=query)
        assert response.status_code == 422, (query, response.text)
        assert response.json()["error"]["field"] == field, query
