"""Every kind of REST call the gateway makes, through the real twilio client, must be
accepted by Twilio's published schema (Prism with --errors answers 422 on a violation)
and by the sandbox, so the sandbox cannot drift from Twilio."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from gateway.twilio_client import build_twilio_client
from tests.support.servers import serve
from twilio_sandbox import Sandbox

pytestmark = pytest.mark.contract

ACCOUNT_SID = "AC" + "c0" * 16
AUTH_TOKEN = "contract-token"
FROM = "+15005550006"
LEAD = "+15551230001"
REP = "+15551230002"
HOOK = "https://gateway.example.com/twilio"


@pytest.fixture(params=["twilio-schema", "sandbox"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Client, Sandbox | None]]:
    if request.param == "twilio-schema":
        twilio = build_twilio_client(
            ACCOUNT_SID, AUTH_TOKEN, api_base_url=request.getfixturevalue("prism_url"), timeout=10
        )
        yield twilio, None
        await twilio.http_client.close()
        return
    sandbox = Sandbox(ACCOUNT_SID, AUTH_TOKEN)
    sandbox.add_number(FROM)
    async with serve(sandbox.app) as url:
        twilio = build_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=url, timeout=10)
        yield twilio, sandbox
        await twilio.http_client.close()


def _request_was_valid(body: str) -> bool:
    """Prism --errors also flags its own generated *responses* (500, location 'response'):
    those say nothing about our request, which is what this test checks."""
    try:
        problems = json.loads(body).get("validation", [])
    except ValueError:
        return False
    return bool(problems) and all(p.get("location", [""])[0] == "response" for p in problems)


async def _accepted(twilio: Client, what: str, call: Awaitable[Any]) -> Any:
    try:
        return await call
    except TwilioException as error:
        last = twilio.http_client._test_only_last_response
        if last is not None and last.status_code == 500 and _request_was_valid(last.text):
            return None
        detail = last.text if last is not None else str(error)
        pytest.fail(f"{what} rejected: {detail}")


async def test_gateway_requests_match_twilios_schema(client: tuple[Client, Sandbox | None]) -> None:
    twilio, sandbox = client
    msg = await _accepted(
        twilio,
        "messages.create",
        twilio.messages.create_async(
            to=LEAD,
            from_=FROM,
            body="Hi, it's Acme Lending. Reply STOP to opt out.",
            status_callback=f"{HOOK}/sms/status",
            validity_period=600,
        ),
    )
    assert msg.sid.startswith("SM")
    await _accepted(twilio, "messages.fetch", twilio.messages(msg.sid).fetch_async())
    await _accepted(twilio, "messages.list", twilio.messages.list_async(to=LEAD, limit=20))
    # Registering a number asks whether the account owns it (gateway/number_ownership.py).
    await _accepted(
        twilio,
        "incoming_phone_numbers.list",
        twilio.incoming_phone_numbers.list_async(phone_number=FROM, limit=20),
    )

    call = await _accepted(
        twilio,
        "calls.create",
        twilio.calls.create_async(
            to=LEAD,
            from_=FROM,
            url=f"{HOOK}/voice/lead",
            timeout=25,
            status_callback=f"{HOOK}/voice/status",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            machine_detection="DetectMessageEnd",
            async_amd="true",
            async_amd_status_callback=f"{HOOK}/voice/amd",
        ),
    )
    call_sid = call.sid
    await _accepted(twilio, "calls.fetch", twilio.calls(call_sid).fetch_async())

    held = await _accepted(
        twilio,
        "calls.create (TwiML)",
        twilio.calls.create_async(
            to=REP, from_=FROM, twiml='<Response><Pause length="60"/></Response>'
        ),
    )
    if sandbox is not None:
        await sandbox.advance(10)  # a redirect needs an answered call
    await _accepted(
        twilio,
        "calls.update (Url)",
        twilio.calls(held.sid).update_async(url=f"{HOOK}/voice/next", method="POST"),
    )
    await _accepted(
        twilio, "calls.update (completed)", twilio.calls(call_sid).update_async(status="completed")
    )

    participant = await _accepted(
        twilio,
        "participants.create",
        twilio.conferences("pl-0001").participants.create_async(
            from_=FROM,
            to=REP,
            label="rep",
            timeout=20,
            beep="false",
            start_conference_on_enter=True,
            end_conference_on_exit=True,
            status_callback=f"{HOOK}/voice/rep-status",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            conference_status_callback=f"{HOOK}/voice/conference",
            conference_status_callback_event=["start", "end", "join", "leave"],
        ),
    )
    conference_sid = participant.conference_sid
    if sandbox is not None:
        await sandbox.advance(10)
    await _accepted(twilio, "conferences.fetch", twilio.conferences(conference_sid).fetch_async())
    await _accepted(
        twilio,
        "participants.update",
        twilio.conferences(conference_sid)
        .participants(participant.call_sid)
        .update_async(hold=True, muted=False),
    )
    await _accepted(
        twilio,
        "conferences.update",
        twilio.conferences(conference_sid).update_async(status="completed"),
    )
    if sandbox is not None:
        kinds = [entry.kind for entry in sandbox.record.requests()]
        assert "participants.create" in kinds and all(
            e.status < 400 for e in sandbox.record.requests()
        )


async def test_prism_rejects_a_schema_violation(prism_url: str) -> None:
    """The contract test has teeth: a request outside Twilio's schema gets 422."""
    twilio = build_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=prism_url, timeout=10)
    try:
        with pytest.raises(TwilioException):
            await twilio.calls.create_async(
                to=LEAD, from_=FROM, url=f"{HOOK}/voice", status_callback_method="PATCH"
            )
        assert twilio.http_client._test_only_last_response.status_code == 422
    finally:
        await twilio.http_client.close()
