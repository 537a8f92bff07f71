"""Twilio's webhooks are refused unless signed for our public URL, never 500, and status
callbacks only move a message forward whatever order they arrive in."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlmodel import func, select
from twilio.request_validator import RequestValidator

from gateway.models import Message, WebhookClaim
from tests.support.stack import LEAD, OUR_NUMBER, Stack
from voice.links import STATUS_PATH

INBOUND = {
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": "AC" + "0" * 32,
    "From": LEAD,
    "To": OUR_NUMBER,
    "Body": "hello",
    "NumMedia": "0",
}


async def _counts(stack: Stack) -> tuple[int, int]:
    async with stack.sessions() as session:
        messages = (await session.exec(select(func.count()).select_from(Message))).one()
        claims = (await session.exec(select(func.count()).select_from(WebhookClaim))).one()
    return messages, claims


async def test_missing_or_wrong_signature_is_403_and_records_nothing(stack: Stack) -> None:
    unsigned = await stack.api.post("/twilio/sms", data=INBOUND)
    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == "forbidden"
    forged = await stack.api.post(
        "/twilio/sms", data=INBOUND, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    )
    assert forged.status_code == 403
    # A header of any latin-1 bytes is a wrong signature, not an error.
    odd = await stack.api.post(
        "/twilio/sms",
        data=INBOUND,
        headers={"X-Twilio-Signature": "\u00e9t\u00e9=".encode("latin-1")},
    )
    assert odd.status_code == 403
    # Signed for another URL (what a proxy might show) is not signed for ours.

    other = RequestValidator(stack.settings.twilio_token).compute_signature(
        "http://internal:8000/twilio/sms", INBOUND
    )
    proxied = await stack.api.post(
        "/twilio/sms", data=INBOUND, headers={"X-Twilio-Signature": other}
    )
    assert proxied.status_code == 403
    # A body changed after signing fails too.
    signature = RequestValidator(stack.settings.twilio_token).compute_signature(
        stack.url + "/twilio/sms", INBOUND
    )
    tampered = await stack.api.post(
        "/twilio/sms", data={**INBOUND, "Body": "STOP"}, headers={"X-Twilio-Signature": signature}
    )
    assert tampered.status_code == 403
    assert await _counts(stack) == (0, 0)


@pytest.mark.parametrize("missing", ["MessageSid", "From", "To"])
async def test_signed_but_incomplete_is_400(stack: Stack, missing: str) -> None:
    params = {k: v for k, v in INBOUND.items() if k != missing}
    response = await stack.post_twilio("/twilio/sms", params)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == missing
    assert await _counts(stack) == (0, 0)


LONG = "SM" + "1" * 300  # longer than any SID: a claim's key would not fit its column


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/twilio/sms", {**INBOUND, "MessageSid": LONG}, "MessageSid"),
        ("/twilio/sms", {**INBOUND, "From": "+1" + "5" * 300}, "From"),
        ("/twilio/sms/status", {"MessageSid": "SM1", "MessageStatus": "d" * 300}, "MessageStatus"),
        (
            f"{STATUS_PATH}?pl=pl_x&leg=lead",
            {"CallSid": LONG, "CallStatus": "completed"},
            "CallSid",
        ),
    ],
)
async def test_a_signed_value_too_long_to_key_a_claim_is_400(
    stack: Stack, path: str, params: dict[str, str], field: str
) -> None:
    """Twilio's SIDs are 34 characters: a value past MAX_KEY_PART is refused naming it, before
    the claim (PostgreSQL refused the over-long key, and the request was a 500)."""
    response = await stack.post_twilio(path, params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
    assert await _counts(stack) == (0, 0)


async def test_garbage_bodies_never_500(stack: Stack) -> None:
    for path in ("/twilio/sms", "/twilio/sms/status"):
        for body, content_type in (
            (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
            (b"%%%===&&&", "application/x-www-form-urlencoded"),
            (b'{"MessageSid": 1}', "application/json"),
            (b"<xml/>", "text/xml"),
            (b"x" * 70_000, "application/x-www-form-urlencoded"),
        ):
            response = await stack.api.post(
                path,
                content=body,
                headers={"Content-Type": content_type, "X-Twilio-Signature": "abc"},
            )
            assert 400 <= response.status_code < 500, (path, body[:20], response.status_code)
    assert await _counts(stack) == (0, 0)


async def test_signed_garbage_is_4xx(stack: Stack) -> None:

    url = stack.url + "/twilio/sms"
    signature = RequestValidator(stack.settings.twilio_token).compute_signature(url, {})
    response = await stack.api.post(
        "/twilio/sms",
        content=b"\xff\xfe",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert response.status_code == 400


async def test_status_callbacks_out_of_order_end_in_the_right_state(stack: Stack) -> None:
    message = (await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "hi"})).json()
    await stack.run_worker()  # sent to the sandbox; its callbacks not delivered yet
    [create] = stack.creates(To=LEAD)
    path = f"/twilio/sms/status?message_id={message['id']}"
    base = {"MessageSid": create.sid or "", "AccountSid": stack.settings.twilio_sid, "To": LEAD}
    for status in ("delivered", "sent", "delivered", "queued"):
        response = await stack.post_twilio(path, {**base, "MessageStatus": status})
        assert response.status_code == 204
    await stack.run_worker()  # the sms.statuses job
    final = (await stack.api.get(f"/v1/messages/{message['id']}")).json()
    assert final["status"] == "delivered"
    history = [h["status"] for h in final["history"]]
    assert "sent (late)" in history and history.count("delivered") == 1
    # The sandbox's own (now late) callbacks change nothing either.
    await stack.work()
    assert (await stack.api.get(f"/v1/messages/{message['id']}")).json()["status"] == "delivered"


async def test_undelivered_with_permanent_code_flags_the_number(stack: Stack) -> None:
    message = (await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "hi"})).json()
    await stack.run_worker()
    [create] = stack.creates(To=LEAD)
    response = await stack.post_twilio(
        f"/twilio/sms/status?message_id={message['id']}",
        {"MessageSid": create.sid or "", "MessageStatus": "undelivered", "ErrorCode": "21610"},
    )
    assert response.status_code == 204
    # Appended by the request, acted on by the sms.statuses job.
    assert (await stack.api.get(f"/v1/opt-outs/{LEAD}")).json()["status"] != "opted_out"
    await stack.run_worker()
    status = (await stack.api.get(f"/v1/opt-outs/{LEAD}")).json()
    assert status["status"] == "opted_out"
    assert status["history"][0]["source"] == "carrier_error_21610"


async def test_json_webhook_with_body_sha256(stack: Stack) -> None:
    """Twilio signs JSON bodies through `bodySHA256` in the query string."""
    body = json.dumps({"MessageSid": "SM" + "9" * 32, "From": LEAD, "To": OUR_NUMBER, "Body": "hi"})
    digest = hashlib.sha256(body.encode()).hexdigest()
    path = f"/twilio/sms?bodySHA256={digest}"
    signature = RequestValidator(stack.settings.twilio_token).compute_signature(
        stack.url + path, {}
    )
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    accepted = await stack.api.post(path, content=body, headers=headers)
    assert accepted.status_code == 200
    await stack.work()
    assert await _counts(stack) == (1, 1)
    tampered = await stack.api.post(path, content=body.replace("hi", "STOP"), headers=headers)
    assert tampered.status_code == 403
    assert await _counts(stack) == (1, 1)


@pytest.mark.parametrize(
    "field",
    [{"Body": {"text": "hi"}}, {"OptOutType": ["STOP", 1]}, {"NumMedia": "1", "MediaUrl0": 7}],
)
async def test_json_webhook_with_a_non_text_field_is_400_and_stores_nothing(
    stack: Stack, field: dict[str, object]
) -> None:
    """A JSON body may hold any value where Twilio sends text: refused before the append, so
    the inbox job never meets it."""
    fields = {"MessageSid": "SM" + "8" * 32, "From": LEAD, "To": OUR_NUMBER, "Body": "hi", **field}
    body = json.dumps(fields)
    path = f"/twilio/sms?bodySHA256={hashlib.sha256(body.encode()).hexdigest()}"
    signature = RequestValidator(stack.settings.twilio_token).compute_signature(
        stack.url + path, {}
    )
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    refused = await stack.api.post(path, content=body, headers=headers)
    assert refused.status_code == 400, refused.text
    name = next(k for k in field if k != "NumMedia")
    assert refused.json()["error"]["field"] == name
    assert await _counts(stack) == (0, 0)


async def test_a_leads_texts_leave_in_order(stack: Stack) -> None:
    """Three texts queued for one lead reach Twilio in the order they were written."""
    ids = [
        (await stack.api.post("/v1/messages", json={"phone": LEAD, "body": f"part {i}"})).json()[
            "id"
        ]
        for i in range(1, 4)
    ]
    await stack.work()
    bodies = [r.get("Body") for r in stack.creates(To=LEAD)]
    assert bodies == ["part 1 Reply STOP to opt out.", "part 2", "part 3"]  # notice on the first
    for message_id in ids:
        assert (await stack.api.get(f"/v1/messages/{message_id}")).json()["status"] == "delivered"
