"""Status checks (issue 18): a sent text whose status callbacks never came is fetched from Twilio
by its SID on a bounded schedule, and what Twilio says moves it, the lead, the play and the
webhooks exactly as the callback would have. The sandbox drops the callbacks; its REST API
answers the fetches; the sandbox's virtual clock is the gateway's."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from gateway.clock import now
from gateway.db import transaction
from gateway.job_context import as_ctx
from gateway.jobs import sms_status_checks as status_checks
from gateway.models import Lead, Message, MessageEvent, Play, WebhookClaim
from gateway.sms.status_schedule import CHECK_OFFSETS, CHECKS_END, FIRST_CHECK
from gateway.webhooks.addresses import set_private_allowed
from gateway.worker import opened_job_context
from tests.reliability.support_callbacks import MORTGAGE, publish_mortgage, start
from tests.support.stack import LEAD, Stack
from tests.support.webhook_endpoint import WebhookEndpoint, WebhookEndpointServer
from twilio_sandbox import CallbackFault, RestFault


def _drop_status_callbacks(stack: Stack) -> None:
    """Every SMS status callback from now on is lost, as while the gateway is down."""
    stack.sandbox.faults.add_callback(CallbackFault("drop", kind="sms.status", times=10**9))


def _fetches(stack: Stack) -> list[Any]:
    return stack.sandbox.record.requests("messages.fetch")


async def _text(stack: Stack, phone: str = LEAD, body: str = "Hi Ann!") -> str:
    lead = await stack.api.post("/v1/leads", json={"phone": phone, "first_name": "Ann"})
    assert lead.status_code in (200, 201), lead.text
    created = await stack.api.post(
        "/v1/messages", json={"lead_id": lead.json()["lead"]["id"], "body": body}
    )
    assert created.status_code == 201, created.text
    message_id = created.json()["id"]
    assert isinstance(message_id, str)
    return message_id


async def _message(stack: Stack, message_id: str) -> Message:
    async with stack.sessions() as session:
        message = await session.get(Message, message_id)
    assert message is not None
    return message


async def _history(stack: Stack, message_id: str) -> list[MessageEvent]:
    async with stack.sessions() as session:
        query = (
            select(MessageEvent)
            .where(MessageEvent.message_id == message_id)
            .order_by(col(MessageEvent.id))
        )
        return list((await session.exec(query)).all())


async def _advance_to(stack: Stack, moment: datetime) -> None:
    seconds = (moment - now()).total_seconds()
    assert seconds >= 0, f"already past {moment}"
    await stack.sandbox.advance(seconds)


async def test_nothing_is_fetched_before_the_first_delay_then_delivered(stack: Stack) -> None:
    _drop_status_callbacks(stack)
    message_id = await _text(stack)
    await stack.work()
    sent = await _message(stack, message_id)
    assert sent.status == "accepted" and sent.twilio_sid is not None  # its callbacks were lost
    assert stack.sandbox.messaging.get(sent.twilio_sid).status == "delivered"
    assert sent.status_check_at == sent.updated_at + FIRST_CHECK

    # A second before the first check: the worker's sweeps run, nothing is asked.
    await _advance_to(stack, sent.status_check_at - timedelta(seconds=1))
    await stack.run_worker()
    assert _fetches(stack) == []
    assert (await _message(stack, message_id)).status == "accepted"

    await _advance_to(stack, sent.status_check_at)
    await stack.run_worker()
    [fetch] = _fetches(stack)
    assert fetch.path.endswith(f"/Messages/{sent.twilio_sid}.json") and fetch.status == 200
    checked = await _message(stack, message_id)
    assert checked.status == "delivered" and checked.status_check_at is None
    assert checked.sent_at is not None
    [delivered] = [e for e in await _history(stack, message_id) if e.status == "delivered"]
    assert delivered.detail == status_checks.DETAIL

    # Claimed as the callback it stands for: that callback, if it arrives after all, is a
    # repeat and leaves no trace; a day on, nothing is asked again.
    late = await stack.post_twilio(
        f"/twilio/sms/status?message_id={message_id}",
        {"MessageSid": sent.twilio_sid, "MessageStatus": "delivered", "To": LEAD},
    )
    assert late.status_code == 204
    assert [e.status for e in await _history(stack, message_id)].count("delivered") == 1
    await stack.sandbox.advance(24 * 3600)
    await stack.run_worker()
    assert len(_fetches(stack)) == 1


async def test_a_checked_failure_moves_the_play_as_its_callback_would(stack: Stack) -> None:
    """Two landline leads in the mortgage play (on_failure: halt): the first with its callbacks,
    the second with every callback lost and its status fetched. Both end the same way: the text
    undelivered with 30006, the lead flagged `landline` with the code, the play stopped, and the
    `started` and `stopped` activities at the customer's webhook."""
    receiver = WebhookEndpoint()
    server = WebhookEndpointServer(receiver)
    server.start()
    try:
        async with transaction(stack.sessions) as session:
            await set_private_allowed(session, stack.account_id, True)
        hook = await stack.api.post("/v1/webhooks", json={"url": receiver.url + "/hook"})
        assert hook.status_code == 201, hook.text
        await publish_mortgage(stack)
        outcomes = []
        for phone, lose_callbacks in (("+14155550131", False), ("+14155550132", True)):
            stack.sandbox.phones.script(phone, line_type="landline")
            if lose_callbacks:
                _drop_status_callbacks(stack)
            play_id = await start(stack, phone, MORTGAGE)
            await stack.work()
            if lose_callbacks:
                [waiting] = await _play_messages(stack, play_id)
                assert waiting.status == "accepted"  # nothing happened yet
                await stack.sandbox.advance(FIRST_CHECK.total_seconds())
                await stack.work()
            await stack.work()  # the `stopped` activity's webhook
            outcomes.append(await _outcome(stack, play_id, phone, receiver))
    finally:
        server.stop()
    with_callbacks, with_checks = outcomes
    assert with_checks == with_callbacks
    assert with_checks == {
        "messages": [("undelivered", 30006)],
        "lead": ("landline", 30006),
        "play": "stopped",
        "activities": ["started", "stopped"],
        "webhooks": ["started", "stopped"],
    }
    assert len(_fetches(stack)) == 1


