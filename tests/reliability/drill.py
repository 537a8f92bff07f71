"""The stack a process-fault drill runs against, and what "sent exactly once" means.

The gateway's web app and the Twilio sandbox run under uvicorn on 127.0.0.1 in the test's
event loop; the worker is a real `gateway worker` process (`worker_process.py`). All three read
one clock: the wall clock shifted to a Wednesday noon in San Francisco, so the gate lets the
burst through at any hour of the CI run, and the sandbox's SIDs and dates agree with the
gateway's (reconciliation compares them).

The burst is one text per lead phone (POST /v1/messages): a phone then names its message in
the sandbox's record, in the database and in the client's retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from sqlmodel import col, func, select

from gateway import accounts
from gateway.app import create_app
from gateway.clock import set_clock
from gateway.db import SessionFactory, transaction
from gateway.models import Direction, Message, MessageEvent
from gateway.settings import Settings
from tests.reliability.worker_process import (
    CLOCK_EPOCH,
    CLOCK_START,
    COMPRESSED,
    REPO,
    WorkerProcess,
)
from tests.support.servers import serve
from twilio_sandbox import Sandbox

FULL = os.environ.get("RELIABILITY_FULL") == "1"
# The seed of the random kill moments; a failure message prints it, RELIABILITY_SEED replays it.
SEED = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(1 << 30))
START = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)  # Wednesday 12:00 in San Francisco
OUR_NUMBER = "+14155550100"
# Statuses of a message Twilio has taken (callbacks move accepted -> sent -> delivered).
SENT = ("accepted", "sent", "delivered")
CONCURRENT_POSTS = 16
POLL = 0.1


def lead_phones(count: int) -> list[str]:
    """San Francisco mobiles (the sandbox's default phone), one per message."""
    return [f"+1415556{i:04d}" for i in range(count)]


async def wait_for(
    what: str, done: Callable[[], Awaitable[bool]], deadline: float, detail: Callable[[], str]
) -> None:
    """Poll `done` until true; past `deadline` (monotonic) fail saying what was missing."""
    while not await done():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}: {detail()}")
        await asyncio.sleep(POLL)


async def outbound_rows(sessions: SessionFactory) -> list[Message]:
    async with sessions() as session:
        query = select(Message).where(col(Message.direction) == Direction.OUTBOUND)
        return list((await session.exec(query)).all())


async def wait_delivered(
    sessions: SessionFactory,
    expected: int,
    deadline: float,
    *,
    exited: Callable[[], str | None],
    detail: Callable[[], str],
) -> None:
    """Until `expected` outbound texts have their SID and the final status `delivered` in the
    database (what Twilio's callbacks end with); past `deadline` (monotonic) fail with the
    statuses seen. `exited`: why the process under drill is gone (nothing would finish), or
    None while it runs; `detail`: what else a failure shows (seed, logs)."""
    while True:
        rows = await outbound_rows(sessions)
        done = [m for m in rows if m.twilio_sid is not None and m.status == "delivered"]
        if len(done) >= expected:
            return
        gone = exited()
        if gone is not None:
            raise AssertionError(f"{gone}\n{detail()}")
        if time.monotonic() > deadline:
            states = Counter(str(m.status) for m in rows)
            raise AssertionError(
                f"{len(done)} of {expected} texts delivered with a SID (statuses "
                f"{dict(states)}); {detail()}"
            )
        await asyncio.sleep(POLL)


