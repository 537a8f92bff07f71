"""What a lead's phone shows after STOP, START and HELP: exactly one answer each, Twilio's on
a long code with its default opt-out handling (the default set-up), the gateway's when the
account says Twilio's handling is off, and the opt-out recorded in the ledger either way."""

from __future__ import annotations

from sqlmodel import col, select

from gateway.models import OptOutEvent
from tests.support.stack import LEAD, OUR_NUMBER, Stack
from twilio_sandbox.messaging import KEYWORD_REPLIES


async def _text(stack: Stack, body: str) -> list[tuple[str, str]]:
    """The lead texts `body`; every answer it gets afterwards as (direction, body)."""
    before = len(stack.sandbox.messaging.conversation(LEAD))
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, body)
    await stack.sandbox.settle()
    await stack.work()  # anything the gateway queued in answer is sent and delivered
    after = stack.sandbox.messaging.conversation(LEAD)[before:]
    assert [m.body for m in after if m.from_ == LEAD] == [body]
    assert all(m.status == "delivered" for m in after if m.to == LEAD)
    return [(m.direction, m.body) for m in after if m.to == LEAD]


async def _ledger(stack: Stack) -> list[tuple[str, str]]:
    async with stack.sessions() as session:
        events = (await session.exec(select(OptOutEvent).order_by(col(OptOutEvent.id)))).all()
    return [(e.event, e.source) for e in events]


async def test_by_default_twilio_answers_and_the_gateway_only_records(stack: Stack) -> None:
    assert await _text(stack, "STOP") == [("outbound-reply", KEYWORD_REPLIES["STOP"])]
    assert await _ledger(stack) == [("opt_out", "keyword")]
    assert (await stack.api.get(f"/v1/opt-outs/{LEAD}")).json()["status"] == "opted_out"

    assert await _text(stack, "START") == [("outbound-reply", KEYWORD_REPLIES["START"])]
    assert await _ledger(stack) == [("opt_out", "keyword"), ("opt_in", "keyword")]

    assert await _text(stack, "HELP") == [("outbound-reply", KEYWORD_REPLIES["HELP"])]
    assert len(await _ledger(stack)) == 2  # help changes nothing
    assert stack.creates() == []  # the gateway sent no second answer to any of them


async def test_with_twilios_handling_off_the_gateway_answers(stack: Stack) -> None:
    # The Twilio account's default opt-out handling is off, and the account says so.
    stack.sandbox.set_opt_out_handling(OUR_NUMBER, keyword_replies=False, stop_filtering=False)
    patched = await stack.api.patch(
        "/v1/account", json={"compliance": {"twilio_answers_default_keywords": False}}
    )
    assert patched.status_code == 200, patched.text

    [(direction, body)] = await _text(stack, "STOP")
    assert direction == "outbound-api" and "Acme Lending: you are unsubscribed" in body
    assert await _ledger(stack) == [("opt_out", "keyword")]

    [(direction, body)] = await _text(stack, "START")
    assert direction == "outbound-api" and "Acme Lending: you are resubscribed" in body
    assert await _ledger(stack) == [("opt_out", "keyword"), ("opt_in", "keyword")]

    [(direction, body)] = await _text(stack, "HELP")
    assert direction == "outbound-api" and "Acme Lending: for help contact" in body
    assert len(stack.creates(To=LEAD)) == 3
