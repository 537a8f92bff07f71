"""The opt-out ledger through the API: manual entries, status, listing, exports, isolation."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.testclient import TestClient

from gateway import accounts, optouts
from gateway.db import SessionFactory, transaction
from gateway.exports import FIELDS
from gateway.models import Channel, LedgerEvent, LedgerSource

PHONE = "+14155550123"


def auth(issued: accounts.IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued.secret}"}


def test_manual_opt_out_then_status(client: TestClient, issued_key: accounts.IssuedKey) -> None:
    created = client.post(
        "/v1/opt-outs",
        headers=auth(issued_key),
        json={
            "phone": "(415) 555-0123",
            "channel": "email",
            "text": "please remove me",
            "actor": "jane@acme.example",
            "received_at": "2026-11-20T15:00:00Z",
        },
    )
    assert created.status_code == 201, created.text
    event = created.json()
    assert event["phone"] == PHONE
    assert event["event"] == "opt_out"
    assert event["channel"] == "email" and event["source"] == "api"
    assert event["received_at"] == "2026-11-20T15:00:00Z"
    assert event["local_time"] == "2026-11-20T07:00:00-08:00 America/Los_Angeles"
    assert event["actor"] == "jane@acme.example"

    status = client.get(f"/v1/opt-outs/{PHONE}", headers=auth(issued_key)).json()
    assert status["status"] == "opted_out"
    assert status["since"] == "2026-11-20T15:00:00Z"
    assert [h["id"] for h in status["history"]] == [event["id"]]


def test_status_of_unknown_phone_is_subscribed(
    client: TestClient, issued_key: accounts.IssuedKey
) -> None:
    body = client.get("/v1/opt-outs/+14155550199", headers=auth(issued_key)).json()
    assert body == {"phone": "+14155550199", "status": "subscribed", "since": None, "history": []}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"phone": "12"}, "phone"),
        ({"phone": "+1415555012"}, "phone"),
        ({"phone": PHONE, "channel": "pigeon"}, "channel"),
        ({"phone": PHONE, "surprise": 1}, "surprise"),
        ({"phone": PHONE, "received_at": "2026-11-20T15:00:00"}, "received_at"),
        ({"phone": PHONE, "received_at": "2999-01-01T00:00:00Z"}, "received_at"),
        ({}, "phone"),
    ],
)
def test_bad_manual_entries_are_422_and_change_nothing(
    client: TestClient, issued_key: accounts.IssuedKey, payload: dict[str, object], field: str
) -> None:
    response = client.post("/v1/opt-outs", headers=auth(issued_key), json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert client.get("/v1/opt-outs", headers=auth(issued_key)).json()["data"] == []


def test_malformed_bodies_are_400(client: TestClient, issued_key: accounts.IssuedKey) -> None:
    for body in (b"{", b"[1, 2]", b"\xff\xfe", b'"text"'):
        response = client.post("/v1/opt-outs", headers=auth(issued_key), content=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "bad_json"


async def test_opt_in_after_opt_out_resubscribes(
    client: TestClient, issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    account_id = issued_key.key.account_id
    async with transaction(sessions) as session:
        await optouts.record(
            session,
            account_id=account_id,
            phone=PHONE,
            event=LedgerEvent.OPT_OUT,
            channel=Channel.SMS,
            source=LedgerSource.KEYWORD,
            text="STOP",
            keyword="stop",
            rule="keyword",
            message_sid="SM1",
            inbound_number="+14155550100",
        )
        assert await optouts.is_opted_out(session, account_id, PHONE)
        await optouts.record(
            session,
            account_id=account_id,
            phone=PHONE,
            event=LedgerEvent.OPT_IN,
            channel=Channel.SMS,
            source=LedgerSource.KEYWORD,
            text="START",
            keyword="start",
        )
        assert not await optouts.is_opted_out(session, account_id, PHONE)
    status = client.get(f"/v1/opt-outs/{PHONE}", headers=auth(issued_key)).json()
    assert status["status"] == "subscribed"
    assert [h["event"] for h in status["history"]] == ["opt_out", "opt_in"]


async def test_ledger_is_append_only(
    issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    async with transaction(sessions) as session:
        await optouts.record(
            session,
            account_id=issued_key.key.account_id,
            phone=PHONE,
            event=LedgerEvent.OPT_OUT,
            channel=Channel.API,
            source=LedgerSource.API,
        )
    for statement in ("UPDATE opt_out_events SET phone = '+1'", "DELETE FROM opt_out_events"):
        with pytest.raises((DBAPIError, IntegrityError), match="append-only"):
            async with transaction(sessions) as session:
                await session.exec(text(statement))  # type: ignore[call-overload]
    async with sessions() as session:
        assert await optouts.is_opted_out(session, issued_key.key.account_id, PHONE)


async def test_list_filters_and_cursor(
    client: TestClient, issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    start = datetime(2026, 11, 1, 12, tzinfo=UTC)
    async with transaction(sessions) as session:
        for i in range(5):
            await optouts.record(
                session,
                account_id=issued_key.key.account_id,
                phone=f"+1415555010{i}",
                event=LedgerEvent.OPT_OUT,
                channel=Channel.SMS if i % 2 else Channel.WEB,
                source=LedgerSource.KEYWORD if i == 3 else LedgerSource.API,
                received_at=start + timedelta(days=i),
            )
    headers = auth(issued_key)
    first = client.get("/v1/opt-outs?limit=2", headers=headers).json()
    assert [r["phone"] for r in first["data"]] == ["+14155550100", "+14155550101"]
    second = client.get(f"/v1/opt-outs?limit=2&cursor={first['next_cursor']}", headers=headers)
    assert [r["phone"] for r in second.json()["data"]] == ["+14155550102", "+14155550103"]
    window = client.get(
        "/v1/opt-outs?since=2026-11-02T00:00:00Z&until=2026-11-04T00:00:00Z", headers=headers
    ).json()
    assert [r["phone"] for r in window["data"]] == ["+14155550101", "+14155550102"]
    assert window["next_cursor"] is None
    sms = client.get("/v1/opt-outs?channel=sms", headers=headers).json()
    assert [r["phone"] for r in sms["data"]] == ["+14155550101", "+14155550103"]
    keyword = client.get("/v1/opt-outs?source=keyword", headers=headers).json()
    assert [r["phone"] for r in keyword["data"]] == ["+14155550103"]
    both = client.get("/v1/opt-outs?channel=sms&source=api", headers=headers).json()
    assert [r["phone"] for r in both["data"]] == ["+14155550101"]
    by_phone = client.get("/v1/opt-outs?phone=4155550104", headers=headers).json()
    assert [r["phone"] for r in by_phone["data"]] == ["+14155550104"]
    for bad in (
        "limit=0",
        "limit=5000",
        "cursor=abc",
        "since=yesterday",
        "channel=fax",
        "source=rumour",
        "since=2026-11-04T00:00:00Z&until=2026-11-01T00:00:00Z",
        "bogus=1",
    ):
        response = client.get(f"/v1/opt-outs?{bad}", headers=headers)
        assert response.status_code == 422, bad


async def test_csv_and_jsonl_export(
    client: TestClient, issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    account_id = issued_key.key.account_id
    received = datetime(2026, 11, 20, 15, 0, 0, tzinfo=UTC)
    async with transaction(sessions) as session:
        event = await optouts.record(
            session,
            account_id=account_id,
            phone=PHONE,
            event=LedgerEvent.OPT_OUT,
            channel=Channel.SMS,
            source=LedgerSource.PHRASE,
            received_at=received,
            text='=HYPERLINK("x") stop texting me',
            rule="phrase",
            keyword="stop texting me",
            message_sid="SMin",
            inbound_number="+14155550100",
        )
        await optouts.record_confirmation(
            session, event, body="Acme: unsubscribed.", message_sid="SMout"
        )
    csv_response = client.get("/v1/opt-outs/export?format=csv", headers=auth(issued_key))
    assert csv_response.status_code == 200
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_response.text)))
    assert tuple(rows[0].keys()) == FIELDS
    assert len(rows) == 1
    row = rows[0]
    assert row["phone"] == PHONE and row["source"] == "phrase"
    assert row["text"].startswith("'=HYPERLINK")  # neutralized for spreadsheets
    assert row["confirmation_sid"] == "SMout"
    assert float(row["seconds_to_confirmation"]) > 0

    jsonl = client.get("/v1/opt-outs/export?format=jsonl", headers=auth(issued_key))
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert len(lines) == 1
    assert lines[0]["text"] == '=HYPERLINK("x") stop texting me'  # verbatim in JSON
    assert lines[0]["confirmation_body"] == "Acme: unsubscribed."

    empty = client.get(
        "/v1/opt-outs/export?format=csv&since=2026-11-21T00:00:00Z", headers=auth(issued_key)
    )
    assert empty.text.strip().split("\r\n") == [",".join(FIELDS)]
    assert client.get("/v1/opt-outs/export?format=xml", headers=auth(issued_key)).status_code == 422


async def test_accounts_see_only_their_own_ledger(
    client: TestClient, sessions: SessionFactory
) -> None:
    async with transaction(sessions) as session:
        _a, key_a = await accounts.create_account(session, "A")
        _b, key_b = await accounts.create_account(session, "B")
    assert (
        client.post("/v1/opt-outs", headers=auth(key_a), json={"phone": PHONE}).status_code == 201
    )
    assert client.get("/v1/opt-outs", headers=auth(key_b)).json()["data"] == []
    # The filters stay inside the key's account: B's search by A's channel and source is empty.
    filtered = client.get("/v1/opt-outs?channel=api&source=api", headers=auth(key_b)).json()
    assert filtered["data"] == []
    assert len(client.get("/v1/opt-outs?source=api", headers=auth(key_a)).json()["data"]) == 1
    assert client.get(f"/v1/opt-outs/{PHONE}", headers=auth(key_b)).json()["status"] == "subscribed"
    assert client.get("/v1/opt-outs/export?format=jsonl", headers=auth(key_b)).text == ""
    assert client.get("/v1/opt-outs/export?source=api", headers=auth(key_b)).text.count("\r\n") == 1
    assert client.get(f"/v1/opt-outs/{PHONE}", headers=auth(key_a)).json()["status"] == "opted_out"


def test_opt_out_routes_need_a_key(client: TestClient) -> None:
    for method, path in (
        ("GET", "/v1/opt-outs"),
        ("POST", "/v1/opt-outs"),
        ("GET", "/v1/opt-outs/export"),
        ("GET", f"/v1/opt-outs/{PHONE}"),
    ):
        assert client.request(method, path).status_code == 401


def test_ledger_filters_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/opt-outs", "/v1/opt-outs/export"):
        parameters = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert {"since", "until", "phone", "channel", "source"} <= set(parameters), path
    source = {p["name"]: p for p in paths["/v1/opt-outs"]["get"]["parameters"]}["source"]
    assert "keyword" in json.dumps(source["schema"])  # the enum's values, not a bare string
