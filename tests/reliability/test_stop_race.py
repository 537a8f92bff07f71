"""STOP racing a burst: 50 texts for one lead are queued, two workers are sending them, and the
lead's STOP arrives through the sandbox in the middle. Twilio accepts no text after the opt-out
is recorded (one claimed just before may arrive a moment later and is refused with 21610, as
Twilio took the STOP first), and every text still queued ends blocked or canceled, never sent.

The gateway, the workers and the sandbox all read one clock here: the sandbox's virtual time
plus the real time elapsed, so every stamp is distinct and ordered across processes (in pure
virtual time they would all be equal while the race runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from gateway.models import LedgerEvent, LedgerSource, Message, MessageStatus, OptOutEvent, Purpose
from gateway.worker import build_worker, stop_worker
from tests.support.stack import LEAD, OUR_NUMBER, Stack

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

QUEUED = 50
ROUNDS = 5 if os.environ.get("RELIABILITY_FULL") == "1" else 1
WORKERS = 2
SETTLE_SECONDS = 60.0  # bound on waiting for the queue to drain after the STOP


def ticking(base: Callable[[], datetime]) -> Callable[[], datetime]:
    started = time.monotonic()
    return lambda: base() + timedelta(seconds=time.monotonic() - started)


@contextlib.asynccontextmanager
async def workers(stack: Stack, count: int) -> AsyncIterator[None]:
    """`count` long-running workers in this loop, as separate processes would run."""
    redis_url = stack.settings.redis_url
    assert redis_url is not None
    running = [build_worker(stack.settings, redis_url, handle_signals=False) for _ in range(count)]
    tasks = [asyncio.create_task(worker.async_run()) for worker in running]
    try:
        yield
    finally:
        for worker, task in zip(running, tasks, strict=True):
            await stop_worker(worker, task, grace=0)


async def _messages(stack: Stack, phone: str) -> list[Message]:
    async with stack.sessions() as session:
        rows = await session.exec(select(Message).where(Message.lead_phone == phone))
        return list(rows.all())


async def _until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # polls the sandbox's record, which has no event
        if condition():
            return
        await asyncio.sleep(0.01)


async def _race(stack: Stack, phone: str, sends_before_stop: int) -> None:
    for i in range(QUEUED):
        created = await stack.api.post("/v1/messages", json={"phone": phone, "body": f"#{i}"})
        assert created.status_code == 201, created.text
    async with workers(stack, WORKERS):
        await _until(lambda: len(stack.creates(To=phone)) >= sends_before_stop, SETTLE_SECONDS)
        stack.sandbox.send_sms(phone, OUR_NUMBER, "STOP")
        await stack.sandbox.advance(0)  # the inbound webhook goes out while workers send
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            rows = await _messages(stack, phone)
            busy = [m for m in rows if m.status in (MessageStatus.QUEUED, MessageStatus.SENDING)]
            if not busy:
                break
            await asyncio.sleep(0.05)


async def test_no_text_leaves_after_the_stop_is_recorded(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack.sandbox.clock, "now", ticking(stack.sandbox.clock.now))
    phones = [LEAD] + [f"+1415555{2000 + i:04d}" for i in range(1, ROUNDS)]
    for round_, phone in enumerate(phones):
        await _race(stack, phone, sends_before_stop=2 + 3 * round_)
        rows = await _messages(stack, phone)
        async with stack.sessions() as session:
            opt_outs = (
                await session.exec(select(OptOutEvent).where(OptOutEvent.phone == phone))
            ).all()
        # The lead's STOP; and when a text reached Twilio after Twilio took that STOP but before
        # the gateway had recorded it, Twilio's refusal (21610) is recorded first, as the
        # carrier's word, and the STOP after it: the ledger keeps both. The opt-out counts from
        # the first.
        assert {(e.event, e.source) for e in opt_outs} <= {
            (LedgerEvent.OPT_OUT, LedgerSource.KEYWORD),
            (LedgerEvent.OPT_OUT, LedgerSource.CARRIER_21610),
        }, opt_outs
        assert 1 <= len(opt_outs) <= 2, opt_outs
        recorded = min(e.suppression_applied_at for e in opt_outs)
        by_sid = {m.twilio_sid: m for m in rows if m.twilio_sid}
        ours = [m for m in rows if m.purpose != Purpose.CONFIRMATION and m.direction == "outbound"]
        assert len(ours) == QUEUED
        creates = [
            c for c in stack.creates(To=phone) if by_sid.get(c.sid) is None
            or by_sid[c.sid].purpose != Purpose.CONFIRMATION
        ]  # fmt: skip
        # A text claimed (gated under the contact lock) just before the STOP was recorded may
        # reach Twilio a few ms after it: Twilio, which took the STOP first, refuses it (21610).
        # Nothing Twilio accepts may come at or after the moment the opt-out is recorded.
        late = [(c.get("Body"), c.at, c.status) for c in creates if c.at >= recorded]
        assert all(status == 400 for _, _, status in late), (
            f"sent after the STOP was recorded at {recorded}: {late}"
        )
        assert 0 < len(creates) < QUEUED  # the STOP did land mid-burst
        sent = {m.id for m in ours if m.twilio_sid}
        assert len(sent) == len([c for c in creates if c.status == 201])
        # Everything else was stopped by the gate or canceled with the play, never left queued;
        # or, in the window between Twilio taking the STOP and the gateway recording it, refused
        # by Twilio itself with 21610 (a create the sandbox answered 400, not a text sent).
        rest = {
            (m.status, m.error_code if m.status == MessageStatus.FAILED else None)
            for m in ours
            if m.id not in sent
        }
        allowed = {(MessageStatus.BLOCKED, None), (MessageStatus.CANCELED, None)}
        assert rest <= allowed | {(MessageStatus.FAILED, 21610)}, rest
