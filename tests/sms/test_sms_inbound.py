"""Inbound texts end to end: the sandbox's phones text our number; Twilio's webhooks arrive
signed at the gateway, which appends them; the `sms.inbox` job handles STOP, START and HELP
and records them in the ledger."""

from __future__ import annotations

import asyncio
import csv
import io

from sqlmodel import col, func, select

from gateway.models import Message, OptOutEvent, WebhookClaim
from tests.support.stack import LEAD, OUR_NUMBER, Stack


async def _send(stack: Stack, body: str, phone: str = LEAD) -> dict[str, object]:
    response = await stack.api.post("/v1/messages", json={"phone": phone, "body": body})
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


async def _ledger(stack: Stack) -> list[OptOutEvent]:
    async with stack.sessions() as session:
        return list((await session.exec(select(OptOutEvent).order_by(col(OptOutEvent.id)))).all())


async def test_stop_keyword_blocks_later_texts_and_is_exported(stack: Stack) -> None:
    await stack.say("STOP")
    [event] = await _ledger(stack)
    assert (event.event, event.channel, event.source, event.keyword) == (
        "opt_out", "sms", "keyword", "stop"
    )  # fmt: skip
    assert event.text == "STOP" and event.inbound_number == OUR_NUMBER
    assert event.message_sid is not None and event.message_sid.startswith("SM")
    assert event.local_time.endswith("America/Los_Angeles")
    # Twilio answers its own default keywords on a long code: no second confirmation from us.
    await stack.work()
    assert stack.creates() == []

    blocked = await _send(stack, "Still interested?")
    assert blocked["status"] == "blocked" and blocked["gate_reason"] == "opted_out"
    await stack.work()
    assert stack.creates() == []

    call_check = await stack.api.get(f"/v1/opt-outs/{LEAD}")
    assert call_check.json()["status"] == "opted_out"
    export = await stack.api.get("/v1/opt-outs/export?format=csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["phone"], r["event"], r["source"]) for r in rows] == [(LEAD, "opt_out", "keyword")]


async def test_stop_phrase_gets_one_confirmation(stack: Stack) -> None:
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "please stop texting me")
    await stack.sandbox.settle()
    await stack.work()
    [confirmation] = stack.creates(To=LEAD)
    assert "unsubscribed" in (confirmation.get("Body") or "")
    assert "Acme Lending" in (confirmation.get("Body") or "")
    # The lead says it again: logged, not answered again.
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "stop texting me!!")
    await stack.sandbox.settle()
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1
    events = await _ledger(stack)
    assert [(e.event, e.source) for e in events] == [("opt_out", "phrase"), ("opt_out", "phrase")]
    export = await stack.api.get("/v1/opt-outs/export?format=jsonl")
    first = next(line for line in export.text.splitlines() if line)
    assert confirmation.sid in first and '"seconds_to_confirmation": ' in first
    assert (await _send(stack, "offer"))["status"] == "blocked"


async def test_start_resubscribes(stack: Stack) -> None:
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "STOP")
    await stack.sandbox.settle()
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "START")
    await stack.sandbox.settle()
    await stack.work()  # both wait in the inbox, and are taken in the order they came
    assert [e.event for e in await _ledger(stack)] == ["opt_out", "opt_in"]
    message = await _send(stack, "Welcome back")
    await stack.work()
    final = (await stack.api.get(f"/v1/messages/{message['id']}")).json()
    assert final["status"] == "delivered"


async def test_help_gets_the_accounts_help_text(stack: Stack) -> None:
    patched = await stack.api.patch(
        "/v1/account",
        json={"compliance": {"twilio_answers_default_keywords": False, "help_contact": "555-0100"}},
    )
    assert patched.status_code == 200
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "HELP")
    await stack.sandbox.settle()
    await stack.work()
    [reply] = stack.creates(To=LEAD)
    body = reply.get("Body") or ""
    assert "Acme Lending" in body and "555-0100" in body
    assert "Msg&data rates may apply" in body and "STOP" in body
    assert await _ledger(stack) == []  # help changes nothing


async def test_same_inbound_webhook_ten_times_at_once_counts_once(stack: Stack) -> None:
    params = {
        "MessageSid": "SM" + "7" * 32,
        "SmsSid": "SM" + "7" * 32,
        "AccountSid": stack.settings.twilio_sid,
        "From": LEAD,
        "To": OUR_NUMBER,
        "Body": "please remove me from your list",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    responses = await asyncio.gather(*(stack.post_twilio("/twilio/sms", params) for _ in range(10)))
    assert all(r.status_code == 200 for r in responses)
    assert all(r.text.endswith("<Response/>") for r in responses)

    async def counts() -> tuple[int, int]:
        async with stack.sessions() as session:
            messages = (await session.exec(select(func.count()).select_from(Message))).one()
            claims = (
                await session.exec(select(func.count()).where(col(WebhookClaim.kind) == "sms_in"))
            ).one()
        return messages, claims

    assert await counts() == (0, 1)  # appended once; acted on by the inbox job
    await stack.work()
    assert await counts() == (2, 1)  # the text itself and the one confirmation
    assert len(await _ledger(stack)) == 1
    assert len(stack.creates(To=LEAD)) == 1


async def test_text_from_unknown_number_is_stored(stack: Stack) -> None:
    stranger = "+13125550188"
    await stack.say("who is this?", phone=stranger)
    listed = (await stack.api.get(f"/v1/messages?phone={stranger}")).json()["data"]
    assert [(m["direction"], m["body"], m["lead_id"]) for m in listed] == [
        ("inbound", "who is this?", None)
    ]


async def test_media_is_recorded(stack: Stack) -> None:
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "my ID", ["https://example.com/id.jpg"])
    await stack.sandbox.settle()
    await stack.work()
    [message] = (await stack.api.get(f"/v1/messages?phone={LEAD}")).json()["data"]
    assert message["media"] == ["https://example.com/id.jpg"]
