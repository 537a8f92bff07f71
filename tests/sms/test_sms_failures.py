"""What a failed or late-reported text does, end to end: statuses only move forward (nothing
after a final status changes the message or resends it), a sender number Twilio refuses is the
account's set-up problem (never the lead's), and a lead-fault error records its code."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, func, select

from gateway.clock import now
from gateway.job_context import as_ctx
from gateway.models import (
    Lead,
    Message,
    MessageEvent,
    Play,
    PlayLog,
    SenderNumber,
)
from gateway.sms import errors
from gateway.work.sweep import sweep
from gateway.worker import opened_job_context
from tests.e2e.test_plays_api import play_body, publish
from tests.support.stack import LEAD, OUR_NUMBER, Stack

OTHER_LEAD = "+14155550124"


async def _outbound_count(stack: Stack) -> int:
    async with stack.sessions() as session:
        query = select(func.count()).select_from(Message).where(Message.direction == "outbound")
        return int((await session.exec(query)).one())


async def _message(stack: Stack, message_id: str) -> Message:
    async with stack.sessions() as session:
        message = await session.get(Message, message_id)
    assert message is not None
    return message


async def _sender(stack: Stack) -> SenderNumber:
    async with stack.sessions() as session:
        query = select(SenderNumber).where(SenderNumber.number == OUR_NUMBER)
        return (await session.exec(query)).one()


async def _lead(stack: Stack, phone: str) -> Lead:
    async with stack.sessions() as session:
        query = select(Lead).where(Lead.account_id == stack.account_id, Lead.phone == phone)
        return (await session.exec(query)).one()


async def _sweep_and_work(stack: Stack) -> None:
    """What the cron sweep does once the clock has moved: enqueue all due work, then run."""
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        await sweep(as_ctx(jc))
    await stack.work()


async def _text(stack: Stack, phone: str, body: str) -> str:
    """A text to the lead with that phone (created first, so its phone status can be read)."""
    lead = await stack.api.post("/v1/leads", json={"phone": phone, "first_name": "Ann"})
    assert lead.status_code == 201, lead.text
    lead_id = lead.json()["lead"]["id"]
    created = await stack.api.post("/v1/messages", json={"lead_id": lead_id, "body": body})
    assert created.status_code == 201, created.text
    message_id = created.json()["id"]
    assert isinstance(message_id, str)
    return message_id


def _successful_creates(stack: Stack, to: str) -> list[Any]:
    return stack.sandbox.record.requests("messages.create", status=201, To=to)


# -- statuses only move forward -----------------------------------------------------------


@pytest.mark.parametrize(
    ("late_status", "late_code"),
    [
        ("undelivered", "30003"),  # would have queued a resend: the lead texted twice
        ("failed", "30007"),  # would have set error_code on a delivered text
        ("undelivered", "30005"),  # would have flagged the lead's phone
        ("undelivered", "21606"),  # would have flagged the sender number
        ("canceled", ""),  # ranked above `delivered`, so it used to overwrite it
    ],
)
async def test_nothing_after_delivered_changes_the_message(
    stack: Stack, late_status: str, late_code: str
) -> None:
    message_id = await _text(stack, LEAD, "Hi Ann!")
    await stack.work()
    delivered = await _message(stack, message_id)
    assert delivered.status == "delivered" and delivered.error_code is None
    assert delivered.twilio_sid is not None

    params = {
        "MessageSid": delivered.twilio_sid,
        "AccountSid": stack.settings.twilio_sid,
        "To": LEAD,
        "MessageStatus": late_status,
    }
    if late_code:
        params["ErrorCode"] = late_code
    response = await stack.post_twilio(f"/twilio/sms/status?message_id={message_id}", params)
    assert response.status_code == 204

    # Nothing is sent again, now or later: a day on, Twilio was asked for one text.
    await stack.sandbox.advance(24 * 3600)
    await _sweep_and_work(stack)
    assert len(stack.creates(To=LEAD)) == 1
    assert await _outbound_count(stack) == 1  # no resend row
    after = await _message(stack, message_id)
    assert after.status == "delivered"
    assert after.error_code is None and after.error_message is None
    assert (await _lead(stack, LEAD)).phone_status == "ok"
    assert (await _sender(stack)).status == "ok"
    history = (await stack.api.get(f"/v1/messages/{message_id}")).json()["history"]
    assert f"{late_status} (late)" in [h["status"] for h in history]


async def test_read_still_follows_delivered(stack: Stack) -> None:
    created = await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "Hi Ann!"})
    message_id = created.json()["id"]
    await stack.work()
    sid = (await _message(stack, message_id)).twilio_sid or ""
    response = await stack.post_twilio(
        f"/twilio/sms/status?message_id={message_id}",
        {"MessageSid": sid, "AccountSid": stack.settings.twilio_sid, "MessageStatus": "read"},
    )
    assert response.status_code == 204
    await stack.run_worker()  # the sms.statuses job acts on it
    assert (await _message(stack, message_id)).status == "read"


# -- 21606: the sender's set-up, not the lead -----------------------------------------------


async def test_21606_flags_the_sender_and_leaves_the_lead_and_play_alone(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    await publish(stack)
    # Twilio no longer lets the account send from the number (released, SMS disabled, ...).
    stack.sandbox.numbers.pop(OUR_NUMBER)
    created = await stack.api.post("/v1/plays", json=play_body())
    assert created.status_code == 201, created.text
    play_id = created.json()["id"]
    with caplog.at_level("WARNING", logger="gateway.sms.sender_status"):
        await stack.work()

    [refused] = stack.creates(To=LEAD)
    assert refused.status == 400
    lead = await _lead(stack, LEAD)
    assert (lead.phone_status, lead.phone_status_code) == ("ok", None)
    async with stack.sessions() as session:
        play = await session.get(Play, play_id)
        assert play is not None and play.state == "running"
        [text] = (await session.exec(select(Message).where(Message.play_id == play_id))).all()
        entries = (
            await session.exec(
                select(PlayLog).where(
                    PlayLog.play_id == play_id, PlayLog.kind == "sender_unavailable"
                )
            )
        ).all()
    # The text is kept for a later try, not failed.
    assert text.status == "queued" and text.gate_reason == "sender_unavailable"
    assert text.send_after is not None and text.send_after > now()
    [entry] = entries
    assert entry.detail["code"] == 21606 and entry.detail["number"] == OUR_NUMBER
    # The account sees it on its numbers, and in the log with ids.
    [number] = (await stack.api.get("/v1/numbers")).json()["data"]
    assert (number["status"], number["status_code"]) == ("unavailable", 21606)
    [line] = [r for r in caplog.records if "sender number unavailable" in r.getMessage()]
    assert stack.account_id in line.getMessage() and text.id in line.getMessage()

    # Held, not spinning: running the worker again asks Twilio nothing.
    await stack.work()
    await _sweep_and_work(stack)
    assert len(stack.creates(To=LEAD)) == 1


async def test_a_held_text_goes_once_the_number_is_fixed_and_releases_the_others(
    stack: Stack,
) -> None:
    stack.sandbox.numbers.pop(OUR_NUMBER)
    first = await _text(stack, LEAD, "one")
    await stack.work()
    held = await _message(stack, first)
    assert held.status == "queued" and held.gate_reason == "sender_unavailable"
    assert held.send_after is not None
    first_try = max(errors.SENDER_RETRY_DELAYS[0] * (1 + errors.JITTER), 1) + 1

    # Its time comes while the number is still broken: one more request, held again, longer.
    await stack.sandbox.advance(first_try)
    await _sweep_and_work(stack)
    assert len(stack.creates(To=LEAD)) == 2
    again = await _message(stack, first)
    assert again.status == "queued" and again.send_after is not None
    assert again.send_after - now() >= timedelta(
        seconds=errors.SENDER_RETRY_DELAYS[1] * (1 - errors.JITTER) - 1
    )

    # A new text for the flagged number waits for the number's next try, asking Twilio nothing.
    second = await _text(stack, OTHER_LEAD, "two")
    await stack.work()
    waiting = await _message(stack, second)
    assert waiting.status == "queued" and waiting.gate_reason == "sender_unavailable"
    assert stack.creates(To=OTHER_LEAD) == []
    assert waiting.send_after is not None and waiting.send_after < again.send_after

    # The account fixes the number at Twilio. The waiting text tries it, goes through, clears
    # the flag and releases the first text at once (hours before its own next try).
    stack.sandbox.add_number(OUR_NUMBER, sms_url=f"{stack.url}/twilio/sms")
    await stack.sandbox.advance((waiting.send_after - now()).total_seconds() + 1)
    await _sweep_and_work(stack)
    assert len(_successful_creates(stack, OTHER_LEAD)) == 1
    assert len(_successful_creates(stack, LEAD)) == 1
    assert (await _message(stack, first)).status == "delivered"
    assert (await _message(stack, second)).status == "delivered"
    sender = await _sender(stack)
    assert (sender.status, sender.status_code) == ("ok", None)
    assert await _outbound_count(stack) == 2


async def test_a_sender_that_stays_broken_fails_the_text_after_its_tries(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(errors, "SENDER_RETRY_DELAYS", (60.0, 60.0))
    stack.sandbox.numbers.pop(OUR_NUMBER)
    message_id = await _text(stack, LEAD, "one")
    await stack.work()
    for _ in range(5):
        await stack.sandbox.advance(100)
        await _sweep_and_work(stack)
    # The first try and one per delay, then it stops asking.
    assert len(stack.creates(To=LEAD)) == 3
    final = await _message(stack, message_id)
    assert (final.status, final.error_code) == ("failed", 21606)
    assert (await _lead(stack, LEAD)).phone_status == "ok"
    async with stack.sessions() as session:
        holds = (
            await session.exec(
                select(func.count())
                .select_from(MessageEvent)
                .where(
                    col(MessageEvent.message_id) == message_id,
                    col(MessageEvent.status) == "sender_unavailable",
                )
            )
        ).one()
    assert holds == 2


async def test_30034_in_a_callback_flags_the_sender_and_resends_later(stack: Stack) -> None:
    message_id = await _text(stack, LEAD, "Hi Ann!")
    await stack.run_worker()  # accepted by the sandbox; its callbacks not delivered yet
    sid = (await _message(stack, message_id)).twilio_sid or ""
    response = await stack.post_twilio(
        f"/twilio/sms/status?message_id={message_id}",
        {
            "MessageSid": sid,
            "AccountSid": stack.settings.twilio_sid,
            "MessageStatus": "undelivered",
            "ErrorCode": "30034",
        },
    )
    assert response.status_code == 204
    await stack.run_worker()  # the sms.statuses job acts on it
    assert (await _message(stack, message_id)).status == "undelivered"
    assert (await _lead(stack, LEAD)).phone_status == "ok"
    sender = await _sender(stack)
    assert (sender.status, sender.status_code) == ("unavailable", 30034)
    async with stack.sessions() as session:
        [resend] = (await session.exec(select(Message).where(Message.retry_of == message_id))).all()
    assert resend.status == "queued" and resend.gate_reason == "sender_unavailable"
    assert resend.send_after is not None and resend.send_after > now()


# -- lead-fault codes record their code -------------------------------------------------------


async def test_a_landline_refused_at_create_records_its_code_on_the_lead(stack: Stack) -> None:
    landline = "+14155550177"
    stack.sandbox.check_line_type = True
    stack.sandbox.phones.script(landline, line_type="landline")
    message_id = await _text(stack, landline, "hi")
    await stack.work()
    message = await _message(stack, message_id)
    assert (message.status, message.error_code) == ("failed", 21614)
    flagged = await _lead(stack, landline)
    assert (flagged.phone_status, flagged.phone_status_code) == ("landline", 21614)


async def test_an_unknown_number_in_a_callback_records_its_code_on_the_lead(stack: Stack) -> None:
    message_id = await _text(stack, LEAD, "hi")
    await stack.run_worker()
    sid = (await _message(stack, message_id)).twilio_sid or ""
    response = await stack.post_twilio(
        f"/twilio/sms/status?message_id={message_id}",
        {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30005"},
    )
    assert response.status_code == 204
    await stack.run_worker()  # the sms.statuses job acts on it
    flagged = await _lead(stack, LEAD)
    assert (flagged.phone_status, flagged.phone_status_code) == ("invalid", 30005)
