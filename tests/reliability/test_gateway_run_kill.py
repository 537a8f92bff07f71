"""Drill: `kill -9` of `gateway run` on the literal defaults (issue 18) — one process holding the
web app, the worker, the built-in Twilio sandbox and its embedded `redis-server`, on a SQLite
file in DATA_DIR — at random moments of a burst of leads, started again after each kill as a
process manager would. Then every lead is texted exactly once (the sandbox's own persisted
record of accepted `Messages.create`), every text is `delivered` in the gateway's database and
in the sandbox, and no `redis-server` of that DATA_DIR is left.

With TEST_DATABASE_URL/TEST_REDIS_URL the same `gateway run` gets DATABASE_URL and REDIS_URL
pointing at the test services (the defaults' SQLite and embedded Redis do not apply there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, func, select

from gateway import accounts
from gateway.clock import set_clock
from gateway.db import SessionFactory, create_engine, session_factory, transaction
from gateway.models import Direction, Message, MessageEvent
from gateway.redis_embedded import EmbeddedRedis
from tests.conftest import TEST_DATABASE_URL
from tests.gateway.test_embedded_redis_lifetime import wait_until_gone
from tests.reliability.drill import (
    FULL,
    SEED,
    START,
    lead_phones,
    outbound_rows,
    wait_delivered,
)
from tests.reliability.run_process import CREATES_LOG, KILL_AT_CREATE
from tests.reliability.worker_process import CLOCK_EPOCH, CLOCK_START, COMPRESSED, REPO
from tests.support.ports import free_port
from twilio_sandbox.store import FILE_NAME, Sent, outbound_per_phone

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc"),
]

LEADS = 300 if FULL else 60
KILLS = 5 if FULL else 2
DEADLINE_SECONDS = 900 if FULL else 150
START_LIMIT = 60.0  # seconds for `gateway run` to answer /healthz on a loaded machine
STOP_LIMIT = 40.0
OUR_NUMBER = "+14155550100"
CONCURRENT_POSTS = 16
POLL = 0.2
ISOLATED = ("DATABASE_", "REDIS_", "TWILIO_", "PUBLIC_", "SMTP_", "TEST_", "PORT", "DATA_DIR")


@dataclass
class GatewayRunStack:
    """`gateway run` (through `run_process`) in a temp DATA_DIR, started, killed, restarted."""

    directory: Path
    sessions: SessionFactory
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    self_kills: int = 0
    key: str = ""

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "gateway.log"

    @property
    def creates_log(self) -> Path:
        return self.directory / "creates.log"

    @property
    def redis_socket(self) -> Path:
        return EmbeddedRedis(self.data_dir).socket_path

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self, kill_at_create: int | None = None) -> None:
        """Start `gateway run` and wait for /healthz; with `kill_at_create` it SIGKILLs itself
        right after answering that many Messages.create (counted from this start)."""
        assert not self.alive()
        env = dict(self.env, PORT=str(self.port))
        if kill_at_create is not None:
            env[KILL_AT_CREATE] = str(kill_at_create)
        self.starts += 1
        self._note(f"gateway run start {self.starts}")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - started, never waited on here
                [sys.executable, "-m", "tests.reliability.run_process"],
                cwd=self.directory,  # no stray .env from the work tree
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_LIMIT
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise AssertionError(f"gateway run did not become healthy:\n{self.log_tail()}")

    def kill(self) -> None:
        """kill -9: no shutdown handler runs anywhere in the process."""
        assert self.process is not None and self.alive()
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.kills += 1
        self._note("SIGKILL")

    async def until_dead(self, deadline: float) -> int:
        """Wait for the process to end by itself (its own SIGKILL); its exit status."""
        assert self.process is not None
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway run did not die:\n{self.log_tail()}")
            await asyncio.sleep(0.02)
        self.kills += 1
        self.self_kills += 1
        self._note("SIGKILL (itself, after answering a create)")
        return code

    def stop(self) -> int | None:
        """SIGTERM, as at the end of a deploy; its exit status."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(STOP_LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"gateway run ignored SIGTERM:\n{self.log_tail()}") from None

    def accepted(self) -> dict[str, list[Sent]]:
        """Per phone, the Messages.create the sandbox accepted (its persisted record)."""
        if not (self.data_dir / FILE_NAME).exists():
            return {}
        return outbound_per_phone(self.data_dir)

    def accepted_count(self) -> int:
        return sum(len(sent) for sent in self.accepted().values())

    def witnessed(self) -> Counter[str]:
        """Per phone, the 201 answers to Messages.create the witness saw leave."""
        if not self.creates_log.exists():
            return Counter()
        return Counter(line.split()[0] for line in self.creates_log.read_text().splitlines())

    def _note(self, event: str) -> None:
        with self.log.open("ab") as out:
            out.write(f"=== {time.strftime('%H:%M:%S')} {event} ===\n".encode())

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    # -- the client's side ----------------------------------------------------

    async def setup_account(self) -> None:
        """An account with an API key, and our number registered (the sandbox 'buys' it)."""
        async with transaction(self.sessions) as session:
            _account, issued = await accounts.create_account(session, "Crash Drill Lending")
        self.key = issued.secret
        async with self.api() as api:
            created = await api.post("/v1/numbers", json={"number": OUR_NUMBER})
            assert created.status_code == 201, created.text

    def api(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def post_burst(self, phones: list[str], deadline: float) -> dict[str, str]:
        """One text per phone, CONCURRENT_POSTS at a time, by a client that retries carefully:
        after a request without a 201 (the gateway died under it, or was starting) it looks
        the phone's message up before posting again. phone -> message id."""
        ids: dict[str, str] = {}
        gate = asyncio.Semaphore(CONCURRENT_POSTS)

        async def one(api: httpx.AsyncClient, index: int, phone: str) -> None:
            async with gate:
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.TransportError):
                        answer = await api.post(
                            "/v1/messages", json={"phone": phone, "body": f"crash drill {index}"}
                        )
                        if answer.status_code == 201:
                            ids[phone] = answer.json()["id"]
                            return
                        assert answer.status_code >= 500, answer.text  # never a 4xx
                    await asyncio.sleep(POLL)
                    existing = await lookup(api, phone)
                    if existing is not None:
                        ids[phone] = existing
                        return

        async def lookup(api: httpx.AsyncClient, phone: str) -> str | None:
            # Until the gateway answers: a POST that got no answer may have committed.
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    found = await api.get("/v1/messages", params={"phone": phone})
                    if found.status_code == 200:
                        data = found.json()["data"]
                        return str(data[0]["id"]) if data else None
                await asyncio.sleep(POLL)
            return None

        async with self.api() as api:
            await asyncio.gather(*(one(api, i, p) for i, p in enumerate(phones)))
        missing = [p for p in phones if p not in ids]
        assert not missing, f"the gateway never took {len(missing)} texts, e.g. {missing[:5]}"
        return ids

    async def outbound(self) -> list[Message]:
        return await outbound_rows(self.sessions)

    async def interrupted_sends(self) -> int:
        """Texts whose SID came back without the worker ever reading Twilio's answer to their
        create: reconciliation (listing Twilio) or a status callback found them."""
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

    async def wait_delivered(self, ids: dict[str, str], deadline: float) -> None:
        """Until every posted text has its SID and the final status `delivered` in our
        database; past the deadline fail saying what is missing."""

        def exited() -> str | None:
            return None if self.alive() else "gateway run exited"

        def detail() -> str:
            tail = self.log_tail()
            return f"{self.accepted_count()} creates accepted by the sandbox; seed {SEED}\n{tail}"

        await wait_delivered(self.sessions, len(ids), deadline, exited=exited, detail=detail)

    async def problems(self, ids: dict[str, str]) -> list[str]:
        """Per lead: one create accepted by the sandbox, `delivered` there; one row, the posted
        one, with that create's SID, `delivered`. Empty when all is well."""
        problems: list[str] = []
        accepted = self.accepted()
        witnessed = self.witnessed()
        for phone in accepted.keys() - ids.keys():
            problems.append(f"{phone}: {len(accepted[phone])} creates nobody asked for")
        rows = await self.outbound()
        per_phone = Counter(m.lead_phone for m in rows)
        by_phone = {m.lead_phone: m for m in rows}
        for phone, message_id in ids.items():
            sent = accepted.get(phone, [])
            row = by_phone.get(phone)
            if len(sent) != 1:
                problems.append(f"{phone}: {len(sent)} creates accepted by the sandbox, not 1")
            elif sent[0].status != "delivered":
                problems.append(f"{phone}: {sent[0].sid} is {sent[0].status} at the sandbox")
            if witnessed[phone] > 1:
                problems.append(f"{phone}: {witnessed[phone]} creates answered 201")
            if per_phone[phone] != 1 or row is None:
                problems.append(f"{phone}: {per_phone[phone]} rows")
            elif row.id != message_id:
                problems.append(f"{phone}: row {row.id} is not the posted {message_id}")
            elif len(sent) == 1 and row.twilio_sid != sent[0].sid:
                problems.append(f"{phone}: SID {row.twilio_sid}, the sandbox's {sent[0].sid}")
            elif row.status != "delivered":
                problems.append(f"{phone}: {row.id} is {row.status}")
        return problems

    def orphans(self) -> list[int]:
        """redis-server processes still serving this DATA_DIR's socket (after a short wait)."""
        return wait_until_gone(self.redis_socket)


