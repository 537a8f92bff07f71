"""Drill: `kill -9` the worker while its `plays.due` drain works through a backlog of due plays
(a drip's next text come due for every lead at once) in batches, and start it again each time.
Every play must run its step exactly once: one text per lead at the sandbox and in our database,
with that create's SID, and one entry for it in the play's log. A batch cut off by a kill is
rolled back whole and taken again by the next run.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, func, select

from gateway.clock import now
from gateway.db import transaction
from gateway.jobs import plays_advance
from gateway.models import Direction, Message, Play, PlayLog
from tests.reliability.drill import FULL, Burst, Drill, lead_phones, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

PLAYS = 1000 if FULL else 300
KILLS = 5 if FULL else 2
DEADLINE_SECONDS = 600 if FULL else 180
DRIP = "name: Drill drip\nsteps:\n  - id: later\n    kind: wait\n    duration: 1h\n" + (
    "  - id: nudge\n    kind: send\n    text: Hi {lead.first_name|there}, checking in.\n"
)


async def test_worker_killed_mid_batch_runs_each_plays_step_once(drill: Drill) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    phones = lead_phones(PLAYS)
    published = await drill.api.put(
        "/v1/playbooks/drip", content=DRIP, headers={"Content-Type": "application/yaml"}
    )
    assert published.status_code in (200, 201), published.text
    await _start_plays(drill, phones)
    # An hour on for every play at once: each one's text is due, a backlog for the drain.
    async with transaction(drill.sessions) as session:
        await session.exec(update(Play).values(due_at=now() - timedelta(seconds=1)))

    drill.worker.start()  # its first sweep finds the account's due plays
    moments = sorted(drill.rng.sample(range(PLAYS // 5, PLAYS * 9 // 10), KILLS))
    for at in moments:

        async def reached(at: int = at) -> bool:
            return await _queued(drill) >= at

        await wait_for(f"play number {at} run", reached, deadline, drill.worker.log_tail)
        drill.worker.kill()
        drill.worker.start()  # the process manager's part

    await drill.wait_all_sent(phones, deadline)

    async with drill.sessions() as session:
        rows = (
            await session.exec(
                select(Message.lead_phone, Message.id).where(
                    col(Message.direction) == Direction.OUTBOUND
                )
            )
        ).all()
        logged = (
            await session.exec(select(PlayLog.play_id).where(col(PlayLog.kind) == "message"))
        ).all()
    # One row per phone is `exactly_once`'s to check (with one create each, and its SID).
    drill.assert_ok(await drill.exactly_once(Burst(ids=dict(rows))))
    assert len(rows) == PLAYS, drill.seed
    assert set(Counter(logged).values()) == {1} and len(logged) == PLAYS, drill.seed
    assert drill.worker.kills == KILLS
    print(f"{PLAYS} plays come due in batches of {plays_advance.BATCH}, {KILLS} kills: each once")


async def _start_plays(drill: Drill, phones: list[str]) -> None:
    """A play of the drip for each phone, 16 requests at a time; each waits its hour."""
    slots = asyncio.Semaphore(16)

    async def one(phone: str) -> None:
        async with slots:
            body = {"playbook_id": "drip", "lead": {"phone": phone, "first_name": "Kai"}}
            created = await drill.api.post("/v1/plays", json=body)
            assert created.status_code == 201, created.text

    await asyncio.gather(*(one(phone) for phone in phones))


async def _queued(drill: Drill) -> int:
    """Plays that have run their step so far: the texts they queued."""
    async with drill.sessions() as session:
        query = select(func.count()).where(col(Message.direction) == Direction.OUTBOUND)
        return int((await session.exec(query)).one())