class CreateTap:
    """ASGI wrapper of the sandbox: calls `hook` when a Messages.create has been handled and
    before its answer leaves, the moment a kill leaves a text at Twilio and not in our row."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.hook: Callable[[], None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        creating = (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/Messages.json")
        )
        if not creating or self.hook is None:
            await self.app(scope, receive, send)
            return
        hook = self.hook

        async def tapped(message: Any) -> None:
            if message["type"] == "http.response.start":
                hook()
            await send(message)

        await self.app(scope, receive, tapped)


@dataclass
class Burst:
    """What the client saw while posting the burst."""

    ids: dict[str, str] = field(default_factory=dict)  # phone -> message id
    failures: int = 0  # answers other than 201, and requests that got no answer


@dataclass
class Drill:
    sandbox: Sandbox
    tap: CreateTap
    api: httpx.AsyncClient
    settings: Settings
    sessions: SessionFactory
    worker: WorkerProcess
    seed: int = SEED
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))
    posted: int = 0  # texts the web app has taken so far, over every burst

    def creates(self) -> list[Any]:
        return self.sandbox.record.requests("messages.create")

    async def until_creates(self, at: int, deadline: float) -> None:
        """Wait for the `at`-th Messages.create (the moment a drill strikes), as the sandbox
        answers it (`on_create`), not by polling the count."""
        await self.on_create(at, deadline, lambda: True)

    async def on_create(self, at: int, deadline: float, act: Callable[[], bool]) -> None:
        """Call `act` inside the sandbox's answer to each Messages.create from the `at`-th on,
        until it says it acted; return then. The moment comes from the answer itself, not a
        poll of the count: a drain sends a batch's texts at once, and in a poll's 100 ms it
        can send the rest of a burst, leaving no send for a later strike (seed 444774950)."""
        acted = asyncio.Event()

        def hook() -> None:
            if len(self.creates()) >= at and act():
                self.tap.hook = None
                acted.set()

        self.tap.hook = hook
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await acted.wait()
        except TimeoutError:
            raise AssertionError(
                f"gave up waiting for Messages.create number {at}: {len(self.creates())} "
                f"creates so far\n{self.worker.log_tail()}"
            ) from None

    async def post_burst(self, phones: list[str], deadline: float) -> Burst:
        """POST one text per phone, CONCURRENT_POSTS at a time, like a client that retries.

        A request without a 201 may still have committed (the answer was lost): before trying
        again the client looks the phone's message up, so a retry never makes a second one.
        """
        burst = Burst()
        gate = asyncio.Semaphore(CONCURRENT_POSTS)

        async def one(index: int, phone: str) -> None:
            async with gate:
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.TransportError):
                        answer = await self.api.post(
                            "/v1/messages", json={"phone": phone, "body": f"drill {index}"}
                        )
                        if answer.status_code == 201:
                            burst.ids[phone] = answer.json()["id"]
                            self.posted += 1
                            return
                        assert answer.status_code >= 500, answer.text  # never a 4xx
                    burst.failures += 1
                    await asyncio.sleep(0.2)
                    existing = await self._lookup(phone, deadline)
                    if existing is not None:
                        burst.ids[phone] = existing
                        self.posted += 1
                        return

        await asyncio.gather(*(one(i, p) for i, p in enumerate(phones)))
        missing = [p for p in phones if p not in burst.ids]
        assert not missing, f"the web app never took {len(missing)} texts, e.g. {missing[:5]}"
        return burst

    async def _lookup(self, phone: str, deadline: float) -> str | None:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                found = await self.api.get("/v1/messages", params={"phone": phone})
                if found.status_code == 200:
                    data = found.json()["data"]
                    return str(data[0]["id"]) if data else None
            await asyncio.sleep(0.2)
        return None

    async def sent_count(self) -> int:
        async with self.sessions() as session:
            query = select(func.count()).where(
                col(Message.direction) == Direction.OUTBOUND,
                col(Message.twilio_sid).is_not(None),
            )
            return int((await session.exec(query)).one())

    async def send_jobs_left(self) -> int:
        """`sms.send` jobs queued or running in Redis: none left means none can still fire."""
        client = aioredis.Redis.from_url(self.settings.redis_url or "")
        try:
            return len(
                [k async for k in client.scan_iter("arq:job:sms:*")]
                + [k async for k in client.scan_iter("arq:in-progress:sms:*")]
            )
        finally:
            await client.aclose()

    async def wait_all_sent(self, phones: list[str], deadline: float) -> None:
        """Until every text has its SID in our database and no send job is left anywhere."""

        async def done() -> bool:
            if not self.worker.alive():
                raise AssertionError(
                    f"the worker exited ({self.worker.exit_code()}) and nothing restarts it "
                    f"here:\n{self.worker.log_tail()}"
                )
            if await self.sent_count() < len(phones):
                return False
            return await self.send_jobs_left() == 0

        sent = 0

        def missing() -> str:
            return (
                f"{sent} of {len(phones)} texts recorded as sent, "
                f"{len(self.creates())} Messages.create seen by the sandbox "
                f"(seed {self.seed})\nworker log:\n{self.worker.log_tail()}"
            )

        async def progress() -> bool:
            nonlocal sent
            sent = await self.sent_count()
            return await done()

        await wait_for("every text to be sent", progress, deadline, missing)

    async def wait_delivered(self, burst: Burst, deadline: float) -> None:
        """Until every posted text is `delivered` with its SID: every message at its final
        status, the sandbox's callbacks all in."""

        def exited() -> str | None:
            if self.worker.alive():
                return None
            return f"the worker exited ({self.worker.exit_code()})"

        def detail() -> str:
            return (
                f"{len(self.creates())} Messages.create seen by the sandbox, its callbacks "
                f"{self.scheduler_lag():.0f} s behind (seed {self.seed})\n"
                f"worker log:\n{self.worker.log_tail()}"
            )

        await wait_delivered(self.sessions, len(burst.ids), deadline, exited=exited, detail=detail)

    async def exactly_once(self, burst: Burst) -> list[str]:
        """Every phone: one Messages.create at the sandbox, one row in our database carrying
        that create's SID in a sent state. The problems found, empty when all is well."""
        problems: list[str] = []
        creates = self.creates()
        per_phone = Counter(c.get("To") for c in creates)
        for phone, count in per_phone.items():
            if phone not in burst.ids:
                problems.append(f"{phone}: {count} Messages.create for a text nobody asked for")
        for phone in burst.ids:
            if per_phone[phone] != 1:
                problems.append(f"{phone}: {per_phone[phone]} Messages.create, expected 1")
        accepted = {c.get("To"): c for c in creates if c.status == 201}
        async with self.sessions() as session:
            rows = (
                await session.exec(
                    select(Message).where(col(Message.direction) == Direction.OUTBOUND)
                )
            ).all()
        per_row_phone = Counter(m.lead_phone for m in rows)
        for message in rows:
            create = accepted.get(message.lead_phone)
            if per_row_phone[message.lead_phone] != 1:
                problems.append(f"{message.lead_phone}: {per_row_phone[message.lead_phone]} rows")
            elif burst.ids.get(message.lead_phone) != message.id:
                problems.append(f"{message.lead_phone}: row {message.id} is not the posted text")
            elif message.status not in SENT or create is None:
                problems.append(f"{message.id}: status {message.status}, accepted create {create}")
            elif message.twilio_sid != create.sid:
                problems.append(f"{message.id}: SID {message.twilio_sid} but Twilio's {create.sid}")
        if len(rows) != len(burst.ids):
            problems.append(f"{len(rows)} outbound rows for {len(burst.ids)} posted texts")
        return problems

    async def interrupted_sends(self) -> int:
        """Texts that reached Twilio while the worker never recorded Twilio's answer to them:
        a kill came between the two. The SID came back by reconciliation (listing Twilio's
        messages) or by Twilio's status callback, whichever came first."""
        async with self.sessions() as session:
            answered = select(MessageEvent.message_id).where(
                col(MessageEvent.detail).startswith("twilio status")
            )
            query = select(func.count()).where(
                col(Message.direction) == Direction.OUTBOUND,
                col(Message.twilio_sid).is_not(None),
                col(Message.id).not_in(answered),
            )
            return int((await session.exec(query)).one())

    def scheduler_lag(self) -> float:
        """Seconds the sandbox's scheduler (its callbacks) runs behind the drill's clock."""
        clock = self.sandbox.clock
        return (clock.now() - clock.at(clock.seconds)).total_seconds()

    def assert_ok(self, problems: list[str]) -> None:
        assert not problems, (
            f"{len(problems)} problems (seed {self.seed}; sandbox callbacks "
            f"{self.scheduler_lag():.0f} s behind), first ones:\n"
            + "\n".join(problems[:20])
            + f"\nworker log:\n{self.worker.log_tail()}"
        )