async def _play_messages(stack: Stack, play_id: str) -> list[Message]:
    async with stack.sessions() as session:
        query = select(Message).where(Message.play_id == play_id).order_by(col(Message.created_at))
        return list((await session.exec(query)).all())


async def _outcome(
    stack: Stack, play_id: str, phone: str, receiver: WebhookEndpoint
) -> dict[str, Any]:
    detail = (await stack.api.get(f"/v1/plays/{play_id}")).json()
    async with stack.sessions() as session:
        play = await session.get(Play, play_id)
        lead = (
            await session.exec(
                select(Lead).where(Lead.account_id == stack.account_id, Lead.phone == phone)
            )
        ).one()
    assert play is not None
    hooks = [b["activity_label"] for b in receiver.bodies() if b.get("activity_play_id") == play_id]
    return {
        "messages": [(m.status, m.error_code) for m in await _play_messages(stack, play_id)],
        "lead": (lead.phone_status, lead.phone_status_code),
        "play": play.state,
        "activities": [a["label"] for a in detail["activities"]],
        "webhooks": hooks,
    }


async def test_a_sid_twilio_does_not_know_stops_being_checked(stack: Stack) -> None:
    _drop_status_callbacks(stack)
    message_id = await _text(stack)
    await stack.work()
    sent = await _message(stack, message_id)
    assert sent.twilio_sid is not None and sent.status_check_at is not None
    # Twilio no longer knows the SID (say, a message deleted from the Twilio account).
    del stack.sandbox.messaging.messages[sent.twilio_sid]

    await _advance_to(stack, sent.status_check_at)
    await stack.run_worker()
    [fetch] = _fetches(stack)
    assert fetch.status == 404
    after = await _message(stack, message_id)
    assert after.status == "accepted" and after.status_check_at is None
    [stopped] = [e for e in await _history(stack, message_id) if e.status == "not_found"]
    assert stopped.detail is not None and sent.twilio_sid in stopped.detail

    await stack.sandbox.advance(CHECKS_END.total_seconds() + 3600)
    await stack.run_worker()
    assert len(_fetches(stack)) == 1  # never asked again


