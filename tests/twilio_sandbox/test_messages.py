"""SMS through the real twilio client into the sandbox, callbacks back to a receiver."""

from __future__ import annotations

from datetime import timedelta

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from gateway.twilio_client import build_twilio_client
from tests.support.servers import serve
from tests.twilio_sandbox.conftest import (
    ACCOUNT_SID,
    LEAD,
    OUR_NUMBER,
    CallbackRecorder,
    make_sandbox,
)
from twilio_sandbox import Reply, Sandbox


async def test_sms_is_delivered_with_signed_status_callbacks(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    msg = await client.messages.create_async(
        to=LEAD,
        from_=OUR_NUMBER,
        body="Hi Ann, it's Acme Lending",
        status_callback=receiver.url("/status"),
    )
    assert msg.status == "queued"
    assert msg.sid.startswith("SM") and msg.account_sid == ACCOUNT_SID
    assert msg.num_segments == "1" and msg.date_created is not None

    await sandbox.advance(5)

    hits = receiver.at("/status")
    assert [h.params["MessageStatus"] for h in hits] == ["sent", "delivered"]
    assert all(h.signature_ok for h in hits)
    delivered = hits[-1].params
    assert delivered["MessageSid"] == delivered["SmsSid"] == msg.sid
    assert delivered["SmsStatus"] == "delivered" and delivered["AccountSid"] == ACCOUNT_SID
    assert (delivered["From"], delivered["To"], delivered["ApiVersion"]) == (
        OUR_NUMBER,
        LEAD,
        "2010-04-01",
    )
    fetched = await client.messages(msg.sid).fetch_async()
    assert fetched.status == "delivered" and fetched.date_sent is not None
    assert len(sandbox.record.requests("messages.create", to=LEAD)) == 1


async def test_landline_and_unreachable_are_undelivered(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.phones.script("+15551230011", line_type="landline")
    sandbox.phones.script("+15551230012", unreachable=True)
    for to in ("+15551230011", "+15551230012"):
        await client.messages.create_async(
            to=to, from_=OUR_NUMBER, body="x", status_callback=receiver.url("/status")
        )
    await sandbox.settle()
    final = {
        h.params["To"]: h.params
        for h in receiver.at("/status")
        if h.params["MessageStatus"] != "sent"
    }
    assert final["+15551230011"]["MessageStatus"] == "undelivered"
    assert final["+15551230011"]["ErrorCode"] == "30006"
    assert final["+15551230012"]["ErrorCode"] == "30003"


async def test_list_filters_by_to_and_date_sent(client: Client, sandbox: Sandbox) -> None:
    for to in (LEAD, "+15551239999", LEAD):
        await client.messages.create_async(to=to, from_=OUR_NUMBER, body="hello")
    await sandbox.settle()
    listed = await client.messages.list_async(to=LEAD)
    assert len(listed) == 2 and {m.to for m in listed} == {LEAD}
    today = sandbox.now()
    assert len(await client.messages.list_async(date_sent_after=today - timedelta(days=1))) == 3
    assert await client.messages.list_async(date_sent_before=today - timedelta(days=1)) == []
    assert len(await client.messages.list_async(from_=OUR_NUMBER, page_size=2)) == 3


async def test_reply_and_stop_reach_the_sms_webhook_and_opt_out(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.phones.script(LEAD, replies=[Reply("YES", after=10), Reply("STOP", after=3)])
    await client.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="Still looking?")
    await sandbox.advance(5)
    assert receiver.at("/sms") == []
    await sandbox.advance(10)
    [yes] = receiver.at("/sms")
    assert (
        yes.signature_ok and yes.params["Body"] == "YES" and yes.params["SmsStatus"] == "received"
    )
    for name in ("MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "NumMedia", "NumSegments"):
        assert name in yes.params
    assert "OptOutType" not in yes.params

    await client.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="Great, when?")
    await sandbox.settle()
    assert [h.params["Body"] for h in receiver.at("/sms")] == ["YES", "STOP"]
    with pytest.raises(TwilioRestException) as raised:
        await client.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="one more")
    assert raised.value.code == 21610 and raised.value.status == 400

    sandbox.send_sms(LEAD, OUR_NUMBER, "START")
    await sandbox.settle()
    await client.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="welcome back")