def worker_env(settings: Settings, start: datetime, epoch: float) -> dict[str, str]:
    """The environment of `gateway worker`: the same database, Redis, sandbox and clock."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "DATABASE_", "REDIS_", "SMTP_", "PUBLIC_", "TEST_"))
    }
    env.update(
        PYTHONPATH=str(REPO),
        DATABASE_URL=settings.database,
        REDIS_URL=settings.redis_url or "",
        TWILIO_API_URL=settings.twilio_api_url or "",
        PUBLIC_BASE_URL=settings.base_url,
        SMS_RATE_LIMITS="false",
        INLINE_JOBS=str(settings.inline_jobs),
        DATA_DIR=str(settings.data_dir),
        LOG_LEVEL="WARNING",  # the twilio library logs every request at INFO
    )
    env[CLOCK_START], env[CLOCK_EPOCH] = start.isoformat(), repr(epoch)
    env[COMPRESSED] = "0" if FULL else "1"
    return env


@contextlib.asynccontextmanager
async def open_drill(
    database_url: str, redis_url: str, sessions: SessionFactory, directory: Path
) -> AsyncIterator[Drill]:
    """Sandbox and web app on uvicorn, an account with its number, a worker not yet started."""
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=directory / "data",
        sms_rate_limits=False,  # rate limits space sends by the wall clock: not this drill
        # Every text goes through Redis to the worker these drills kill, stop and cut off; a
        # kill of the process that runs texts inline is test_gateway_run_kill's drill.
        inline_jobs=0,
        _env_file=None,
    )
    sandbox = Sandbox(settings.twilio_sid, settings.twilio_token, start=START)
    epoch = time.time()

    def clock() -> datetime:
        return START + timedelta(seconds=time.time() - epoch)

    set_clock(clock)
    # Real time from here: status callbacks flow. The sandbox's scheduler works through its
    # events one at a time, so in a long burst its virtual time falls minutes behind; Twilio
    # stamps messages by its real clock, and the sender's reconciliation compares those stamps
    # with its own times: the sandbox's stamps follow the drill's clock, not its scheduler.
    sandbox.start_realtime()
    sandbox.clock.now = clock  # type: ignore[method-assign]
    tap = CreateTap(sandbox.app)
    try:
        async with serve(tap) as sandbox_url:
            # Set before create_app: without a Twilio URL the app would mount its own sandbox.
            settings.twilio_api_url = sandbox_url
            async with serve(create_app(settings)) as url:
                settings.public_base_url = url
                async with transaction(sessions) as session:
                    _account, key = await accounts.create_account(session, "Drill Lending")
                headers = {"Authorization": f"Bearer {key.secret}"}
                async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
                    # The Twilio account owns the number before the account registers it.
                    sandbox.add_number(OUR_NUMBER, sms_url=f"{url}/twilio/sms")
                    created = await api.post("/v1/numbers", json={"number": OUR_NUMBER})
                    assert created.status_code == 201, created.text
                    env = worker_env(settings, START, epoch)
                    worker = WorkerProcess(env, directory / "worker.log")
                    worker.prepare()
                    try:
                        yield Drill(sandbox, tap, api, settings, sessions, worker)
                    finally:
                        await asyncio.to_thread(worker.stop)
    finally:
        set_clock(None)
        await sandbox.aclose()
