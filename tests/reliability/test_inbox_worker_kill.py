"""Drill: `kill -9` the worker while its `sms.inbox` and `sms.statuses` jobs work through a
backlog of inbound texts and status callbacks in batches, and start it again each time. Every
text must be recorded exactly once (one message row, one `received` history row), every STOP
among them must be in the ledger exactly once, every callback must move its text once (one
`delivered` history row) and every claim must end done: a batch cut off by a kill is rolled back
whole and taken again by the next run.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlmodel import col, func, select
from twilio.request_validator import RequestValidator

from gateway.db import transaction
from gateway.jobs import sms_inbox, sms_statuses
from gateway.models import (
    Account,
    Direction,
    Message,
    MessageEvent,
    MessageStatus,
    OptOutEvent,
    WebhookClaim,
)
from tests.reliability.drill import FULL, OUR_NUMBER, Drill, lead_phones, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

TEXTS = 2000 if FULL else 600
KILLS = 5 if FULL else 2
DEADLINE_SECONDS = 600 if FULL else 150
STOP_EVERY = 5  # every fifth text is a STOP, from a phone of its own


async def test_worker_killed_mid_batch_loses_and_doubles_no_webhook(drill: Drill) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    phones = lead_phones(TEXTS)
    sent = await _sent_texts(drill, phones)
    # Appended while no worker runs: a backlog of each.
    for n, phone in enumerate(phones):
        body = "STOP" if n % STOP_EVERY == 0 else f"text {n}"
        inbound = {"MessageSid": f"SM{n:032d}", "From": phone, "To": OUR_NUMBER, "Body": body}
        await _post(drill, "/twilio/sms", inbound, 200)
    for message_id, sid in sent.items():
        status = {"MessageSid": sid, "MessageStatus": "delivered", "To": OUR_NUMBER}
        await _post(drill, f"/twilio/sms/status?message_id={message_id}", status, 204)
    assert await _recorded(drill) == 0

    drill.worker.start()  # its first sweep finds the backlog
    # Both jobs run at once: a kill lands in whichever batches are open.
    moments = sorted(drill.rng.sample(range(TEXTS // 5, TEXTS * 16 // 10), KILLS))
    for at in moments:

        async def reached(at: int = at) -> bool:
            return await _recorded(drill) >= at

        await wait_for(
            f"webhook number {at} acted on",
            reached,
            deadline,
            drill.worker.log_tail,
        )
        drill.worker.kill()
        drill.worker.start()  # the process manager's part

    async def settled() -> bool:
        return await _pending(drill) == 0

    await wait_for("every webhook acted on", settled, deadline, drill.worker.log_tail)

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
        delivered = (
            await session.exec(
                select(MessageEvent.message_id).where(col(MessageEvent.status) == "delivered")
            )
        ).all()
        moved = (
            await session.exec(select(Message.status).where(col(Message.id).in_(list(sent))))
        ).all()
    expected = [f"SM{n:032d}" for n in range(TEXTS)]
    assert sorted(s or "" for s in sids) == expected, drill.seed
    assert len(received) == len(set(received)) == TEXTS, drill.seed
    stops = [sid for n, sid in enumerate(expected) if n % STOP_EVERY == 0]
    assert Counter(ledger) == Counter(stops), drill.seed
    assert sorted(delivered) == sorted(sent), drill.seed  # each text moved once
    assert set(moved) == {"delivered"}, drill.seed
    assert drill.worker.kills == KILLS
    print(
        f"{TEXTS} inbound texts in batches of {sms_inbox.BATCH} and {TEXTS} status callbacks "
        f"in batches of {sms_statuses.BATCH}, {KILLS} kills: each once"
    )


async def _sent_texts(drill: Drill, phones: list[str]) -> dict[str, str]:
    """An outbound text per phone, as Twilio accepted it: message id -> its SID."""
    async with transaction(drill.sessions) as session:
        account_id = (await session.exec(select(Account.id))).one()
        rows = [
            Message(
                id=f"msg_drill{n:06d}",
                account_id=account_id,
                lead_phone=phone,
                direction=Direction.OUTBOUND,
                from_number=OUR_NUMBER,
                to_number=phone,
                body="Hi from the drill",
                status=MessageStatus.ACCEPTED,
                twilio_sid=f"SX{n:032d}",
            )
            for n, phone in enumerate(phones)
        ]
        session.add_all(rows)
    return {row.id: row.twilio_sid or "" for row in rows}


async def _post(drill: Drill, path: str, params: dict[str, str], expected: int) -> None:
    """A webhook signed as Twilio signs it."""
    url = drill.settings.base_url + path
    signature = RequestValidator(drill.settings.twilio_token).compute_signature(url, params)
    answer = await drill.api.post(path, data=params, headers={"X-Twilio-Signature": signature})
    assert answer.status_code == expected, answer.text


async def _recorded(drill: Drill) -> int:
    """Webhooks acted on so far: inbound texts recorded, and sent texts moved to delivered."""
    async with drill.sessions() as session:
        inbound = select(func.count()).where(col(Message.direction) == "inbound")
        delivered = select(func.count()).where(col(Message.status) == MessageStatus.DELIVERED)
        return (await session.exec(inbound)).one() + (await session.exec(delivered)).one()


async def _pending(drill: Drill) -> int:
    async with drill.sessions() as session:
        query = select(func.count()).where(
            col(WebhookClaim.kind).in_([sms_inbox.CLAIM_KIND, sms_statuses.CLAIM_KIND]),
            col(WebhookClaim.done_at).is_(None),
        )
        return (await session.exec(query)).one()
