"""Outbound texts end to end: API -> gate -> worker -> real twilio client -> sandbox -> signed
status callbacks -> the message's status and history."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest
from sqlmodel import col, select

from gateway.clock import now, set_clock
from gateway.db import transaction
from gateway.jobs import sms_send
from gateway.models import Message, Purpose
from gateway.sms import errors, sender
from gateway.sms.outbox import queue_message
from gateway.work import SMS_SEND, stage
from gateway.worker import opened_job_context
from tests.support.stack import LEAD, OUR_NUMBER, Stack
from twilio_sandbox import RestFault


async def test_text_is_sent_once_and_delivered(stack: Stack) -> None:
    created = await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "Hi Ann!"})
    assert created.status_code == 201, created.text
    message = created.json()
    assert message["status"] == "queued"
    await stack.work()

    [create] = stack.creates(To=LEAD)
    # The lead's first text carries the account's opt-out notice.
    assert create.get("From") == OUR_NUMBER
    assert create.get("Body") == "Hi Ann! Reply STOP to opt out."
    assert create.get("StatusCallback") == (
        f"{stack.url}/twilio/sms/status?message_id={message['id']}"
    )
    assert int(create.get("ValidityPeriod") or 0) == 8 * 3600  # until 20:00 Pacific
    final = (await stack.api.get(f"/v1/messages/{message['id']}")).json()
    assert final["status"] == "delivered"
    assert final["twilio_sid"] == create.sid
    statuses = [h["status"] for h in final["history"]]
    assert statuses[:3] == ["queued", "sending", "accepted"]
    assert "sent" in statuses and statuses[-1] == "delivered"


async def test_landline_is_flagged_and_not_texted_again(stack: Stack) -> None:
    landline = "+14155550177"
    stack.sandbox.phones.script(landline, line_type="landline")
    first = (await stack.api.post("/v1/messages", json={"phone": landline, "body": "one"})).json()
    await stack.work()
    status = (await stack.api.get(f"/v1/messages/{first['id']}")).json()
    assert status["status"] == "undelivered" and status["error_code"] == 30006


async def test_twilio_429_for_a_while_then_everything_sent_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(errors, "RETRY_DELAYS", (0.05, 0.1, 0.2, 0.4, 0.8))
    stack.sandbox.faults.add_rest(RestFault("rate_limit", kind="messages.create", times=3))
    ids = []
    for i in range(3):
        phone = f"+1415555020{i}"
        ids.append(
            (await stack.api.post("/v1/messages", json={"phone": phone, "body": "hi"})).json()["id"]
        )
    await stack.work()
    accepted = [r for r in stack.creates() if r.status == 201]
    assert sorted(r.get("To") for r in accepted) == ["+14155550200", "+14155550201", "+14155550202"]
    assert len([r for r in stack.creates() if r.status == 429]) == 3
    for message_id in ids:
        assert (await stack.api.get(f"/v1/messages/{message_id}")).json()["status"] == "delivered"


async def test_twilio_retry_after_is_honoured(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 429 with Retry-After: 2 holds the retry back 2 s, though the schedule says 10 ms."""
    monkeypatch.setattr(errors, "RETRY_DELAYS", (0.01, 0.01, 0.01))
    fault = RestFault("rate_limit", kind="messages.create", times=1, retry_after=2)
    stack.sandbox.faults.add_rest(fault)
    await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "wait for it"})
    await stack.work()
    refused, accepted = stack.creates(To=LEAD)
    assert (refused.status, accepted.status) == (429, 201)
    # A lower bound, not a speed: the retry did not go before Twilio said it may.
    assert accepted.received - refused.received >= 2.0


async def test_a_claimed_text_holds_what_its_row_holds(stack: Stack) -> None:
    """The claim writes the row and sets the session's object to match, without reading the
    row back (only the attempts come back): every column, as a fresh read finds it."""
    message = (await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "once"})).json()
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        claimed = await sms_send._prepare(jc, message["id"])
    assert isinstance(claimed, Message) and claimed.status == "sending"
    async with stack.sessions() as session:
        row = await session.get(Message, message["id"])
    assert row is not None
    columns = [c.key for c in Message.__table__.columns]  # type: ignore[attr-defined]
    assert {c: getattr(claimed, c) for c in columns} == {c: getattr(row, c) for c in columns}
    assert claimed.attempts == 1


