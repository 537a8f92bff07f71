"""A gateway outage while status callbacks are due (issue 18): leads are texted, the gateway's web
server that Twilio calls back is stopped (its port refuses connections) while the sandbox's
status callbacks fall due, and Twilio, like the sandbox, does not send a failed status callback
again. Then the gateway comes back. Every text must reach its final status through the status
checks (gateway/jobs/sms_status_checks.py) within a stated time, and the plays move on as the lost
callbacks would have moved them: a landline lead's text ends `undelivered` 30006, the lead is
flagged and its play stopped.

Two outages, on the end-to-end stack (the sandbox's virtual clock is the gateway's, so a check
due in 5 minutes needs no real 5 minutes):
- web only: the web server is down for OUTAGE_WEB while the worker (a separate process) keeps
  running its sweeps every SWEEP virtual seconds; the checks find the texts FIRST_CHECK after
  they were accepted;
- everything (`gateway run` down): neither web nor worker runs for OUTAGE_ALL, longer than
  FIRST_CHECK; the first sweep after the return finds every text due.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
import uvicorn
from sqlmodel import col, select

from gateway.app import create_app
from gateway.clock import now
from gateway.models import Lead, Message, Play
from gateway.settings import Settings
from gateway.sms.status import FINAL
from gateway.sms.status_schedule import FIRST_CHECK
from tests.reliability.support_callbacks import MORTGAGE, publish_mortgage, start
from tests.support.ports import free_port
from tests.support.stack import Stack

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

FULL = os.environ.get("RELIABILITY_FULL") == "1"
LEADS_PER_OUTAGE = 150 if FULL else 20
LANDLINE_EVERY = 5  # every fifth lead's phone is a landline: its text ends undelivered 30006
OUTAGE_WEB = timedelta(minutes=2)
OUTAGE_ALL = timedelta(minutes=30)
SWEEP = timedelta(seconds=10)  # the worker's sweep interval (gateway/worker.py)
# The stated bound: every text final within the first check plus two sweeps of the later of its
# acceptance and the gateway's return.
RECOVERY_BOUND = FIRST_CHECK + 2 * SWEEP
MAX_ROUNDS = int(RECOVERY_BOUND / SWEEP) + 2  # the drill stops by itself


class WebServer:
    """The gateway's web app under uvicorn on a fixed 127.0.0.1 port, stopped and started again
    as a process would be: while stopped, the port refuses connections; each start is a new app
    (its own engine and Redis pool), as a restarted process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(
            create_app(self.settings),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
        self._server, self._task, self._sock = server, task, sock

    async def stop(self) -> None:
        if self._server is None or self._task is None or self._sock is None:
            return
        self._server.should_exit = True
        try:
            async with asyncio.timeout(5):
                await self._task
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sock.close()
        self._server = self._task = self._sock = None


@dataclass
class Figures:
    """What one outage did, for the report."""

    name: str
    texts: int = 0
    refused: int = 0  # status callbacks that met the closed port
    fetched: int = 0  # status checks (Messages(sid).fetch)
    virtual_recovery: timedelta = timedelta(0)  # the return to the last text final
    wall_recovery: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.name}: {self.texts} texts, {self.refused} status callbacks refused, "
            f"{self.fetched} status checks, every text final {self.virtual_recovery} "
            f"(virtual) after the gateway's return, {self.wall_recovery:.1f} s wall; "
            f"{self.statuses}"
        )


async def _texts(stack: Stack, phones: list[str]) -> list[Message]:
    async with stack.sessions() as session:
        query = select(Message).where(
            Message.direction == "outbound", col(Message.lead_phone).in_(phones)
        )
        return list((await session.exec(query)).all())


async def _all_final(stack: Stack, phones: list[str]) -> bool:
    texts = await _texts(stack, phones)
    return len(texts) == len(phones) and all(m.status in FINAL for m in texts)


async def _advance_to(stack: Stack, moment: datetime) -> None:
    await stack.sandbox.advance(max(0.0, (moment - now()).total_seconds()))


def _refused(stack: Stack) -> int:
    return sum(
        1
        for entry in stack.sandbox.record.callbacks("sms.status")
        if entry.error is not None and "ConnectError" in entry.error
    )


