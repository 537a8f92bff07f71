"""Twilio answers STOP, START and HELP itself on a long code, and the sandbox does too: the
reply reaches the phone as Twilio's own message, the text still reaches the SMS webhook."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.support.servers import serve
from tests.twilio_sandbox.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    LEAD,
    OUR_NUMBER,
    CallbackRecorder,
    make_sandbox,
)
from twilio_sandbox import Reply, Sandbox
from twilio_sandbox.messaging import HELP_WORDS, KEYWORD_REPLIES, START_WORDS, STOP_WORDS

UNSUBSCRIBED = (
    "You have successfully been unsubscribed. You will not receive any more messages from this "
    "number. Reply START to resubscribe."
)
RESUBSCRIBED = (
    "You have successfully been re-subscribed to messages from this number. Reply HELP for help. "
    "Reply STOP to unsubscribe. Msg&Data Rates May Apply."
)
HELP_REPLY = "Reply STOP to unsubscribe. Msg&Data Rates May Apply."


@pytest.fixture
async def control(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The sandbox's control API over real HTTP, as the CLI demo and a developer use it."""
    async with httpx.AsyncClient(
        base_url=f"{sandbox_url}/_sandbox", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10
    ) as http:
        yield http


async def _text(control: httpx.AsyncClient, body: str, phone: str = LEAD) -> None:
    sent = await control.post("/sms", json={"from": phone, "to": OUR_NUMBER, "body": body})
    assert sent.status_code == 200, sent.text
    settled = await control.post("/settle", json={})
    assert settled.status_code == 200, settled.text


async def _screen(control: httpx.AsyncClient, phone: str = LEAD) -> list[tuple[str, str, str]]:
    """What the phone shows: (direction, body, status) of every text, oldest first."""
    listed = await control.get(f"/phones/{phone}/messages")
    assert listed.status_code == 200, listed.text
    messages: list[dict[str, Any]] = listed.json()
    return [(m["direction"], m["body"], m["status"]) for m in messages]


def test_the_replies_are_twilios_documented_defaults() -> None:
    assert KEYWORD_REPLIES == {"STOP": UNSUBSCRIBED, "START": RESUBSCRIBED, "HELP": HELP_REPLY}
    assert sorted(STOP_WORDS) == [
        "CANCEL", "END", "OPTOUT", "QUIT", "REVOKE", "STOP", "STOPALL", "UNSUBSCRIBE"
    ]  # fmt: skip
    assert sorted(START_WORDS) == ["START", "UNSTOP", "YES"]
    assert sorted(HELP_WORDS) == ["HELP", "INFO"]


async def test_stop_is_answered_by_twilio_and_still_reaches_the_webhook(
    client: Client, sandbox: Sandbox, control: httpx.AsyncClient, receiver: CallbackRecorder
) -> None:
    await _text(control, "Stop")
    assert await _screen(control) == [
        ("inbound", "Stop", "received"),
        ("outbound-reply", UNSUBSCRIBED, "delivered"),
    ]
    [hit] = receiver.at("/sms")
    assert hit.signature_ok and hit.params["Body"] == "Stop"
    # Twilio's default handling forwards the text without OptOutType (Advanced Opt-Out adds it).
    assert "OptOutType" not in hit.params
    # The reply is Twilio's own: no create was asked for, no status callback goes anywhere.
    assert sandbox.record.requests("messages.create") == []
    assert receiver.at("/status") == []
    # It is listed as Twilio lists a reply, from our number to the phone.
    [listed] = await client.messages.list_async(to=LEAD)
    assert (listed.direction, listed.from_, listed.body) == (
        "outbound-reply",
        OUR_NUMBER,
        UNSUBSCRIBED,
    )
    with pytest.raises(TwilioRestException) as refused:
        await client.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="one more")
    assert refused.value.code == 21610


async def test_start_and_help_are_answered_and_start_resubscribes(
    client: Client, control: httpx.AsyncClient, receiver: CallbackRecorder
) -> None:
    await _text(control, "STOP")
    await _text(control, " unstop ")
    await _text(control, "info")
    assert [line[:2] for line in await _screen(control)] == [
        ("inbound", "STOP"),
        ("outbound-reply", UNSUBSCRIBED),
        ("inbound", " unstop "),
        ("outbound-reply", RESUBSCRIBED),
        ("inbound", "info"),
        ("outbound-reply", HELP_REPLY),
    ]
    assert [h.params["Body"] for h in receiver.at("/sms")] == ["STOP", " unstop ", "info"]
    sent = await client.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="welcome back")
    assert sent.status == "queued"


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        *[(w.lower(), "STOP") for w in sorted(STOP_WORDS)],
        *[(w.capitalize(), "START") for w in sorted(START_WORDS)],
        *[(w, "HELP") for w in sorted(HELP_WORDS)],
    ],
)
async def test_every_default_keyword_gets_its_reply(
    control: httpx.AsyncClient, word: str, kind: str
) -> None:
    await _text(control, word)
    assert (await _screen(control))[1:] == [("outbound-reply", KEYWORD_REPLIES[kind], "delivered")]


