"""Drill: `kill -9` the worker while its `sms.inbox` job works through a backlog of inbound
texts in batches, and start it again each time. Every text must be recorded exactly once
(one message row, one `received` history row), every claim must end done, and every STOP among
them must be in the ledger exactly once: a batch cut off by a kill is rolled back whole and
taken again by the next run.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlmodel import col, func, select
from twilio.request_validator import RequestValidator

from gateway.jobs import sms_inbox
from gateway.models import Message, MessageEvent, OptOutEvent, WebhookClaim
from tests.reliability.drill import FULL, OUR_NUMBER, Drill, lead_phones, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

TEXTS = 2000 if FULL else 600
KILLS = 5 if FULL else 2
DEADLINE_SECONDS = 600 if FULL else 150
STOP_EVERY = 5  # every fifth text is a STOP, from a phone of its own


async def test_worker_killed_mid_batch_loses_and_doubles_no_inbound_text(drill: Drill) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    phones = lead_phones(TEXTS)
    validator = RequestValidator(drill.settings.twilio_token)
    url = drill.settings.base_url + "/twilio/sms"
    for n, phone in enumerate(phones):  # appended while no worker runs: a backlog
        params = {
            "MessageSid": f"SM{n:032d}",
            "From": phone,
            "To": OUR_NUMBER,
            "Body": "STOP" if n % STOP_EVERY == 0 else f"text {n}",
        }
        signature = validator.compute_signature(url, params)
        answer = await drill.api.post(
            "/twilio/sms", data=params, headers={"X-Twilio-Signature": signature}
        )
        assert answer.status_code == 200, answer.text
    assert await _recorded(drill) == 0

    drill.worker.start()  # its first sweep finds the backlog
    moments = sorted(drill.rng.sample(range(TEXTS // 10, TEXTS * 8 // 10), KILLS))
    for at in moments:

        async def reached(at: int = at) -> bool:
            return await _recorded(drill) >= at

        await wait_for(
            f"inbound text number {at} recorded",
            reached,
            deadline,
            drill.worker.log_tail,
        )
        drill.worker.kill()
        drill.worker.start()  # the process manager's part

    async def settled() -> bool:
        return await _pending(drill) == 0

    await wait_for("every inbound text acted on", settled, deadline, drill.worker.log_tail)

    async with drill.sessions() as session:
        sids = (
            await session.exec(select(Message.twilio_sid).where(Message.direction == "inbound"))
        ).all()
        received = (
            await session.exec(
                select(MessageEvent.message_id).where(col(MessageEvent.status) == "received")
            )
        ).all()
        ledger = (await session.exec(select(OptOutEvent.message_sid))).all()
    expected = [f"SM{n:032d}" for n in range(TEXTS)]
    assert sorted(s or "" for s in sids) == expected, drill.seed
    assert len(received) == len(set(received)) == TEXTS, drill.seed
    stops = [sid for n, sid in enumerate(expected) if n % STOP_EVERY == 0]
    assert Counter(ledger) == Counter(stops), drill.seed
    assert drill.worker.kills == KILLS
    print(f"{TEXTS} inbound texts in batches of {sms_inbox.BATCH}, {KILLS} kills: each once")


async def _recorded(drill: Drill) -> int:
    async with drill.sessions() as session:
        query = select(func.count()).where(col(Message.direction) == "inbound")
        return (await session.exec(query)).one()


async def _pending(drill: Drill) -> int:
    async with drill.sessions() as session:
        query = select(func.count()).where(
            col(WebhookClaim.kind) == sms_inbox.CLAIM_KIND, col(WebhookClaim.done_at).is_(None)
        )
        return (await session.exec(query)).one()
