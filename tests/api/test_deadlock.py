"""A request PostgreSQL ends in a deadlock is a 503 the client may retry at once, never a 500,
and it changes nothing (gateway/errors.py `is_conflict`)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import make_url
from starlette.testclient import TestClient

from tests.conftest import TEST_DATABASE_URL
from tests.support.tenants import Tenant

from .conftest import publish

pytestmark = pytest.mark.skipif(TEST_DATABASE_URL is None, reason="a deadlock PostgreSQL ends")

PHONE = "+14155550123"


def _start(client: TestClient, tenant: Tenant) -> tuple[int, dict[str, object], str | None]:
    response = client.post(
        "/v1/plays",
        headers=tenant.headers,
        json={"playbook_id": "hello", "lead": {"phone": PHONE, "first_name": "Ann"}},
    )
    return response.status_code, response.json(), response.headers.get("retry-after")


async def _waiting(connection: asyncpg.Connection) -> bool:
    """Whether another backend of this test's database waits for a lock (the request, on the
    lead's row); other test sessions have databases of their own."""
    found = await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    return bool(found)


async def test_a_request_postgresql_ends_in_a_deadlock_is_a_503_and_changes_nothing(
    client: TestClient, tenant_a: Tenant, database_url: str
) -> None:
    publish(client, tenant_a)
    status, body, _ = _start(client, tenant_a)
    assert status == 201, body
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    other = await asyncpg.connect(dsn)
    try:
        async with other.transaction():
            # The other transaction ends the cycle: the request's backend, with the default
            # deadlock_timeout of 1 s, is the one that finds it and gives way.
            await other.execute("SET LOCAL deadlock_timeout = '30s'")
            await other.execute(
                "SELECT 1 FROM leads WHERE account_id = $1 AND phone = $2 FOR UPDATE",
                tenant_a.account_id,
                PHONE,
            )
            # A second start for the lead: it takes the contact's lock, then waits for the lead's
            # row, which the other transaction holds.
            request = asyncio.create_task(asyncio.to_thread(_start, client, tenant_a))
            for _ in range(200):
                if await _waiting(other):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the request never waited for the lead's row")
            # Now the other transaction wants the contact's lock: a cycle.
            await other.execute(
                "INSERT INTO contact_locks (account_id, phone, touches) VALUES ($1, $2, 1) "
                "ON CONFLICT (account_id, phone) DO UPDATE SET touches = contact_locks.touches + 1",
                tenant_a.account_id,
                PHONE,
            )
            status, body, retry_after = await asyncio.wait_for(request, 30)
            raise _RollBack
    except _RollBack:
        pass
    finally:
        await other.close()
    assert status == 503, body
    assert retry_after == "1"
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "service_unavailable"
    assert "conflict" in error["message"]
    # Nothing changed: the lead has its one play, and the same request again is answered.
    listed = client.get("/v1/plays", headers=tenant_a.headers).json()["data"]
    assert len(listed) == 1
    status, body, _ = _start(client, tenant_a)
    assert status == 409, body


class _RollBack(Exception):
    """Ends the other transaction without writing anything."""
