"""Faults on demand: each one exercised against the sandbox itself."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from gateway.twilio_client import build_twilio_client
from tests.twilio_sandbox.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    LEAD,
    OUR_NUMBER,
    CallbackRecorder,
)
from twilio_sandbox import CallbackFault, RestFault, Sandbox


async def _send(client: Client, receiver: CallbackRecorder) -> str:
    msg = await client.messages.create_async(
        to=LEAD, from_=OUR_NUMBER, body="x", status_callback=receiver.url("/status")
    )
    return str(msg.sid)


def _statuses(receiver: CallbackRecorder) -> list[str]:
    return [h.params["MessageStatus"] for h in receiver.at("/status")]


async def test_duplicate_callback(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.faults.add_callback(
        CallbackFault("duplicate", kind="sms.status", params={"MessageStatus": "delivered"})
    )
    await _send(client, receiver)
    await sandbox.settle()
    assert _statuses(receiver) == ["sent", "delivered", "delivered"]
    assert [e.fault for e in sandbox.record.callbacks("sms.status")] == [None, None, "duplicate"]


async def test_out_of_order_callbacks(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.faults.add_callback(CallbackFault("reorder", params={"MessageStatus": "sent"}))
    await _send(client, receiver)
    await sandbox.settle()
    assert _statuses(receiver) == ["delivered", "sent"]


async def test_late_callback(client: Client, sandbox: Sandbox, receiver: CallbackRecorder) -> None:
    sandbox.faults.add_callback(CallbackFault("delay", params={"MessageStatus": "sent"}, delay=120))
    await _send(client, receiver)
    await sandbox.advance(60)
    assert _statuses(receiver) == ["delivered"]
    await sandbox.advance(70)
    assert _statuses(receiver) == ["delivered", "sent"]


async def test_dropped_callback(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.faults.add_callback(CallbackFault("drop", params={"MessageStatus": "delivered"}))
    await _send(client, receiver)
    await sandbox.settle()
    assert _statuses(receiver) == ["sent"]
    [dropped] = sandbox.record.callbacks("sms.status", MessageStatus="delivered")
    assert dropped.fault == "drop" and dropped.status is None


async def test_rest_500_for_n_requests(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.faults.add_rest(RestFault("error500", kind="messages.create", times=2))
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            await _send(client, receiver)
        assert raised.value.status == 500
    await _send(client, receiver)
    assert [e.status for e in sandbox.record.requests("messages.create")] == [500, 500, 201]


async def test_rest_429_until_a_virtual_time(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.faults.add_rest(RestFault("rate_limit", times=None, until=sandbox.clock.seconds + 30))
    with pytest.raises(TwilioRestException) as raised:
        await _send(client, receiver)
    assert raised.value.code == 20429 and raised.value.status == 429
    await sandbox.advance(29)
    with pytest.raises(TwilioRestException):
        await _send(client, receiver)
    await sandbox.advance(1)
    await _send(client, receiver)


async def test_rest_hang_times_out_the_client(sandbox: Sandbox, sandbox_url: str) -> None:
    sandbox.faults.add_rest(RestFault("hang", kind="calls.create"))
    twilio = build_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=sandbox_url, timeout=0.2)
    try:
        with pytest.raises((asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            await twilio.calls.create_async(to=LEAD, from_=OUR_NUMBER, twiml="<Response/>")
        sandbox.faults.clear()
        call = await twilio.calls.create_async(to=LEAD, from_=OUR_NUMBER, twiml="<Response/>")
        assert call.status == "queued"
    finally:
        await twilio.http_client.close()
    assert len(sandbox.record.requests("calls.create")) == 2