async def test_interrupted_send_is_reconciled_not_repeated(stack: Stack) -> None:
    """The worker dies after Twilio accepted the text and before the SID was committed."""
    message = (await stack.api.post("/v1/messages", json={"phone": LEAD, "body": "once"})).json()
    async with opened_job_context(stack.settings, stack.sessions, stack.api_redis) as jc:
        claimed = await sms_send._prepare(jc, message["id"])
        assert isinstance(claimed, Message) and claimed.status == "sending"
        # The request reaches Twilio...
        await jc.twilio.messages.create_async(to=LEAD, from_=OUR_NUMBER, body=claimed.body)
        # ...and the process dies before recording the answer.
    await stack.sandbox.advance(sender.IN_FLIGHT_GRACE.total_seconds() + 150)
    await stack.work()
    assert len(stack.creates(To=LEAD)) == 1
    final = (await stack.api.get(f"/v1/messages/{message['id']}")).json()
    assert final["twilio_sid"] == stack.creates(To=LEAD)[0].sid
    assert any("reconciled" in (h["detail"] or "") for h in final["history"])


async def test_rate_limit_spaces_a_burst_from_one_long_code(stack: Stack) -> None:
    """500 texts from one long code (1/s) get consecutive one-second slots in one pass."""
    stack.settings.sms_rate_limits = True
    # Slots are reserved by Redis's wall clock: let the gateway's clock run at wall speed too.
    started, t0 = now(), time.monotonic()
    set_clock(lambda: started + timedelta(seconds=time.monotonic() - t0))
    async with transaction(stack.sessions) as session:
        queued = [
            await queue_message(
                session,
                account_id=stack.account_id,
                phone=f"+1415556{i:04d}",
                body="hello",
                purpose=Purpose.INITIATED,
                reason="test",
            )
            for i in range(500)
        ]
    # The commit enqueued every send. One pass over the queue: the deferred re-runs (the
    # slots) wait in Redis.
    pass_started = time.monotonic()
    await stack.run_worker(max_burst_jobs=len(queued))
    pass_seconds = time.monotonic() - pass_started
    async with stack.sessions() as session:
        rows = (await session.exec(select(Message).order_by(col(Message.send_after)))).all()
    sent_now = [m for m in rows if m.status != "queued"]
    waiting = sorted(m.send_after for m in rows if m.status == "queued" and m.send_after)
    # Only a slot that came while the pass ran is sent in it: the first, and one per second the
    # pass took (a loaded machine makes the pass longer, never the spacing shorter).
    assert len(sent_now) <= 1 + int(pass_seconds) + 1
    # The pass may end some jobs early: the startup sweeps count towards max_burst_jobs.
    # The spacing below is what this test is about.
    assert len(waiting) >= 450
    # Each send_after is the gateway's clock plus the wait Redis gave, so it carries that job's
    # scheduling delay too (tens of ms, seconds on a loaded machine); over 450 slots that delay
    # averages out: the burst spans one second per slot. The exact slot spacing is checked at
    # Redis in tests/sms/test_ratelimit.py.
    assert all(b > a for a, b in itertools.pairwise(waiting))
    span = (waiting[-1] - waiting[0]).total_seconds()
    assert 0.95 <= span / (len(waiting) - 1) <= 1.05, span
    # The burst is spread over minutes from when it was queued (not from now: a loaded
    # machine's pass may itself take a minute).
    assert (waiting[-1] - started) >= timedelta(seconds=450)
    # Nothing waiting went to Twilio early.
    assert len(stack.creates()) == len(sent_now)


async def test_a_text_behind_a_deferred_one_waits_with_it(stack: Stack) -> None:
    """The lead's first text waits two hours (as a gate deferral leaves it); the second waits
    as long behind it instead of asking every second, then both go, in order."""
    async with transaction(stack.sessions) as session:
        first, second = [
            await queue_message(
                session,
                account_id=stack.account_id,
                phone=LEAD,
                body=body,
                purpose=Purpose.INITIATED,
                reason="test",
            )
            for body in ("one", "two")
        ]
        first.send_after, first.gate_reason = now() + timedelta(hours=2), "quiet_hours"
        session.add(first)
        stage(session, SMS_SEND, first.id, at=first.send_after)  # as the gate's deferral does
    worker = await stack.run_worker()
    assert worker.jobs_retried == 0  # it did not poll
    assert stack.creates(To=LEAD) == []
    async with stack.sessions() as session:
        held = await session.get(Message, second.id)
    assert held is not None and held.gate_reason == sender.BEHIND_EARLIER
    assert held.send_after == first.send_after
    await stack.sandbox.advance(2 * 3600 + 60)
    await stack.work()
    bodies = [r.get("Body") or "" for r in stack.creates(To=LEAD)]
    assert [b.split()[0] for b in bodies] == ["one", "two"]