async def _outage(
    stack: Stack, web: WebServer, name: str, phones: list[str], *, down: timedelta, worker_up: bool
) -> Figures:
    figures = Figures(name)
    refused_before = _refused(stack)
    fetched_before = len(stack.sandbox.record.requests("messages.fetch"))
    for i, phone in enumerate(phones):
        landline = i % LANDLINE_EVERY == LANDLINE_EVERY - 1
        stack.sandbox.phones.script(phone, line_type="landline" if landline else "mobile")
        await start(stack, phone, MORTGAGE)
    await stack.run_worker()  # every first text reaches Twilio; its callbacks are not due yet
    texts = await _texts(stack, phones)
    assert len(texts) == len(phones) and {m.status for m in texts} == {"accepted"}

    await web.stop()
    back_at = now() + down
    while now() < back_at:
        await _advance_to(stack, min(back_at, now() + SWEEP))
        if worker_up:
            await stack.run_worker()
    figures.refused = _refused(stack) - refused_before
    # Every text's `sent` and final callbacks met the closed port (and Twilio sends none again).
    assert figures.refused >= 2 * len(phones), figures.refused
    await web.start()

    started = time.monotonic()
    returned = now()
    for _ in range(MAX_ROUNDS):
        await stack.run_worker()
        if await _all_final(stack, phones):
            break
        await _advance_to(stack, now() + SWEEP)
    figures.wall_recovery = time.monotonic() - started
    figures.virtual_recovery = now() - returned
    texts = await _texts(stack, phones)
    not_final = [(m.lead_phone, m.status) for m in texts if m.status not in FINAL]
    assert not_final == [], f"{name}: not final {RECOVERY_BOUND} after the return: {not_final}"
    latest_accept = max(m.created_at for m in texts)
    assert now() <= max(returned, latest_accept) + RECOVERY_BOUND
    figures.texts = len(texts)
    figures.fetched = len(stack.sandbox.record.requests("messages.fetch")) - fetched_before
    for m in texts:
        figures.statuses[m.status] = figures.statuses.get(m.status, 0) + 1
    return figures


async def _check_outcomes(stack: Stack, phones: list[str]) -> None:
    """Each lead texted exactly once; landlines flagged and their plays stopped, the others'
    texts delivered and their plays waiting for the answer, as with every callback."""
    async with stack.sessions() as session:
        leads = {
            lead.phone: lead
            for lead in (
                await session.exec(select(Lead).where(Lead.account_id == stack.account_id))
            ).all()
        }
        plays = {p.lead_id: p for p in (await session.exec(select(Play))).all()}
    texts = {m.lead_phone: m for m in await _texts(stack, phones)}
    for i, phone in enumerate(phones):
        assert len(stack.creates(To=phone)) == 1, phone
        lead, text = leads[phone], texts[phone]
        play = plays[lead.id]
        if i % LANDLINE_EVERY == LANDLINE_EVERY - 1:
            assert (text.status, text.error_code) == ("undelivered", 30006), phone
            assert (lead.phone_status, lead.phone_status_code) == ("landline", 30006), phone
            assert play.state == "stopped", phone
        else:
            assert (text.status, text.error_code) == ("delivered", None), phone
            assert lead.phone_status == "ok", phone
            assert play.state == "running" and play.waiting_reply, phone


async def test_status_callbacks_lost_in_an_outage_are_caught_up(stack: Stack) -> None:
    web = WebServer(stack.settings)
    # Twilio calls back this server from now on: the status callback URL of every text, and the
    # URL its signatures are checked against.
    stack.settings.public_base_url = web.url
    await web.start()
    try:
        await publish_mortgage(stack)
        first = [f"+1415556{1000 + i:04d}" for i in range(LEADS_PER_OUTAGE)]
        second = [f"+1415556{3000 + i:04d}" for i in range(LEADS_PER_OUTAGE)]
        figures = [
            await _outage(stack, web, "web down", first, down=OUTAGE_WEB, worker_up=True),
            await _outage(stack, web, "gateway down", second, down=OUTAGE_ALL, worker_up=False),
        ]
    finally:
        await web.stop()
    for line in figures:
        print(line.line())  # the drill's figures, shown with -s
    await _check_outcomes(stack, first + second)
    web_only, everything = figures
    # Web only: the checks came FIRST_CHECK after acceptance, each text asked for once.
    assert web_only.fetched == web_only.texts
    assert web_only.virtual_recovery <= FIRST_CHECK - OUTAGE_WEB + 2 * SWEEP
    # Everything down past the first check: the first sweep after the return catches up.
    assert everything.fetched == everything.texts
    assert everything.virtual_recovery <= SWEEP
