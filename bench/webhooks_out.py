"""Outbound webhooks: deliveries per second one `gateway worker` makes to a local receiver.

    .venv/bin/python -m bench.webhooks_out [--deliveries 3000] [--per-play 1] [--runs 3]
                                           [--database-url postgresql://...]

Per run: a fresh database, `gateway web` (it owns the embedded Redis), a receiver on
127.0.0.1 (bench/bare.py `receiver`: a bare Starlette route answering 200 and noting when each
Gateway-Event-Id first arrived), and a subscription to it made through the API (the operator
lets the account reach private addresses, as `gateway webhooks allow-private` does). One
worker starts; once it polls the queue, N activities are recorded in one transaction through
the engine's own path (`engine.records.record_activity`, which writes the deliveries in the
same transaction), on N / --per-play plays, and the subscription's deliver job is enqueued
(`gateway.work.enqueue_now`). It delivers in batches: the subscription's slots, a claim of what
can go, signing, the POSTs, recording the attempts (gateway/webhooks/delivery.py). The rate is
N over the span from the first arrival at the receiver to the last; the worker's CPU is
counted from before the activities exist.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import httpx
from arq import create_pool
from sqlmodel import select

from bench import support
from gateway.db import transaction
from gateway.engine.records import record_activity
from gateway.ids import new_id
from gateway.models import ActivityType, Lead, Play, PlayState, WebhookDelivery
from gateway.work import WEBHOOK_DELIVER, enqueue_now
from gateway.worker import redis_settings

DRAIN_TIMEOUT = 300.0
LABELS = ("started", "interested", "completed")


async def record(
    run: support.Target, tenant: support.Tenant, count: int, per_play: int
) -> list[str]:
    """Record `count` activities on plays that are already over (so no worker acts on them
    besides delivering); the ids of the subscriptions they are owed to (not timed)."""
    phones = support.lead_phones(-(-count // per_play))
    async with run.sessions() as sessions:
        # One transaction: the worker, already running, sees none of them before all are there
        # (its sweep would otherwise start delivering while the rest are being written).
        async with transaction(sessions) as session:
            for phone in phones:
                lead = Lead(id=new_id("lead"), account_id=tenant.account_id, phone=phone)
                play = Play(
                    id=new_id("play"),
                    account_id=tenant.account_id,
                    lead_id=lead.id,
                    playbook_id="mortgage-qualification",
                    playbook_version=1,
                    state=PlayState.STOPPED,
                )
                session.add_all([lead, play])
                await session.flush()
                for i in range(per_play):
                    await record_activity(
                        session, play, ActivityType.EVENT, LABELS[i % len(LABELS)]
                    )
        async with sessions() as session:
            owed = select(WebhookDelivery.subscription_id).distinct()
            return list((await session.exec(owed)).all())


async def enqueue(run: support.Target, ids: list[str]) -> None:
    redis = await create_pool(redis_settings(run.queue_url))
    try:
        for subscription_id in ids:
            await enqueue_now(redis, WEBHOOK_DELIVER, subscription_id)
    finally:
        await redis.aclose()


async def drain(receiver: str, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    async with httpx.AsyncClient(base_url=receiver, timeout=30) as client:
        while True:
            stats: dict[str, Any] = (await client.get("/stats")).json()
            if stats["distinct"] >= count or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.5)


async def one(args: argparse.Namespace) -> dict[str, Any]:
    async with support.target(args.database_url, args.redis_url) as run:
        tenant = await support.create_tenant(run, allow_private_webhooks=True)
        await run.web()
        port = support.free_port()
        receiver = run.start(
            "receiver",
            [sys.executable, "-m", "bench.bare", "receiver", "--port", str(port)],
            f"http://127.0.0.1:{port}",
        )
        await support.wait_ready(receiver)
        async with run.api(tenant) as api:
            created = await api.post("/v1/webhooks", json={"url": f"{receiver.url}/hook"})
            created.raise_for_status()
        count = args.deliveries - args.deliveries % args.per_play
        # The worker is ready and idle before the work exists: its CPU from here is all the
        # deliveries' (started after the work, a sweep of the rows could set it delivering
        # before its CPU was first read).
        (worker,) = await run.workers(1)
        cpu0 = worker.cpu_seconds()
        ids = await record(run, tenant, count, args.per_play)
        await enqueue(run, ids)
        assert receiver.url is not None
        stats = await drain(receiver.url, count)
        span = (stats["last"] or 0) - (stats["first"] or 0)
        cpu = worker.cpu_seconds() - cpu0
        rate = (stats["distinct"] - 1) / span if span > 0 else 0.0
        print(
            f"  {stats['distinct']}/{count} delivered ({stats['posts']} POSTs) in {span:.1f} s "
            f"= {rate:.0f}/s; worker CPU {cpu / span * 100 if span > 0 else 0:.0f}%",
            file=sys.stderr,
            flush=True,
        )
        cpu_ms = cpu * 1000 / max(1, stats["distinct"])
        return {"rate": rate, "delivered": stats["distinct"], "count": count, "cpu_ms": cpu_ms}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    support.add_target_arguments(parser)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--per-play", type=int, default=1, help="activities per play (1-3)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for number in range(args.runs):
        print(f"run {number + 1}/{args.runs}", file=sys.stderr, flush=True)
        results.append(await one(args))
    db = support.database_label(args.database_url)
    print(f"# outbound webhooks on {db}, one worker; {support.machine()}")
    print(
        f"webhooks_out {db} 1 worker, {args.per_play} activities/play: "
        f"{support.fmt_runs([r['rate'] for r in results])} deliveries/s; worker CPU "
        f"{support.fmt_runs([r['cpu_ms'] for r in results], 2)} ms/delivery; "
        f"undelivered {sum(r['count'] - r['delivered'] for r in results)}"
    )


if __name__ == "__main__":
    asyncio.run(main())
