"""API-key authentication on /v1: no key, bad key, revoked key, good key; errors are JSON."""

from __future__ import annotations

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.testclient import TestClient

from gateway import accounts
from gateway.db import SessionFactory, create_engine, read_alone, session_factory, transaction


def test_no_key_is_401_json(client: TestClient) -> None:
    response = client.get("/v1/account")
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "unauthorized", "message": "missing API key: send `Authorization: <key>`"}
    }
    assert response.headers["www-authenticate"] == "Bearer"


def test_bad_key_is_401(client: TestClient, issued_key: accounts.IssuedKey) -> None:
    for header in ("gw_wrong", "Bearer gw_wrong", issued_key.secret[:-1], "Bearer "):
        response = client.get("/v1/account", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == "unauthorized"


def test_good_key_plain_and_bearer(client: TestClient, issued_key: accounts.IssuedKey) -> None:
    for header in (issued_key.secret, f"Bearer {issued_key.secret}", f"bearer {issued_key.secret}"):
        response = client.get("/v1/account", headers={"Authorization": header})
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == issued_key.key.account_id
        assert body["name"] == "Acme Lending"
        assert body["api_key"] == {"id": issued_key.key.id, "prefix": issued_key.key.prefix}


async def test_revoked_key_is_401(
    client: TestClient, issued_key: accounts.IssuedKey, sessions: SessionFactory
) -> None:
    assert (
        client.get("/v1/account", headers={"Authorization": issued_key.secret}).status_code == 200
    )
    async with transaction(sessions) as session:
        await accounts.revoke_key(session, issued_key.key.id)
    response = client.get("/v1/account", headers={"Authorization": issued_key.secret})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid or revoked API key"


async def test_each_key_sees_only_its_own_account(
    client: TestClient, sessions: SessionFactory
) -> None:
    async with transaction(sessions) as session:
        a, key_a = await accounts.create_account(session, "A")
        b, key_b = await accounts.create_account(session, "B")
    assert client.get("/v1/account", headers={"Authorization": key_a.secret}).json()["id"] == a.id
    assert client.get("/v1/account", headers={"Authorization": key_b.secret}).json()["id"] == b.id


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    wrong = client.post("/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_patch_account_compliance_settings(
    client: TestClient, issued_key: accounts.IssuedKey
) -> None:
    headers = {"Authorization": issued_key.secret}
    response = client.patch(
        "/v1/account",
        headers=headers,
        json={"compliance": {"timezone": "America/Chicago", "window_start": "09:30"}},
    )
    assert response.status_code == 200, response.text
    settings = response.json()["compliance"]
    assert settings["timezone"] == "America/Chicago"
    assert settings["window_start"] == "09:30:00"
    assert settings["window_end"] == "20:00:00"
    assert client.get("/v1/account", headers=headers).json()["compliance"] == settings

    for bad, field in (
        ({"window_end": "21:00"}, "compliance"),  # wider than the law allows
        ({"timezone": "Mars/Olympus"}, "compliance.timezone"),
        ({"window_days": [7]}, "compliance.window_days"),
        ({"loud": True}, "compliance.loud"),
    ):
        refused = client.patch("/v1/account", headers=headers, json={"compliance": bad})
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["field"] == field
    assert client.get("/v1/account", headers=headers).json()["compliance"] == settings
    assert client.patch("/v1/account", headers=headers, json={"id": "x"}).status_code == 422


async def test_the_key_lookup_is_one_read_outside_a_transaction_on_postgresql(
    database_url: str, issued_key: accounts.IssuedKey
) -> None:
    """`read_alone`: on PostgreSQL the lookup runs with no transaction open on the server (no
    BEGIN, no COMMIT), and the pool's next user of that connection is in one again."""
    if not database_url.startswith("postgresql"):
        pytest.skip("on SQLite it is a brief read (tests/gateway/test_sqlite_driver.py)")
    engine = create_engine(database_url)  # its own pool: one connection, used in turn
    sessions = session_factory(engine)

    async def in_transaction(session: AsyncSession) -> bool:
        raw = await (await session.connection()).get_raw_connection()
        return bool(raw.driver_connection.is_in_transaction())  # asyncpg asks the protocol

    try:
        async with read_alone(sessions) as session:
            found = await accounts.authenticate(session, issued_key.secret)
            assert not await in_transaction(session)
        assert found is not None and found[1].id == issued_key.key.id
        async with transaction(sessions) as session:
            await accounts.authenticate(session, issued_key.secret)
            assert await in_transaction(session)
    finally:
        await engine.dispose()