@pytest.fixture
async def run_stack(
    tmp_path: Path, database_url: str, clean_redis: str, sessions: SessionFactory
) -> AsyncIterator[GatewayRunStack]:
    epoch = time.time()
    set_clock(lambda: START + timedelta(seconds=time.time() - epoch))
    env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATED)}
    env.update(
        PYTHONPATH=str(REPO),
        DATA_DIR=str(tmp_path / "data"),
        SMS_RATE_LIMITS="false",  # rate limits space sends by the wall clock: not this drill
        LOG_LEVEL="WARNING",  # the twilio library logs every request at INFO
        **{CREATES_LOG: str(tmp_path / "creates.log")},
    )
    env[CLOCK_START], env[CLOCK_EPOCH] = START.isoformat(), repr(epoch)
    env[COMPRESSED] = "0" if FULL else "1"
    engine = None
    if TEST_DATABASE_URL is not None:
        # The services: the session's migrated database (emptied) and this test's Redis db.
        env["DATABASE_URL"], env["REDIS_URL"] = database_url, clean_redis
    else:
        # The literal defaults: the SQLite file `gateway run` makes in its DATA_DIR.
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'gateway.db'}")
        sessions = session_factory(engine)
    stack = GatewayRunStack(tmp_path, sessions, env)
    try:
        yield stack
    finally:
        with contextlib.suppress(AssertionError):
            stack.stop()
        if engine is not None:
            await engine.dispose()
        set_clock(None)