@pytest.mark.parametrize(
    "body", ["stop please", "please stop", "STOP!", "yes, tomorrow", "help me"]
)
async def test_only_the_whole_body_is_a_keyword(
    control: httpx.AsyncClient, receiver: CallbackRecorder, body: str
) -> None:
    await _text(control, body)
    assert await _screen(control) == [("inbound", body, "received")]
    assert [h.params["Body"] for h in receiver.at("/sms")] == [body]
    listed = await control.get("/optouts")
    assert listed.json() == []


async def test_twilios_reply_does_not_use_up_the_phones_scripted_replies(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    # The phone answers the gateway's texts; Twilio's HELP answer is not one of them.
    sandbox.phones.script(LEAD, replies=[Reply("HELP", after=1), Reply("thanks", after=1)])
    await client.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="Questions?")
    await sandbox.settle()
    assert [h.params["Body"] for h in receiver.at("/sms")] == ["HELP"]
    await client.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="Here is more")
    await sandbox.settle()
    assert [h.params["Body"] for h in receiver.at("/sms")] == ["HELP", "thanks"]
    assert [m.body for m in sandbox.messaging.conversation(LEAD) if m.to == LEAD] == [
        "Questions?",
        HELP_REPLY,
        "Here is more",
    ]


async def test_replies_switched_off_for_the_sandbox_or_one_number(
    receiver: CallbackRecorder,
) -> None:
    other = "+15005550007"
    sandbox = make_sandbox(keyword_replies=False)
    sandbox.add_number(OUR_NUMBER, sms_url=receiver.url("/sms"))
    sandbox.add_number(other, sms_url=receiver.url("/sms"), keyword_replies=True)
    try:
        sandbox.send_sms(LEAD, OUR_NUMBER, "STOP")
        sandbox.send_sms(LEAD, other, "STOP")
        await sandbox.settle()
        # Off: no reply, but the opt-out list is kept as before; on for the other number.
        assert [
            (m.from_, m.body) for m in sandbox.messaging.conversation(LEAD) if m.to == LEAD
        ] == [(other, UNSUBSCRIBED)]
        assert sandbox.messaging.opted_out == {(LEAD, OUR_NUMBER), (LEAD, other)}
        sandbox.set_opt_out_handling(OUR_NUMBER, keyword_replies=True, stop_filtering=None)
        sandbox.set_opt_out_handling(other, keyword_replies=False, stop_filtering=None)
        sandbox.send_sms(LEAD, OUR_NUMBER, "START")
        sandbox.send_sms(LEAD, other, "START")
        await sandbox.settle()
        assert [
            (m.from_, m.body) for m in sandbox.messaging.conversation(LEAD) if m.to == LEAD
        ] == [
            (other, UNSUBSCRIBED),
            (OUR_NUMBER, RESUBSCRIBED),
        ]
        assert sandbox.messaging.opted_out == set()
    finally:
        await sandbox.aclose()


async def test_default_handling_off_keeps_no_stop_list_and_sends_no_reply(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.set_opt_out_handling(OUR_NUMBER, keyword_replies=False, stop_filtering=False)
    sandbox.send_sms(LEAD, OUR_NUMBER, "STOP")
    await sandbox.settle()
    assert [h.params["Body"] for h in receiver.at("/sms")] == ["STOP"]
    assert sandbox.messaging.opted_out == set()
    # The application answers it itself, and Twilio lets that through.
    sent = await client.messages.create_async(to=LEAD, from_=OUR_NUMBER, body="You're out.")
    await sandbox.settle()
    assert [
        (m.direction, m.body) for m in sandbox.messaging.conversation(LEAD) if m.to == LEAD
    ] == [("outbound-api", "You're out.")]
    assert (await client.messages(sent.sid).fetch_async()).status == "delivered"


async def test_advanced_opt_out_adds_opt_out_type_and_still_answers(
    receiver: CallbackRecorder,
) -> None:
    sandbox = make_sandbox(advanced_opt_out=True)
    sandbox.add_number(OUR_NUMBER, sms_url=receiver.url("/sms"))
    try:
        for body in ("quit", "YES", "Help"):
            sandbox.send_sms(LEAD, OUR_NUMBER, body)
            await sandbox.settle()
        assert [h.params["OptOutType"] for h in receiver.at("/sms")] == ["STOP", "START", "HELP"]
        replies = [m.body for m in sandbox.messaging.conversation(LEAD) if m.to == LEAD]
        assert replies == [UNSUBSCRIBED, RESUBSCRIBED, HELP_REPLY]
    finally:
        await sandbox.aclose()


async def test_control_api_sets_a_numbers_keyword_replies(receiver: CallbackRecorder) -> None:
    sandbox = make_sandbox()
    async with (
        serve(sandbox.app) as url,
        httpx.AsyncClient(
            base_url=f"{url}/_sandbox", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10
        ) as control,
    ):
        off = {"number": OUR_NUMBER, "sms_url": receiver.url("/sms"), "keyword_replies": False}
        assert (await control.post("/numbers", json=off)).status_code == 200
        bad = await control.post("/numbers", json={**off, "stop_filtering": "no"})
        assert bad.status_code == 400 and "stop_filtering" in bad.text
        await _text(control, "STOP")
        assert await _screen(control) == [("inbound", "STOP", "received")]
        assert [h.params["Body"] for h in receiver.at("/sms")] == ["STOP"]
