"""`GET /v1/emails` and `GET /v1/emails/{id}`: filters, pagination, clear 4xx for bad input, and
tenant isolation (account A's key never sees account B's emails)."""

from __future__ import annotations

from datetime import timedelta

from starlette.testclient import TestClient

from gateway import accounts
from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.ids import new_id
from gateway.models import Email, EmailStatus, Lead


async def account_with_email(
    sessions: SessionFactory, name: str, phone: str, count: int = 1
) -> tuple[dict[str, str], str, list[str]]:
    """A new account, its auth header, a lead and `count` captured emails to it."""
    async with transaction(sessions) as session:
        account, key = await accounts.create_account(session, name)
        lead = Lead(id=new_id("lead"), account_id=account.id, phone=phone, email="a@b.example")
        session.add(lead)
        await session.flush()
        ids = []
        for i in range(count):
            email = Email(
                id=new_id("eml"),
                account_id=account.id,
                lead_id=lead.id,
                play_id="play_x",
                to_address="a@b.example",
                subject=f"Hello {i}",
                body="Hi",
                status=EmailStatus.CAPTURED,
                created_at=now() + timedelta(seconds=i),
            )
            session.add(email)
            ids.append(email.id)
    return {"Authorization": f"Bearer {key.secret}"}, lead.id, ids


async def test_a_cannot_see_b(client: TestClient, sessions: SessionFactory) -> None:
    a, a_lead, [a_email] = await account_with_email(sessions, "A", "+14155550101")
    b, b_lead, [b_email] = await account_with_email(sessions, "B", "+14155550102")
    assert client.get(f"/v1/emails/{b_email}", headers=a).status_code == 404
    assert client.get(f"/v1/emails/{b_email}", headers=b).status_code == 200
    assert client.get(f"/v1/emails/{a_email}", headers=a).json()["subject"] == "Hello 0"
    listed = client.get("/v1/emails", headers=a).json()["data"]
    assert [e["id"] for e in listed] == [a_email]
    for query in (f"lead_id={b_lead}", "play_id=play_x&lead_id=" + b_lead):
        assert client.get(f"/v1/emails?{query}", headers=a).json()["data"] == []
    assert len(client.get(f"/v1/emails?lead_id={a_lead}", headers=a).json()["data"]) == 1
    assert client.get("/v1/emails").status_code == 401


async def test_pages_and_filters(client: TestClient, sessions: SessionFactory) -> None:
    headers, _lead, ids = await account_with_email(sessions, "A", "+14155550101", count=3)
    first = client.get("/v1/emails?limit=2", headers=headers).json()
    assert [e["id"] for e in first["data"]] == ids[:2]
    rest = client.get(f"/v1/emails?limit=2&cursor={first['next_cursor']}", headers=headers)
    assert [e["id"] for e in rest.json()["data"]] == ids[2:]
    assert rest.json()["next_cursor"] is None
    assert client.get("/v1/emails?status=sent", headers=headers).json()["data"] == []
    assert len(client.get("/v1/emails?status=captured", headers=headers).json()["data"]) == 3


async def test_bad_queries_are_clear_4xx(client: TestClient, sessions: SessionFactory) -> None:
    headers, _lead, _ids = await account_with_email(sessions, "A", "+14155550101")
    for query, field in [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("cursor=nonsense", "cursor"),
        ("cursor=99999999999999999999999~x", "cursor"),
    ]:
        response = client.get(f"/v1/emails?{query}", headers=headers)
        assert response.status_code == 422, (query, response.text)
        assert response.json()["error"]["field"] == field
    unknown = client.get("/v1/emails?colour=red", headers=headers)
    assert unknown.status_code == 422
    missing = client.get("/v1/emails/eml_nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
