"""The opt-out notice end to end: API -> worker -> real twilio client -> sandbox, on virtual
time; what reached Twilio and what the message row records."""

from __future__ import annotations

import pytest

from gateway.sms import errors
from tests.notice.conftest import NOTICE, bodies_to, later, message_row, send_text
from tests.support.stack import LEAD, OUR_NUMBER, Stack
from twilio_sandbox import RestFault

OTHER_LEAD = "+14155550124"


async def test_first_text_then_10_days_then_31_days(stack: Stack) -> None:
    first = await send_text(stack, "Hi Ann, your quote is ready.")
    assert first.status == "delivered"
    assert first.body == "Hi Ann, your quote is ready. Reply STOP to opt out."
    assert (first.notice_decision, first.notice) == ("appended", NOTICE)
    assert (first.encoding, first.num_segments, first.notice_segments) == ("GSM-7", 1, 0)

    await later(stack, 10)
    second = await send_text(stack, "Any questions about the quote?")
    assert second.body == "Any questions about the quote?"
    assert (second.notice_decision, second.notice) == ("recent", None)

    await later(stack, 21)  # 31 days after the last notice
    third = await send_text(stack, "Still looking for a better rate?")
    assert third.notice_decision == "appended"
    assert bodies_to(stack) == [
        "Hi Ann, your quote is ready. Reply STOP to opt out.",
        "Any questions about the quote?",
        "Still looking for a better rate? Reply STOP to opt out.",
    ]


async def test_each_lead_gets_its_own_first_notice(stack: Stack) -> None:
    await send_text(stack, "Hi Ann!")
    other = await send_text(stack, "Hi Bob!", phone=OTHER_LEAD)
    assert other.body == "Hi Bob! Reply STOP to opt out."


async def test_a_body_that_says_reply_stop_to_end_gets_no_second_notice(stack: Stack) -> None:
    own = await send_text(stack, "Hi Ann, your quote is ready. Reply STOP to end")
    assert own.body == "Hi Ann, your quote is ready. Reply STOP to end"
    assert (own.notice_decision, own.notice) == ("in_text", None)
    exact = await send_text(stack, "Rates just dropped. Reply STOP to opt out.", OTHER_LEAD)
    assert exact.body == "Rates just dropped. Reply STOP to opt out."  # not doubled
    # The body's own instruction counts as the notice for the next 30 days.
    await later(stack, 3)
    follow_up = await send_text(stack, "Did you see the quote?")
    assert (follow_up.body, follow_up.notice_decision) == ("Did you see the quote?", "recent")


async def test_a_150_character_gsm_body_plus_notice_is_two_segments(stack: Stack) -> None:
    body = "Hi Ann, this is Sam at Acme Lending. " + "x" * 113
    assert len(body) == 150
    sent = await send_text(stack, body)
    [create] = stack.creates(To=LEAD)
    assert create.get("Body") == body + NOTICE  # sent whole, 173 characters
    assert (sent.encoding, sent.num_segments, sent.notice_segments) == ("GSM-7", 2, 1)


@pytest.mark.parametrize(
    ("units", "segments", "added"),
    [(47, 1, 0), (48, 2, 1)],  # 47 + 23 = 70 fits UCS-2's one segment; 48 + 23 = 71 doesn't
)
async def test_ucs2_body_counts_70_then_67(
    stack: Stack, units: int, segments: int, added: int
) -> None:
    body = "Hi Ann 😀 " + "y" * (units - 10)  # the emoji is two UTF-16 units
    assert len(body.encode("utf-16-le")) // 2 == units
    sent = await send_text(stack, body)
    assert sent.body == body + NOTICE
    assert (sent.encoding, sent.num_segments, sent.notice_segments) == ("UCS-2", segments, added)


async def test_a_reply_in_the_conversation_omits_a_recent_notice(stack: Stack) -> None:
    await send_text(stack, "Hi Ann, want a quote?")
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "what rate can I get?")
    await stack.sandbox.settle()
    await stack.work()
    reply = await send_text(stack, "About 6.1% for 30 years.")
    assert (reply.purpose, reply.notice_decision) == ("reply", "recent")
    assert reply.body == "About 6.1% for 30 years."


async def test_a_reply_after_31_quiet_days_carries_the_notice(stack: Stack) -> None:
    await send_text(stack, "Hi Ann, want a quote?")
    await later(stack, 31)
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "yes please")
    await stack.sandbox.settle()
    await stack.work()
    reply = await send_text(stack, "Great, what ZIP code?")
    assert (reply.purpose, reply.notice_decision) == ("reply", "appended")
    assert reply.body == "Great, what ZIP code? Reply STOP to opt out."


async def test_help_answer_counts_as_the_notice(stack: Stack) -> None:
    """The account answers HELP itself; its help text says how to stop, so it is the notice."""
    patched = await stack.api.patch(
        "/v1/account", json={"compliance": {"twilio_answers_default_keywords": False}}
    )
    assert patched.status_code == 200, patched.text
    stack.sandbox.send_sms(LEAD, OUR_NUMBER, "HELP")
    await stack.sandbox.settle()
    await stack.work()
    [help_reply] = bodies_to(stack)
    assert help_reply.endswith("Reply STOP to opt out.")
    assert help_reply.count("STOP") == 1
    later_text = await send_text(stack, "Hi Ann, your quote is ready.")
    assert later_text.notice_decision == "recent"


async def test_a_retried_send_keeps_one_notice(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(errors, "RETRY_DELAYS", (0.05, 0.1, 0.2))
    stack.sandbox.faults.add_rest(RestFault("rate_limit", kind="messages.create", times=1))
    sent = await send_text(stack, "Hi Ann!")
    assert [r.status for r in stack.creates(To=LEAD)] == [429, 201]
    assert bodies_to(stack) == ["Hi Ann! Reply STOP to opt out."]
    assert sent.body == "Hi Ann! Reply STOP to opt out." and sent.attempts == 2


async def test_the_account_notice_text_is_used(stack: Stack) -> None:
    custom = " Txt STOP to end msgs from Acme."
    patched = await stack.api.patch("/v1/account", json={"compliance": {"opt_out_notice": custom}})
    assert patched.status_code == 200, patched.text
    sent = await send_text(stack, "Hi Ann!")
    assert sent.body == "Hi Ann!" + custom
    refused = await stack.api.patch(
        "/v1/account", json={"compliance": {"opt_out_notice": " Thanks!"}}
    )
    assert refused.status_code == 422  # a notice must say how to opt out


async def test_a_body_too_long_for_the_notice_fails_clearly(stack: Stack) -> None:
    sent = await send_text(stack, "z" * 1590)
    assert sent.status == "failed"
    assert sent.error_message == "the body with the opt-out notice exceeds 1600 characters"
    assert stack.creates(To=LEAD) == []


async def test_the_api_shows_the_notice_and_the_cost(stack: Stack) -> None:
    sent = await send_text(stack, "Hi Ann!")
    shown = (await stack.api.get(f"/v1/messages/{sent.id}")).json()
    assert shown["body"] == "Hi Ann! Reply STOP to opt out."
    assert shown["notice_decision"] == "appended" and shown["notice"] == NOTICE
    assert (shown["encoding"], shown["num_segments"], shown["notice_segments"]) == (
        "GSM-7",
        1,
        0,
    )
    assert (await message_row(stack, sent.id)).num_segments == 1
