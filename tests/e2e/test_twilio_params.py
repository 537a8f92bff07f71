"""What a Twilio route accepts before any work: at most MAX_FIELDS form fields (refused before
the body is parsed or its signature computed), signing work linear in the fields, and whole
numbers as ASCII digits in range (a 400 naming the field, never a 500, nothing recorded)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import func, select
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from gateway.body_limit import TWILIO_LIMIT
from gateway.models import Message, PartyLineRecord, WebhookClaim
from gateway.twilio_signature import FORM, MAX_FIELDS, FormFields
from tests.support.party_line import (
    add_reps,
    add_rule,
    begin,
    drive,
    party_lines,
    publish_call_now,
)
from tests.support.stack import LEAD, OUR_NUMBER, Stack
from voice.links import CONFERENCE_PATH, STATUS_PATH

INBOUND = {
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": "AC" + "0" * 32,
    "From": LEAD,
    "To": OUR_NUMBER,
    "Body": "hello",
    "NumMedia": "0",
}
# "²" passes str.isdigit() but int() refuses it (the old 500); "٣" is an Arabic-Indic 3 that
# int() takes; the others are forms int() accepts that Twilio never sends, or out of range.
NOT_ASCII_NUMBERS = ["²", "٣", "１", "1_0", " 7", "+7", "-1", "7.0", "0x1f", "9" * 19]


async def _state(stack: Stack) -> tuple[Any, ...]:
    """What a refused webhook must leave as it was."""
    async with stack.sessions() as session:
        messages = (await session.exec(select(func.count()).select_from(Message))).one()
        claims = (await session.exec(select(func.count()).select_from(WebhookClaim))).one()
        lines = (await session.exec(select(PartyLineRecord))).all()
    return messages, claims, sorted((row.id, row.phase, row.version) for row in lines)


def _signature(stack: Stack, path: str, params: dict[str, str]) -> str:
    return RequestValidator(stack.settings.twilio_token).compute_signature(stack.url + path, params)


# -- field count ---------------------------------------------------------------------------


async def test_thousands_of_fields_are_refused_before_parsing(stack: Stack) -> None:
    """8,000 empty fields with a junk signature: 400 at once. (It was a 403 after 9-19 s of
    quadratic signature work.) Bytes that aren't UTF-8 show the count came before parsing."""
    before = await _state(stack)
    many = "&".join(f"{i:x}=" for i in range(8_000)).encode()  # distinct keys, under 64 KB
    assert len(many) < TWILIO_LIMIT
    for body in (many, b"\xff=&" * 8_000):
        response = await stack.api.post(
            "/twilio/sms",
            content=body,
            headers={"Content-Type": FORM, "X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "too_many_fields"
    assert await _state(stack) == before


async def test_signed_webhooks_up_to_the_cap_pass_and_past_it_are_refused(stack: Stack) -> None:
    extra = MAX_FIELDS - len(INBOUND)
    params = {**INBOUND, **{f"Extra{i}": "" for i in range(extra)}}
    assert len(params) == MAX_FIELDS
    response = await stack.api.post(
        "/twilio/sms",
        data=params,
        headers={"X-Twilio-Signature": _signature(stack, "/twilio/sms", params)},
    )
    assert response.status_code == 200, response.text
    one_more = {**params, "MessageSid": "SM" + "2" * 32, "Extra999": ""}
    refused = await stack.api.post(
        "/twilio/sms",
        data=one_more,
        headers={"X-Twilio-Signature": _signature(stack, "/twilio/sms", one_more)},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "too_many_fields"


async def test_repeated_keys_are_signed_as_twilio_signs_them(stack: Stack) -> None:
    """Repeated keys count every value: signed over all of them passes, one dropped fails."""
    form = [*INBOUND.items(), ("MediaUrl0", "https://a.example/1"), ("MediaUrl0", "https://b/2")]
    signature = _signature(stack, "/twilio/sms", FormData(form))
    headers = {"Content-Type": FORM, "X-Twilio-Signature": signature}
    ok = await stack.api.post("/twilio/sms", content=urlencode(form), headers=headers)
    assert ok.status_code == 200, ok.text
    forged = await stack.api.post("/twilio/sms", content=urlencode(form[:-1]), headers=headers)
    assert forged.status_code == 403


class Key(str):
    """A form key that counts how often it is compared: the work of looking values up."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        Key.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def _comparisons(params: object, fields: int) -> int:
    Key.comparisons = 0
    RequestValidator("token").validate("https://example.com/twilio/sms", params, "junk")
    return Key.comparisons


def test_signature_work_is_linear_in_the_fields() -> None:
    """Per key, the validator looks its values up with `getlist`. On the FormFields the route
    builds that is a dict lookup; on Starlette's FormData (what it used) it scans every field,
    so N fields cost N² comparisons."""
    fields = 400
    keys = [Key(f"Field{i}") for i in range(fields)]
    linear = _comparisons(FormFields({key: [""] for key in keys}), fields)
    quadratic = _comparisons(FormData([(key, "") for key in keys]), fields)
    assert linear <= 4 * fields
    assert quadratic >= fields * fields  # the measure sees the old cost


# -- whole numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
@pytest.mark.parametrize("field", ["NumMedia", "NumSegments"])
async def test_inbound_sms_numbers_must_be_ascii_digits(
    stack: Stack, field: str, value: str
) -> None:
    before = await _state(stack)
    response = await stack.post_twilio("/twilio/sms", {**INBOUND, field: value})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
    assert await _state(stack) == before


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
async def test_status_error_code_must_be_ascii_digits(stack: Stack, value: str) -> None:
    message = (await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "hi"})).json()
    await stack.run_worker()
    [create] = stack.creates(To=LEAD)
    before = await _state(stack)
    response = await stack.post_twilio(
        f"/twilio/sms/status?message_id={message['id']}",
        {"MessageSid": create.sid or "", "MessageStatus": "undelivered", "ErrorCode": value},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "ErrorCode"
    assert await _state(stack) == before
    assert (await stack.api.get(f"/v1/messages/{message['id']}")).json()["status"] != "undelivered"


async def test_ascii_numbers_in_range_are_taken(stack: Stack) -> None:
    response = await stack.post_twilio("/twilio/sms", {**INBOUND, "NumSegments": "3"})
    assert response.status_code == 200
    await stack.work()
    async with stack.sessions() as session:
        [message] = (await session.exec(select(Message))).all()
    assert message.num_segments == 3


async def test_voice_numbers_must_be_ascii_digits(stack: Stack) -> None:
    await publish_call_now(stack)
    play_id = await begin(stack, rule_id=await add_rule(stack, await add_reps(stack, 1)))
    await drive(stack)
    [line] = await party_lines(stack, play_id)
    [lead_leg] = line.state["lead_legs"]
    before = await _state(stack)
    callbacks = [
        (f"{STATUS_PATH}?pl={line.id}&leg=lead-1", "SequenceNumber", {"CallStatus": "completed"}),
        (f"{STATUS_PATH}?pl={line.id}&leg=lead-1", "CallDuration", {"CallStatus": "completed"}),
        (
            f"{CONFERENCE_PATH}?pl={line.id}",
            "SequenceNumber",
            {"ConferenceSid": "CF" + "1" * 32, "StatusCallbackEvent": "conference-end"},
        ),
    ]
    for path, field, params in callbacks:
        for value in NOT_ASCII_NUMBERS:
            form = {"CallSid": lead_leg["call_sid"], "SequenceNumber": "9", **params, field: value}
            response = await stack.post_twilio(path, form)
            assert response.status_code == 400, (path, field, value, response.text)
            assert response.json()["error"]["field"] == field
    assert await _state(stack) == before
