"""Many activities, a flaky endpoint and a Redis flush in the middle: every activity delivered,
none lost, and any repeat carries the same event id.

Marked slow: `.ci/run` runs it in its short form (1,000 activities); the long form is
`WEBHOOKS_VOLUME=10000 .venv/bin/pytest -m slow tests/webhooks/test_volume.py`. The endpoint
runs in a process of its own (`receiver_process.py`), as a customer's would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlmodel import select
from starlette.testclient import TestClient

from gateway import webhook_policy as policy
from gateway.db import SessionFactory, transaction
from gateway.engine.records import record_activity
from gateway.models import Activity, ActivityType, DeliveryStatus
from gateway.settings import Settings
from tests.conftest import RunWorker
from tests.support.ports import free_port
from tests.support.tenants import Tenant

from .conftest import deliveries, new_play, settle, subscribe
from .receiver_process import fails_first_try

VOLUME = int(os.environ.get("WEBHOOKS_VOLUME", "1000"))
pytestmark = pytest.mark.slow
PER_PLAY = 10
BATCH = 500
FAIL_EVERY = 10  # one event in ten fails its first try
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def endpoint() -> Iterator[str]:
    """The receiver process on a free 127.0.0.1 port; its URL once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--port", str(port), "--fail-first-of-every", str(FAIL_EVERY)]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.webhooks.receiver_process", *args], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/received", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert process.poll() is None, "the receiver process exited"
                assert time.monotonic() < deadline, "the receiver process did not start"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def test_volume_none_lost_none_doubled(
    client: TestClient,
    *,
    sessions: SessionFactory,
    tenant: Tenant,
    endpoint: str,
    run_worker: RunWorker,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policy, "RETRY_SCHEDULE", (0.01,) * 11)
    monkeypatch.setattr(policy, "BREAKER_THRESHOLD", 1_000_000)  # flaky, not down
    monkeypatch.setattr(policy, "MAX_IN_FLIGHT", 10)  # as many as the worker runs
    subscribe(client, tenant, endpoint + "/hook")
    began = time.monotonic()
    plays = [
        await new_play(sessions, tenant.account_id, f"+1415{2000000 + i:07d}")
        for i in range(VOLUME // PER_PLAY)
    ]
    pairs = [(play, n) for n in range(PER_PLAY) for play in plays]
    for start in range(0, len(pairs), BATCH):
        async with transaction(sessions) as session:
            for play, n in pairs[start : start + BATCH]:
                await record_activity(session, play, ActivityType.EVENT, "started", f"#{n}")
    recorded = time.monotonic() - began
    await run_worker()
    # Redis loses everything mid-way: the database still knows what is owed.
    assert settings.redis_url is not None
    flushed = redis.Redis.from_url(settings.redis_url)
    flushed.flushdb()
    flushed.close()
    await settle(run_worker, sessions, rounds=200)

    async with sessions() as session:
        activities = (await session.exec(select(Activity))).all()
    assert len(activities) == VOLUME
    rows = await deliveries(sessions)
    assert len(rows) == VOLUME
    assert Counter(d.status for d in rows) == {DeliveryStatus.DELIVERED: VOLUME}
    async with httpx.AsyncClient() as http:
        received: list[dict[str, Any]] = (await http.get(f"{endpoint}/received")).json()
    ids = [r["id"] for r in received]
    assert all(r["event_id_header"] == r["id"] for r in received)
    assert set(ids) == {a.public_id for a in activities}  # none lost
    # Repeats carry the same id (never a new one), and exist only where a try failed: every
    # event the receiver failed came again, and no event arrived more often than the gateway
    # recorded tries for it. (On a loaded machine a try can also fail by timing out after the
    # receiver got it: the gateway recorded that try, so it counts, and the repeat is honest.)
    counts = Counter(ids)
    tries = {d.event_id: d.total_attempts for d in rows}
    assert all(counts[e] >= 2 for e in counts if fails_first_try(e, FAIL_EVERY))
    assert all(counts[e] <= tries[e] for e in counts), [
        (e, counts[e], tries[e]) for e in counts if counts[e] > tries[e]
    ]
    # In order per play: first arrivals follow the activities' order.
    by_play: dict[str, list[str]] = {}
    for r in received:
        by_play.setdefault(r["play_id"], []).append(r["note"])
    assert len(by_play) == len(plays)
    for notes in by_play.values():
        assert list(dict.fromkeys(notes)) == [f"#{n}" for n in range(PER_PLAY)]
    print(f"{VOLUME} activities: recorded in {recorded:.1f} s, all delivered in "
          f"{time.monotonic() - began:.1f} s")  # fmt: skip
