"""A state's frequency cap counts every initiated contact, texts and calls together: in
Florida (3 per rolling 24 hours) three texts hold back the party line's call, and three call
attempts hold back the text that follows them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, select

from gateway.models import Message, PlayLog
from tests.support.party_line import (
    add_reps,
    add_rule,
    begin,
    calls_to,
    drive,
    party_lines,
    publish_call_now,
    texts_to,
)
from tests.support.stack import Stack

FLORIDA = "+13055550123"  # Miami: America/New_York, Florida's cap of 3 per 24 hours


async def _messages(stack: Stack) -> list[Message]:
    async with stack.sessions() as session:
        rows = await session.exec(
            select(Message)
            .where(Message.lead_phone == FLORIDA, Message.direction == "outbound")
            .order_by(col(Message.created_at))
        )
        return list(rows.all())


async def test_three_texts_hold_back_the_call(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    for n in range(3):
        sent = await stack.api.post("/v1/messages", json={"phone": FLORIDA, "body": f"Offer {n}"})
        assert sent.status_code == 201, sent.text
    await stack.work()
    assert len(texts_to(stack, FLORIDA)) == 3

    play_id = await begin(stack, FLORIDA, rule_id=rule)
    await drive(stack)
    [row] = await party_lines(stack, play_id)
    assert row.phase == "lead_retry_wait"
    assert calls_to(stack, FLORIDA) == []
    async with stack.sessions() as session:
        gate_logs = (await session.exec(select(PlayLog).where(PlayLog.play_id == play_id))).all()
    [decided] = [entry for entry in gate_logs if entry.kind == "party_line_gate"]
    assert (decided.detail["action"], decided.detail["reason"]) == ("defer", "frequency_cap")
    # Called again once the oldest text is 24 hours old.
    first_text = min(m.attempt_started_at for m in await _messages(stack) if m.attempt_started_at)
    assert row.state["retry_at"] is not None
    assert row.wake_at == first_text + timedelta(hours=24)


async def test_three_call_attempts_hold_back_the_text(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    # One text after the calls: the playbook's. (A second one queued behind a deferred text
    # would retry every second until the first goes; see the report on gateway/sms/sender.py.)
    settings = {"party_line_lead_retries": 2, "party_line_text_back_when_unreached": False}
    play_id = await begin(stack, FLORIDA, rule_id=rule, settings=settings, answer=False)
    await drive(stack)
    for _ in range(2):  # the policy's retry delay is 10 minutes
        await stack.sandbox.advance(10 * 60 + 1)
        await drive(stack)
    assert len(calls_to(stack, FLORIDA)) == 3
    [row] = await party_lines(stack, play_id)
    assert row.end_reason == "lead_unreached"

    # The playbook's "Sorry we missed you!" would be a 4th contact within 24 hours: it waits.
    assert texts_to(stack, FLORIDA) == []
    [waiting] = await _messages(stack)
    assert waiting.body.startswith("Sorry we missed you!")
    assert (waiting.status, waiting.gate_reason) == ("queued", "frequency_cap")
    first_call = min(leg["requested_at"] for leg in row.state["lead_legs"])
    assert waiting.send_after == datetime.fromisoformat(first_call) + timedelta(hours=24)
