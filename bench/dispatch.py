"""Dispatch: messages per second that `gateway worker` processes hand to the sandbox.

    .venv/bin/python -m bench.dispatch [--messages 3000] [--workers 1,2] [--runs 3]
                                       [--database-url postgresql://...]

Per run and worker count: a fresh database, `gateway web` serving the built-in sandbox (which
also receives the sandbox's status callbacks), SMS rate limits off. The workers start; once
each polls the queue, N messages are queued the way the API queues a one-off text
(`sms.outbox.queue_message`, one lead phone each, inside its local contact window) and handed
to Redis as the commit of a process with no room to send them hands them (a worker's sweep may
find a row first): until 2026-12-07 a `sms.send` job each, since then the account's `sms.sends`
job, which sends them in batches. The workers send: gate, sender choice, contact lock, opt-out
notice, claim, the Messages.create, recording the SID. The rate is N over the
wall-clock span from the sandbox's first Messages.create to its last.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from arq import create_pool
from sqlalchemy import func
from sqlmodel import col, select

from bench import support
from gateway.db import transaction
from gateway.models import Direction, Message, MessageStatus, Purpose
from gateway.sms.outbox import queue_message
from gateway.work import SMS_SEND
from gateway.work.staging import handoff_to_redis, planned
from gateway.worker import redis_settings

DRAIN_TIMEOUT = 300.0


async def queue(run: support.Target, tenant: support.Tenant, phones: list[str]) -> list[str]:
    """Queue one message per phone (not timed); their ids."""
    ids = []
    async with run.sessions() as sessions:
        for offset in range(0, len(phones), 500):
            async with transaction(sessions) as session:
                for phone in phones[offset : offset + 500]:
                    message = await queue_message(
                        session,
                        account_id=tenant.account_id,
                        phone=phone,
                        body="Hi Kai, it's Sam with Bench Lending. Still looking for a home loan?",
                        purpose=Purpose.INITIATED,
                        reason="bench",
                    )
                    ids.append(message.id)
    return ids


async def enqueue(run: support.Target, account_id: str, ids: list[str]) -> None:
    """The texts' sends, handed to Redis as a commit that queued them hands them off (with no
    inline runner): since 2026-12-07, as their account's `sms.sends` drain."""
    redis = await create_pool(redis_settings(run.queue_url))
    try:
        for message_id in ids:
            item = planned(SMS_SEND, message_id, batch=account_id)
            assert item is not None
            await handoff_to_redis(redis, [item])
    finally:
        await redis.aclose()


async def drain(run: support.Target, phones: set[str]) -> list[float]:
    """Wall-clock times of the Messages.create of every phone, once all have arrived.

    Until the texts have left, the benchmark asks the database how many are still to send (an
    indexed count) rather than the sandbox for every create so far: that list, encoded by the
    web process and decoded here twice a second, grew with the run, and its CPU (about a
    fifth of a core here and a tenth of the web's, on the two cores the gateway had) was the
    benchmark's, not the gateway's (bench/RESULTS.md §37). The sandbox's list is read once at
    the end, for the times."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    async with run.sessions() as sessions:
        while time.monotonic() < deadline:
            async with sessions() as session:
                left = (await session.exec(_TO_SEND)).one()
            if left == 0:
                break
            await asyncio.sleep(0.5)
    while True:
        seen: dict[str, float] = {}
        for entry in await run.sandbox_creates():
            to = next((v for k, v in entry["params"] if k == "To"), None)
            if to in phones and entry["status"] == 201:
                seen.setdefault(to, entry["received"])
        if len(seen) >= len(phones) or time.monotonic() > deadline:
            return sorted(seen.values())
        await asyncio.sleep(0.5)


# The texts still queued or being sent (`ix_messages_queued` holds the queued ones).
_TO_SEND = select(func.count()).where(
    col(Message.status).in_([MessageStatus.QUEUED, MessageStatus.SENDING]),
    col(Message.direction) == Direction.OUTBOUND,
)


async def one(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    async with support.target(args.database_url, args.redis_url) as run:
        tenant = await support.create_tenant(run)
        await run.web()
        phones = support.lead_phones(args.messages)
        started = await run.workers(workers)  # ready and idle before the work arrives
        # The workers' CPU is counted from before the rows exist: a worker's sweep finds queued
        # rows by itself, so sends may start before the jobs below are enqueued (until
        # 2026-12-04 the count began after the queuing, and missed whatever a startup sweep
        # had sent by then).
        cpu0 = [s.cpu_seconds() for s in started]
        ids = await queue(run, tenant, phones)
        await enqueue(run, tenant.account_id, ids)
        times = await drain(run, set(phones))
        cpu = [s.cpu_seconds() - c for s, c in zip(started, cpu0, strict=True)]
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        rate = (len(times) - 1) / span if span > 0 else 0.0
        result: dict[str, Any] = {
            "sent": len(times),
            "rate": rate,
            "per_worker": rate / workers,
            "worker_cpu": [c / span for c in cpu] if span > 0 else [],
            # CPU the workers spent per message: a figure the machine's other load barely moves.
            "cpu_ms": sum(cpu) * 1000 / max(1, len(times)),
        }
        print(
            f"  {workers} worker(s): {len(times)}/{args.messages} sent in {span:.1f} s = "
            f"{rate:.0f}/s ({rate / workers:.0f}/s per worker); worker CPU "
            + ", ".join(f"{c * 100:.0f}%" for c in result["worker_cpu"])
            + f"; {result['cpu_ms']:.2f} CPU ms/message",
            file=sys.stderr,
            flush=True,
        )
        return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    support.add_target_arguments(parser)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]
    results: dict[int, list[dict[str, Any]]] = {c: [] for c in counts}
    for number in range(args.runs):
        print(f"run {number + 1}/{args.runs}", file=sys.stderr, flush=True)
        for count in counts:  # side by side in each run
            results[count].append(await one(args, count))
    db = support.database_label(args.database_url)
    fmt = support.fmt_runs
    print(f"# dispatch on {db}, {args.messages} messages; {support.machine()}")
    for count in counts:
        each = results[count]
        print(
            f"dispatch {db} {count} worker(s): {fmt([r['rate'] for r in each])} messages/s, "
            f"{fmt([r['per_worker'] for r in each])} per worker; worker CPU "
            f"{fmt([r['cpu_ms'] for r in each], 2)} ms/message; "
            f"unsent {sum(args.messages - r['sent'] for r in each)}"
        )


if __name__ == "__main__":
    asyncio.run(main())
