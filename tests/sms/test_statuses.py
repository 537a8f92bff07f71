"""Status callbacks (gateway/jobs/sms_statuses.py): `POST /twilio/sms/status` only appends the
callback, and the `sms.statuses` job acts on the pending callbacks in batches, each once, moving
a text forward only. Real signed webhooks through the gateway, the real job, database and Redis.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from arq.constants import default_queue_name
from sqlmodel import col, select
from twilio.request_validator import RequestValidator

from gateway.clock import now
from gateway.job_context import as_ctx
from gateway.jobs import sms_statuses
from gateway.models import Message, MessageEvent
from gateway.work import SMS_STATUSES
from gateway.work.sweep import sweep
from gateway.worker import opened_job_context
from tests.support.claims import pending_keys, watched_takes
from tests.support.sql import statements
from tests.support.stack import LEAD, Stack


async def _sent(stack: Stack) -> tuple[str, str]:
    """A text the worker handed to the sandbox, its callbacks not delivered: (id, SID)."""
    message = (await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "hi"})).json()
    await stack.run_worker()
    [create] = stack.creates(To=LEAD)
    return message["id"], create.sid or ""


async def _callback(stack: Stack, message_id: str | None, sid: str, status: str) -> None:
    path = "/twilio/sms/status" + (f"?message_id={message_id}" if message_id else "")
    response = await stack.post_twilio(path, {"MessageSid": sid, "MessageStatus": status})
    assert response.status_code == 204, response.text


async def _pending(stack: Stack) -> list[str]:
    return await pending_keys(stack.sessions, sms_statuses.CLAIM_KIND)


async def _history(stack: Stack, message_id: str) -> tuple[str, list[str]]:
    async with stack.sessions() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        query = (
            select(MessageEvent.status)
            .where(MessageEvent.message_id == message_id)
            .order_by(col(MessageEvent.id))
        )
        return message.status, list((await session.exec(query)).all())


async def test_the_callback_appends_and_the_job_moves_the_text_forward_once(
    stack: Stack,
) -> None:
    message_id, sid = await _sent(stack)
    await _callback(stack, message_id, sid, "delivered")
    await _callback(stack, message_id, sid, "delivered")  # Twilio again: appended once
    await _callback(stack, message_id, sid, "sent")  # late
    assert await _pending(stack) == [f"{sid}:delivered", f"{sid}:sent"]
    assert (await _history(stack, message_id))[0] == "accepted"  # nothing acted on yet
    with statements() as ran:
        await stack.run_worker()
    assert await _pending(stack) == []
    status, history = await _history(stack, message_id)
    assert status == "delivered"
    assert history[-2:] == ["delivered", "sent (late)"]
    # A forward move is one UPDATE of the row (read back by nothing); the late one reads it.
    touching = [s.split()[0] for s in ran if " messages " in s or "FROM messages" in s]
    assert touching[0] == "UPDATE", ran


async def test_a_burst_of_callbacks_is_taken_in_batches_each_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    message_id, sid = await _sent(stack)
    count = 2 * sms_statuses.BATCH + 5
    # Callbacks for texts this gateway never sent (logged and kept as claims), then ours.
    strangers = [f"SM{n:032d}" for n in range(count)]
    for stranger in strangers:
        await _callback(stack, None, stranger, "delivered")
    await _callback(stack, message_id, sid, "delivered")
    with watched_takes(monkeypatch, sms_statuses.CLAIM_KIND) as takes:
        await stack.run_worker()
    assert await _pending(stack) == []
    assert await _history(stack, message_id) == (
        "delivered",
        ["queued", "sending", "accepted", "delivered"],
    )
    # A transaction per batch, not per callback (and runs that found nothing left).
    assert [n for n in takes if n] == [
        sms_statuses.BATCH,
        sms_statuses.BATCH,
        count + 1 - 2 * sms_statuses.BATCH,
    ]


async def test_a_bad_error_code_is_400_and_stores_nothing(stack: Stack) -> None:
    message_id, sid = await _sent(stack)
    for code in ("-1", "12x", "9" * 30):
        params: dict[str, Any] = {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": code}
        response = await stack.post_twilio(f"/twilio/sms/status?message_id={message_id}", params)
        assert response.status_code == 400, (code, response.text)
    assert await _pending(stack) == []


async def test_callbacks_whose_job_redis_lost_are_found_by_the_sweep(stack: Stack) -> None:
    message_id, sid = await _sent(stack)
    await _callback(stack, message_id, sid, "delivered")
    await stack.api_redis.flushdb()
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        assert await sweep(as_ctx(jc)) >= 1
    queued = {job.decode() for job in await stack.api_redis.zrange(default_queue_name, 0, -1)}
    assert SMS_STATUSES.job_id(sms_statuses.STATUSES) in queued
    await stack.run_worker()
    assert (await _history(stack, message_id))[0] == "delivered"


async def test_a_callback_acted_on_later_is_dated_when_twilio_brought_it(stack: Stack) -> None:
    """The text's sent_at and history say when Twilio reported the status (the compliance
    export measures a STOP's confirmation by it), not when the job got to it."""
    message_id, sid = await _sent(stack)
    reported = now()
    await _callback(stack, message_id, sid, "delivered")
    await stack.sandbox.advance(600)  # the worker was down for ten minutes
    await stack.run_worker()
    async with stack.sessions() as session:
        message = await session.get(Message, message_id)
        query = select(MessageEvent.at).where(
            MessageEvent.message_id == message_id, MessageEvent.status == "delivered"
        )
        [at] = (await session.exec(query)).all()
    assert message is not None and message.status == "delivered"
    assert message.sent_at == reported == at


async def test_only_the_callback_url_names_the_text_never_the_body(stack: Stack) -> None:
    """A JSON body is signed through its digest, so it could carry a `message_id` of its own:
    the job reads the URL's, and a callback without one finds its text by SID alone."""
    message_id, _sid = await _sent(stack)
    body = json.dumps(
        {"MessageSid": "SM" + "7" * 32, "MessageStatus": "failed", "message_id": message_id}
    )
    path = f"/twilio/sms/status?bodySHA256={hashlib.sha256(body.encode()).hexdigest()}"
    signature = RequestValidator(stack.settings.twilio_token).compute_signature(
        stack.url + path, {}
    )
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    assert (await stack.api.post(path, content=body, headers=headers)).status_code == 204
    await stack.run_worker()
    assert (await _history(stack, message_id))[0] == "accepted"  # untouched
    assert await _pending(stack) == []
