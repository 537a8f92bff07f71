"""The opt-out notice rule: appended to the first text and once every 30 days, never doubled
when the text already tells how to opt out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compliance.notice import NOTICE_INTERVAL, choose, has_opt_out_instruction

NOTICE = " Reply STOP to opt out."
AT = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    "text",
    [
        "Reply STOP to opt out.",
        " Reply STOP to opt out.",
        "Hi Ann! Reply STOP to end",
        "Txt STOP to end",
        "Text STOP to unsubscribe",
        "To opt-out, reply STOP",
        "Opt out: reply STOP",
        "Opt out at any time by replying STOP.",
        "Reply with the word STOP to quit.",
        "reply stop to opt out",
        "Msg&data rates may apply. STOP to opt out",
        "Text HELP for help, STOP to cancel",
        "Reply END to stop receiving these messages",
        "Reply UNSUBSCRIBE to be removed",
        "Responde ALTO para cancelar",
        "REPLY ＳＴＯＰ TO OPT OUT",  # fullwidth letters normalize
    ],
)
def test_equivalent_instructions(text: str) -> None:
    assert has_opt_out_instruction(text)


@pytest.mark.parametrize(
    "text",
    [
        "Hi Ann, your quote is ready.",
        "Did you stop by the office?",
        "Text us to stop by the office any time",
        "Reply YES to continue",
        "Reply to this text to end the chat",
        "We stop to end the day at 5.",
        "When does the offer end?",
        "Stop worrying about rates!",
        "Reply STOPPED",
    ],
)
def test_not_an_instruction(text: str) -> None:
    assert not has_opt_out_instruction(text)


def test_first_text_gets_the_notice() -> None:
    choice = choose("Hi Ann!", NOTICE, last_notice_at=None, at=AT)
    assert choice.body == "Hi Ann! Reply STOP to opt out."
    assert (choice.notice, choice.reason) == (NOTICE, "appended")


def test_a_text_10_days_after_a_notice_gets_none() -> None:
    choice = choose("Any questions?", NOTICE, last_notice_at=AT - 10 * DAY, at=AT)
    assert (choice.body, choice.notice, choice.reason) == ("Any questions?", None, "recent")


def test_a_text_31_days_after_a_notice_gets_it_again() -> None:
    choice = choose("Still looking?", NOTICE, last_notice_at=AT - 31 * DAY, at=AT)
    assert choice.body == "Still looking? Reply STOP to opt out."


def test_the_notice_is_owed_again_at_exactly_30_days() -> None:
    just_inside = choose("x", NOTICE, last_notice_at=AT - NOTICE_INTERVAL + DAY / 24, at=AT)
    assert just_inside.reason == "recent"
    at_30 = choose("x", NOTICE, last_notice_at=AT - NOTICE_INTERVAL, at=AT)
    assert at_30.reason == "appended"


def test_a_body_with_its_own_instruction_is_not_doubled() -> None:
    body = "Hi Ann, your quote is ready. Reply STOP to end"
    choice = choose(body, NOTICE, last_notice_at=None, at=AT)
    assert (choice.body, choice.notice, choice.reason) == (body, None, "in_text")
    exact = choose("Hi! Reply STOP to opt out.", NOTICE, last_notice_at=None, at=AT)
    assert exact.body == "Hi! Reply STOP to opt out."


def test_not_required_records_whether_the_body_carries_one() -> None:
    help_text = "Acme: for help call us. Msg&data rates may apply. Reply STOP to opt out."
    assert choose(help_text, NOTICE, last_notice_at=None, at=AT, required=False).reason == (
        "in_text"
    )
    unsubscribed = "Acme: you are unsubscribed. Reply START to resubscribe."
    choice = choose(unsubscribed, NOTICE, last_notice_at=None, at=AT, required=False)
    assert (choice.body, choice.reason) == (unsubscribed, "not_required")
