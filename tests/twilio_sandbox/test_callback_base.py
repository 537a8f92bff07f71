"""A sandbox told the gateway's base URL calls back nothing else: not through its control API,
not through IncomingPhoneNumbers, not through a StatusCallback given to Messages.create."""

from __future__ import annotations

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from gateway.twilio_client import build_twilio_client
from tests.support.servers import serve
from tests.twilio_sandbox.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    LEAD,
    OUR_NUMBER,
    CallbackRecorder,
    make_sandbox,
)
from twilio_sandbox import Sandbox
from twilio_sandbox.callbacks import under_base


@pytest.fixture
def fenced(receiver: CallbackRecorder) -> Sandbox:
    """Only the receiver's /gw/... counts as the gateway."""
    sandbox = make_sandbox(callback_base=receiver.url("/gw"))
    sandbox.add_number(OUR_NUMBER)
    return sandbox


async def test_status_callbacks_outside_the_base_are_not_sent(
    fenced: Sandbox, receiver: CallbackRecorder
) -> None:
    async with serve(fenced.app) as url:
        twilio = build_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=url, timeout=5)
        try:
            for path in ("/gw/status", "/elsewhere", "/gw/../elsewhere"):
                await twilio.messages.create_async(
                    to=LEAD, from_=OUR_NUMBER, body="hi", status_callback=receiver.url(path)
                )
        finally:
            await twilio.http_client.close()
        await fenced.settle()
    assert {hit.path for hit in receiver.hits} == {"/gw/status"}
    refused = [c for c in fenced.record.callbacks("sms.status") if c.error]
    assert refused and all((c.error or "").startswith("refused") for c in refused)


async def test_buying_a_number_with_an_outside_url_is_refused(
    fenced: Sandbox, receiver: CallbackRecorder
) -> None:
    async with serve(fenced.app) as url:
        twilio = build_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=url, timeout=5)
        try:
            with pytest.raises(TwilioRestException) as caught:
                await twilio.incoming_phone_numbers.create_async(
                    phone_number="+15005550009", sms_url="http://127.0.0.1:1/x"
                )
            assert caught.value.code == 21205
            bought = await twilio.incoming_phone_numbers.create_async(
                phone_number="+15005550009", sms_url=receiver.url("/gw/sms")
            )
            listed = await twilio.incoming_phone_numbers.list_async(phone_number="+15005550009")
        finally:
            await twilio.http_client.close()
    assert [n.sid for n in listed] == [bought.sid]
    assert fenced.numbers["+15005550009"].sms_url == receiver.url("/gw/sms")


async def test_control_api_refuses_an_outside_sms_url(
    fenced: Sandbox, receiver: CallbackRecorder
) -> None:
    async with (
        serve(fenced.app) as url,
        httpx.AsyncClient(base_url=url, auth=(ACCOUNT_SID, AUTH_TOKEN)) as http,
    ):
        refused = await http.post(
            "/_sandbox/numbers", json={"number": "+15005550008", "sms_url": "http://[::1]:6379/"}
        )
        accepted = await http.post(
            "/_sandbox/numbers", json={"number": "+15005550007", "sms_url": receiver.url("/gw")}
        )
    assert refused.status_code == 400 and "+15005550008" not in fenced.numbers
    assert accepted.status_code == 200 and "+15005550007" in fenced.numbers


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://gw.example.com/twilio/sms", True),
        ("https://gw.example.com", True),
        ("https://GW.example.com/twilio/sms", True),
        ("http://gw.example.com/twilio/sms", False),
        ("https://gw.example.com:444/twilio/sms", False),
        ("https://gw.example.com.evil.net/twilio/sms", False),
        ("https://user@gw.example.com/twilio/sms", False),
        ("https://gw.example.com:x/", False),
        ("https://gw.example.com/a/./b", False),
    ],
)
def test_under_base(url: str, allowed: bool) -> None:
    assert under_base(url, "https://gw.example.com") is allowed


async def test_messaging_services_answer_like_twilio(receiver: CallbackRecorder) -> None:
    sandbox: Sandbox = make_sandbox()
    sandbox.add_number(OUR_NUMBER, messaging_service_sid="MG" + "1" * 32)
    async with serve(sandbox.app) as url:
        twilio = build_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=url, timeout=5)
        try:
            service = twilio.messaging.v1.services("MG" + "1" * 32)
            fetched = await service.fetch_async()
            pool = await service.phone_numbers.list_async()
            with pytest.raises(TwilioRestException) as caught:
                await twilio.messaging.v1.services("MG" + "2" * 32).fetch_async()
        finally:
            await twilio.http_client.close()
    assert fetched.sid == "MG" + "1" * 32
    assert [p.phone_number for p in pool] == [OUR_NUMBER]
    assert caught.value.status == 404
