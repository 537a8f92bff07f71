"""Drill: PostgreSQL restarts in the middle of a burst. Nobody restarts the gateway: the web
app answers 503 on /healthz while the database is away and recovers by itself, the worker
process (never restarted) keeps going, and every text reaches Twilio exactly once.

The cluster is the drill's own (initdb in a temp dir), whatever backend the suite runs on.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.reliability.conftest import OwnPostgres
from tests.reliability.drill import FULL, Drill, lead_phones, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SENDS = 2000 if FULL else 200
# `fast` disconnects every client and shuts down cleanly; `immediate` is a crash and recovery.
RESTARTS = ("fast", "immediate", "fast") if FULL else ("fast",)
DOWNTIME_SECONDS = 3.0 if FULL else 1.0
DEADLINE_SECONDS = 900 if FULL else 150


async def test_postgres_restarted_mid_burst_service_recovers_nothing_lost(
    postgres_drill: Drill, private_postgres: OwnPostgres
) -> None:
    drill, server = postgres_drill, private_postgres.server
    deadline = time.monotonic() + DEADLINE_SECONDS
    phones = lead_phones(SENDS)
    # Half the burst is queued before the worker runs: when the database goes, the worker is
    # busy sending that backlog while the web app takes the other half.
    backlog = await drill.post_burst(phones[: SENDS // 2], deadline)
    drill.worker.start()
    posting = asyncio.create_task(drill.post_burst(phones[SENDS // 2 :], deadline))
    moments = sorted(drill.rng.sample(range(SENDS // 10, SENDS // 2), len(RESTARTS)))
    posting_met_outage = False
    try:
        for at, mode in zip(moments, RESTARTS, strict=True):
            await drill.until_creates(at, deadline)
            await asyncio.to_thread(server.stop, mode)
            down = await drill.api.get("/healthz")
            assert down.status_code == 503, down.text
            assert down.json()["checks"]["database"] != "ok", down.text
            # Asked once the database is seen down (not before stopping it: the last posts
            # could finish while it stops, and then no request meets the outage).
            posting_met_outage |= not posting.done()
            await asyncio.sleep(DOWNTIME_SECONDS)
            await asyncio.to_thread(server.start)

            async def healthy() -> bool:
                return (await drill.api.get("/healthz")).status_code == 200

            await wait_for("/healthz to answer 200 again", healthy, deadline, server.log_tail)
        burst = await posting
    finally:
        posting.cancel()
    burst.ids.update(backlog.ids)
    await drill.wait_all_sent(phones, deadline)

    drill.assert_ok(await drill.exactly_once(burst))
    if posting_met_outage:  # the web app took the burst through the outage
        assert burst.failures > 0, "the database went away mid-burst, yet no request failed"
    assert drill.worker.starts == 1, "the worker had to be restarted by hand"
    assert drill.worker.alive()