async def test_advanced_opt_out_and_twiml_reply(receiver: CallbackRecorder) -> None:
    sandbox = make_sandbox(advanced_opt_out=True)
    sandbox.add_number(OUR_NUMBER, sms_url=receiver.url("/sms"))
    receiver.answers["/sms"] = "<Response><Message>You are unsubscribed.</Message></Response>"
    sandbox.send_sms(LEAD, OUR_NUMBER, "stop", media_urls=["https://example.com/a.jpg"])
    await sandbox.settle()
    [hit] = receiver.at("/sms")
    assert hit.params["OptOutType"] == "STOP" and hit.params["NumMedia"] == "1"
    assert hit.params["MediaUrl0"] == "https://example.com/a.jpg"
    # The TwiML <Message> is not sent: the phone just opted out (21610), as on Twilio. Only
    # Twilio's own confirmation of the STOP goes out (an `outbound-reply`, not a create).
    assert [m.direction for m in sandbox.messaging.messages.values()] == [
        "inbound",
        "outbound-reply",
    ]
    sandbox.send_sms(LEAD, OUR_NUMBER, "HELP")
    await sandbox.settle()
    sandbox.send_sms(LEAD, OUR_NUMBER, "START")
    await sandbox.settle()
    assert [h.params["OptOutType"] for h in receiver.at("/sms")] == ["STOP", "HELP", "START"]
    # After START the TwiML reply goes out.
    outbound = [m for m in sandbox.messaging.messages.values() if m.direction == "outbound-api"]
    assert [(m.to, m.body, m.status) for m in outbound] == [
        (LEAD, "You are unsubscribed.", "delivered")
    ]
    await sandbox.aclose()


@pytest.mark.parametrize(("to", "code"), [("555-1234", 21211), ("+1", 21211), ("", 21201)])
async def test_invalid_to_is_rejected(client: Client, to: str, code: int) -> None:
    with pytest.raises(TwilioRestException) as raised:
        await client.messages.create_async(to=to, from_=OUR_NUMBER, body="x")
    assert raised.value.code == code and raised.value.status == 400


async def test_landline_rejected_at_create_when_checking_line_type(
    receiver: CallbackRecorder,
) -> None:
    sandbox = make_sandbox(check_line_type=True)
    sandbox.add_number(OUR_NUMBER)
    sandbox.phones.script("+15551230011", line_type="landline")
    async with serve(sandbox.app) as url:
        twilio = build_twilio_client(ACCOUNT_SID, "sandbox-test-token", api_base_url=url)
        try:
            with pytest.raises(TwilioRestException) as raised:
                await twilio.messages.create_async(to="+15551230011", from_=OUR_NUMBER, body="x")
            assert raised.value.code == 21614
            assert sandbox.record.requests("messages.create")[0].error_code == 21614
        finally:
            await twilio.http_client.close()


async def test_bad_credentials_and_unknown_sid(sandbox_url: str, client: Client) -> None:
    wrong = build_twilio_client(ACCOUNT_SID, "not-the-token", api_base_url=sandbox_url)
    try:
        with pytest.raises(TwilioRestException) as raised:
            await wrong.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="x")
        assert raised.value.code == 20003 and raised.value.status == 401
    finally:
        await wrong.http_client.close()
    with pytest.raises(TwilioRestException) as missing:
        await client.messages("SM" + "0" * 32).fetch_async()
    assert missing.value.code == 20404 and missing.value.status == 404


async def test_rate_limit_answers_20429(receiver: CallbackRecorder) -> None:
    sandbox = make_sandbox(rate_limit=3)
    sandbox.add_number(OUR_NUMBER)
    async with serve(sandbox.app) as url:
        twilio = build_twilio_client(ACCOUNT_SID, "sandbox-test-token", api_base_url=url)
        try:
            for _ in range(3):
                await twilio.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="x")
            with pytest.raises(TwilioRestException) as raised:
                await twilio.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="x")
            assert raised.value.code == 20429 and raised.value.status == 429
            await sandbox.advance(1.5)  # the window is one virtual second
            await twilio.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="x")
        finally:
            await twilio.http_client.close()