async def test_a_twilio_error_is_tried_again_next_round(stack: Stack) -> None:
    _drop_status_callbacks(stack)
    message_id = await _text(stack)
    await stack.work()
    sent = await _message(stack, message_id)
    assert sent.status_check_at is not None
    stack.sandbox.faults.add_rest(RestFault("error500", kind="messages.fetch", times=1))
    stack.sandbox.faults.add_rest(RestFault("rate_limit", kind="messages.fetch", times=1))

    await _advance_to(stack, sent.status_check_at)
    await stack.run_worker()
    assert [f.status for f in _fetches(stack)] == [500]
    retry = await _message(stack, message_id)
    assert retry.status == "accepted"
    assert retry.status_check_at == now() + status_checks.RETRY_AFTER_ERROR

    await _advance_to(stack, retry.status_check_at)
    await stack.run_worker()
    assert [f.status for f in _fetches(stack)] == [500, 429]
    again = await _message(stack, message_id)
    assert again.status_check_at is not None

    await _advance_to(stack, again.status_check_at)
    await stack.run_worker()
    assert [f.status for f in _fetches(stack)] == [500, 429, 200]
    assert (await _message(stack, message_id)).status == "delivered"


async def test_checks_back_off_and_end_after_the_bound(stack: Stack) -> None:
    """A carrier that never reports `delivered`: Twilio says `sent` for ever. The text is checked
    at each planned time after its last change (5 min, 20 min, 1 h 20 min, ...), never between,
    and after CHECKS_END the checks end with a history entry."""
    stack.sandbox.phones.script(LEAD, delivery_after=30 * 24 * 3600.0)
    message_id = await _text(stack)
    await stack.work()
    sent = await _message(stack, message_id)
    assert sent.status == "sent"  # the `sent` callback came; `delivered` never will
    changed = sent.updated_at
    for count, offset in enumerate(CHECK_OFFSETS, start=1):
        await _advance_to(stack, changed + offset - timedelta(seconds=1))
        await stack.run_worker()
        assert len(_fetches(stack)) == count - 1, f"asked before {offset}"
        await _advance_to(stack, changed + offset)
        await stack.run_worker()
        assert len(_fetches(stack)) == count, f"not asked at {offset}"
    assert [f.at - changed for f in _fetches(stack)] == list(CHECK_OFFSETS)
    ended = await _message(stack, message_id)
    assert ended.status == "sent" and ended.status_check_at is None
    [entry] = [e for e in await _history(stack, message_id) if e.status == "checks_ended"]
    assert entry.detail is not None and "Twilio says sent" in entry.detail

    await stack.sandbox.advance(7 * 24 * 3600)
    await stack.run_worker()
    assert len(_fetches(stack)) == len(CHECK_OFFSETS)


async def test_workers_side_by_side_check_each_message_once(stack: Stack) -> None:
    """Four workers' sweeps claim at the same moment: each message is asked for once."""
    _drop_status_callbacks(stack)
    ids = [await _text(stack, f"+141555501{i:02d}") for i in range(40, 56)]
    await stack.work()
    await stack.sandbox.advance(FIRST_CHECK.total_seconds())
    async with contextlib.AsyncExitStack() as workers:  # each with its own Twilio client
        contexts = [
            as_ctx(
                await workers.enter_async_context(
                    opened_job_context(stack.settings, stack.sessions, stack.api_redis)
                )
            )
            for _ in range(4)
        ]
        claimed = await asyncio.gather(*(status_checks.check_statuses(c) for c in contexts))
    assert sum(claimed) == len(ids)
    fetched = [f.path.rsplit("/", 1)[-1] for f in _fetches(stack)]
    assert len(fetched) == len(set(fetched)) == len(ids)  # each message asked for once
    for message_id in ids:
        assert (await _message(stack, message_id)).status == "delivered"
    async with stack.sessions() as session:
        claims = (
            await session.exec(select(WebhookClaim).where(WebhookClaim.kind == "sms_status"))
        ).all()
    assert sorted(c.key.rsplit(":", 1)[1] for c in claims) == ["delivered"] * len(ids)