async def test_a_text_the_sandbox_answered_before_a_kill_is_not_sent_again(
    run_stack: GatewayRunStack,
) -> None:
    """The window of item 4: `gateway run` dies right after the sandbox answered a create and
    before the worker recorded the SID. The restarted gateway reconciles the interrupted send:
    the sandbox, started again on the same DATA_DIR, still has the text, so it is found (or its
    status callback names it), never sent again."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    phone = lead_phones(1)[0]
    await run_stack.start()
    await run_stack.setup_account()
    run_stack.stop()
    await run_stack.start(kill_at_create=1)
    async with run_stack.api() as api:
        posted = await api.post("/v1/messages", json={"phone": phone, "body": "only once"})
    assert posted.status_code == 201, posted.text
    assert await run_stack.until_dead(deadline) == -signal.SIGKILL
    [row] = await run_stack.outbound()
    assert (row.status, row.twilio_sid) == ("sending", None)  # the answer was never read
    assert run_stack.witnessed() == {phone: 1}

    await run_stack.start()
    await run_stack.wait_delivered({phone: row.id}, deadline)
    assert run_stack.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert run_stack.witnessed() == {phone: 1}, "the text was sent again after the restart"
    assert await run_stack.problems({phone: row.id}) == []
    assert await run_stack.interrupted_sends() == 1


async def test_gateway_run_killed_mid_burst_texts_every_lead_once(
    run_stack: GatewayRunStack,
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    rng = random.Random(SEED)
    phones = lead_phones(LEADS)
    moments = sorted(rng.sample(range(LEADS // 10, LEADS * 9 // 10), KILLS))
    embedded_redis = "REDIS_URL" not in run_stack.env
    await run_stack.start()
    await run_stack.setup_account()
    run_stack.stop()
    assert not run_stack.orphans()

    began = time.monotonic()
    await run_stack.start(kill_at_create=moments[0])
    posting = asyncio.create_task(run_stack.post_burst(phones, deadline))
    downtimes: list[float] = []
    try:
        for number, at in enumerate(moments):
            if number % 2 == 0:
                # Inside a create's answer: the process kills itself right after answering.
                await run_stack.until_dead(deadline)
            else:
                while sum(run_stack.witnessed().values()) < at:
                    assert run_stack.alive(), run_stack.log_tail()
                    assert time.monotonic() < deadline, f"never reached create {at} (seed {SEED})"
                    await asyncio.sleep(0.01)
                await asyncio.sleep(rng.uniform(0.0, 0.05))
                run_stack.kill()
            died = time.monotonic()
            # Its embedded redis-server dies with it: none left before the next start.
            assert not run_stack.orphans(), f"redis-server outlived gateway run (seed {SEED})"
            following = number + 1
            kill_at = None
            if following < len(moments) and following % 2 == 0:
                kill_at = moments[following] - sum(run_stack.witnessed().values())
                kill_at = max(kill_at, 1)
            await run_stack.start(kill_at_create=kill_at)  # the process manager's part
            downtimes.append(time.monotonic() - died)
        last_kill = time.monotonic()
        ids = await posting
    finally:
        posting.cancel()
    await run_stack.wait_delivered(ids, deadline)
    settled = time.monotonic()
    assert run_stack.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert not run_stack.orphans(), "a clean stop left a redis-server"

    problems = await run_stack.problems(ids)
    assert not problems, f"{len(problems)} problems (seed {SEED}):\n" + "\n".join(problems[:20])
    assert run_stack.kills == KILLS
    interrupted = await run_stack.interrupted_sends()
    assert interrupted >= run_stack.self_kills, (interrupted, run_stack.self_kills, SEED)
    print(
        f"gateway run crash drill ({'SQLite + embedded Redis' if embedded_redis else 'services'}, "
        f"seed {SEED}): {LEADS} leads, {KILLS} kills ({run_stack.self_kills} inside an answer), "
        f"restarts {', '.join(f'{d:.1f}' for d in downtimes)} s, {interrupted} interrupted "
        f"sends recovered, every text delivered {settled - last_kill:.1f} s after the last kill "
        f"({settled - began:.1f} s after the burst began); {len(ids)} creates, no doubles"
    )
