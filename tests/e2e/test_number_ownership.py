"""A number and a Messaging Service belong to at most one account, only numbers the Twilio
account owns can be registered (asked through the real twilio library, of the sandbox), and an
inbound text is routed only by a registered `To`: never guessed from its service SID."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select

from gateway import accounts
from gateway.api import numbers as numbers_api
from gateway.db import transaction
from gateway.models import Message, MessagingService, OptOutEvent
from tests.support.stack import LEAD, OUR_NUMBER, Stack

SERVICE_A = "MG" + "a" * 32
SERVICE_B = "MG" + "b" * 32
NUMBER_A2 = "+14155550101"  # in A's service
NUMBER_B = "+14155550102"  # B's own number
NOT_OURS = "+14155550199"  # a number the Twilio account never bought
UNREGISTERED = "+14155550103"  # owned by the Twilio account, registered by nobody


@pytest.fixture
async def other(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """Account B's API client on the same gateway."""
    async with transaction(stack.sessions) as session:
        _account, key = await accounts.create_account(session, "Other Lending")
    headers = {"Authorization": f"Bearer {key.secret}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=30) as client:
        yield client


def _register(number: str, service: str | None = None) -> dict[str, str]:
    body = {"number": number}
    if service is not None:
        body["messaging_service_sid"] = service
    return body


async def test_another_accounts_number_answers_as_an_unowned_one(
    stack: Stack, other: httpx.AsyncClient
) -> None:
    taken = await other.post("/v1/numbers", json=_register(OUR_NUMBER))  # A registered it
    unowned = await other.post("/v1/numbers", json=_register(NOT_OURS))
    assert taken.status_code == unowned.status_code == 409
    assert (
        taken.json()
        == unowned.json()
        == {
            "error": {
                "code": "unavailable",
                "message": "number is not available to this account",
                "field": "number",
            }
        }
    )
    assert (await other.get("/v1/numbers")).json()["data"] == []
    # The Twilio account was asked about the unowned number, through its REST API.
    lookups = stack.sandbox.record.requests("incoming_phone_numbers.list", PhoneNumber=NOT_OURS)
    assert len(lookups) == 1
    # A's own second try is told plainly: it is A's.
    again = await stack.api.post("/v1/numbers", json=_register(OUR_NUMBER))
    assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")


async def test_another_accounts_service_answers_as_a_missing_one(
    stack: Stack, other: httpx.AsyncClient
) -> None:
    stack.sandbox.add_number(NUMBER_A2, messaging_service_sid=SERVICE_A)
    stack.sandbox.add_number(NUMBER_B, messaging_service_sid=SERVICE_A)  # in A's pool too
    created = await stack.api.post("/v1/numbers", json=_register(NUMBER_A2, SERVICE_A))
    assert created.status_code == 201, created.text

    taken = await other.post("/v1/numbers", json=_register(NUMBER_B, SERVICE_A))
    missing = await other.post("/v1/numbers", json=_register(NUMBER_B, "MG" + "c" * 32))
    assert taken.status_code == missing.status_code == 409
    assert (
        taken.json()
        == missing.json()
        == {
            "error": {
                "code": "unavailable",
                "message": "messaging service is not available to this account",
                "field": "messaging_service_sid",
            }
        }
    )
    assert (await other.get("/v1/numbers")).json()["data"] == []
    # Once A lets its last number of the service go, the service is free for B.
    listed = (await stack.api.get("/v1/numbers")).json()["data"]
    a2 = next(n for n in listed if n["number"] == NUMBER_A2)
    assert (await stack.api.delete(f"/v1/numbers/{a2['id']}")).status_code == 204
    freed = await other.post("/v1/numbers", json=_register(NUMBER_B, SERVICE_A))
    assert freed.status_code == 201, freed.text


async def test_a_number_outside_the_services_pool_is_refused(stack: Stack) -> None:
    stack.sandbox.add_service(SERVICE_A)
    stack.sandbox.add_number(NUMBER_A2)  # owned, but not in the service
    answer = await stack.api.post("/v1/numbers", json=_register(NUMBER_A2, SERVICE_A))
    assert answer.status_code == 409
    assert answer.json()["error"]["field"] == "messaging_service_sid"


async def test_the_database_keeps_a_service_in_one_account(stack: Stack) -> None:
    async with transaction(stack.sessions) as session:
        other, _key = await accounts.create_account(session, "Other Lending")
        session.add(MessagingService(sid=SERVICE_A, account_id=stack.account_id))
    with pytest.raises(IntegrityError):
        async with transaction(stack.sessions) as session:
            session.add(MessagingService(sid=SERVICE_A, account_id=other.id))


async def _inbound_stop(stack: Stack, to: str, service: str, sid: str) -> httpx.Response:
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": stack.settings.twilio_sid,
        "MessagingServiceSid": service,
        "From": LEAD,
        "To": to,
        "Body": "STOP",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    return await stack.post_twilio("/twilio/sms", params)


async def _nothing_recorded(stack: Stack) -> None:
    async with stack.sessions() as session:
        assert (await session.exec(select(func.count()).select_from(OptOutEvent))).one() == 0
        assert (await session.exec(select(func.count()).select_from(Message))).one() == 0


async def test_stop_to_an_unregistered_number_is_routed_to_nobody(stack: Stack) -> None:
    stack.sandbox.add_number(NUMBER_A2, messaging_service_sid=SERVICE_A)
    stack.sandbox.add_number(UNREGISTERED, messaging_service_sid=SERVICE_A)
    created = await stack.api.post("/v1/numbers", json=_register(NUMBER_A2, SERVICE_A))
    assert created.status_code == 201, created.text

    answer = await _inbound_stop(stack, UNREGISTERED, SERVICE_A, "SM" + "1" * 32)
    assert answer.status_code == 200 and answer.text.endswith("<Response/>")
    await _nothing_recorded(stack)
    status = await stack.api.get(f"/v1/opt-outs/{LEAD}")
    assert status.json()["status"] != "opted_out"


async def test_a_number_and_another_accounts_service_route_nowhere(
    stack: Stack, other: httpx.AsyncClient
) -> None:
    stack.sandbox.add_number(NUMBER_B, messaging_service_sid=SERVICE_B)
    created = await other.post("/v1/numbers", json=_register(NUMBER_B, SERVICE_B))
    assert created.status_code == 201, created.text
    # To is A's number, the service is B's: the two disagree, so nobody gets the STOP.
    answer = await _inbound_stop(stack, OUR_NUMBER, SERVICE_B, "SM" + "2" * 32)
    assert answer.status_code == 200 and answer.text.endswith("<Response/>")
    await _nothing_recorded(stack)


async def test_an_account_has_a_bounded_count_of_numbers(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every text sent alone reads its account's numbers: past the bound (2 here; 100 as
    shipped), a registration is a 409 that changes nothing, and deleting one makes room."""
    monkeypatch.setattr(numbers_api, "MAX_NUMBERS", 2)
    stack.sandbox.add_number(NUMBER_A2)
    stack.sandbox.add_number(NUMBER_B)
    second = await stack.api.post("/v1/numbers", json=_register(NUMBER_A2))
    assert second.status_code == 201, second.text
    refused = await stack.api.post("/v1/numbers", json=_register(NUMBER_B))
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "limit_reached"
    listed = (await stack.api.get("/v1/numbers")).json()["data"]
    assert sorted(n["number"] for n in listed) == [OUR_NUMBER, NUMBER_A2]
    # The same number again is still "already registered", not the bound.
    again = await stack.api.post("/v1/numbers", json=_register(NUMBER_A2))
    assert again.json()["error"]["code"] == "conflict", again.text
    deleted = await stack.api.delete(f"/v1/numbers/{second.json()['id']}")
    assert deleted.status_code == 204, deleted.text
    third = await stack.api.post("/v1/numbers", json=_register(NUMBER_B))
    assert third.status_code == 201, third.text
