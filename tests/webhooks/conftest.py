"""Fixtures for webhook tests: a real HTTP receiver (Starlette under uvicorn on 127.0.0.1, in a
thread so the TestClient and the worker can both reach it), an account allowed to use it, plays
to record activities on, and a worker that runs until the deliveries settle."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from sqlmodel import col, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway import accounts
from gateway.clock import now
from gateway.db import SessionFactory, transaction
from gateway.engine.records import record_activity
from gateway.ids import new_id
from gateway.leads import LeadCreate, upsert_lead
from gateway.models import (
    Activity,
    ActivityType,
    DeliveryStatus,
    Play,
    PlayState,
    WebhookDelivery,
)
from gateway.settings import Settings
from gateway.webhooks.addresses import set_private_allowed
from gateway.worker import build_worker, stop_worker
from tests.conftest import RunWorker


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


Answer = Callable[[Received], "tuple[int, dict[str, str]] | int"]


@dataclass
class Receiver:
    """A customer's endpoint: records every request; answers what `answer` says."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    answer: Answer = lambda _r: 200
    delays: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    # path -> an event the answer waits for (bounded by `hold_limit` seconds): a request the
    # test holds open for as long as it needs, not for a guessed time.
    holds: dict[str, threading.Event] = field(default_factory=dict)
    hold_limit: float = 60.0
    holds_run_out: int = 0  # holds answered because `hold_limit` passed, not by the test
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        got = Received(
            request.url.path,
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
            time.monotonic(),
        )
        with self.lock:
            self.received.append(got)
        delay = self.delays.get(got.path, 0.0)
        if delay:
            await asyncio.sleep(delay)
        hold = self.holds.get(got.path)
        if hold is not None and not await asyncio.to_thread(hold.wait, self.hold_limit):
            with self.lock:
                self.holds_run_out += 1
        answered = self.answer(got)
        status, headers = answered if isinstance(answered, tuple) else (answered, {})
        return Response(f"answer {status}", status_code=status, headers=headers)

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r.json for r in self.received if path is None or r.path == path]


class ReceiverServer:
    """uvicorn on a fixed 127.0.0.1 port that can be stopped and started again ("down, then
    back"): requests while it is down get connection refused, as from a crashed server."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        receiver.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.started, "receiver did not start"
        self._server, self._thread, self._sock = server, thread, sock

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(5)
        self._sock.close()
        self._server = self._thread = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    server = ReceiverServer(found)
    server.start()
    found.server = server  # type: ignore[attr-defined]
    try:
        yield found
    finally:
        server.stop()


@dataclass
class Tenant:
    key: accounts.IssuedKey

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key.secret}"}

    @property
    def account_id(self) -> str:
        return self.key.key.account_id


async def new_tenant(sessions: SessionFactory, name: str, private: bool = True) -> Tenant:
    async with transaction(sessions) as session:
        _account, issued = await accounts.create_account(session, name)
        if private:  # the operator lets this account reach the receiver on 127.0.0.1
            await set_private_allowed(session, issued.key.account_id, True)
    return Tenant(issued)


@pytest.fixture
async def tenant(sessions: SessionFactory) -> Tenant:
    return await new_tenant(sessions, "Acme Lending")


@pytest.fixture
async def other_tenant(sessions: SessionFactory) -> Tenant:
    return await new_tenant(sessions, "Other Insurance")


def subscribe(client: TestClient, tenant: Tenant, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/webhooks", headers=tenant.headers, json={"url": url, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


DEFAULT_PHONE = "+14155550123"
LEAD_IN = {
    "first_name": "Ann",
    "last_name": "Lee",
    "email": "ann@example.com",
    "additional_info": {"loan_amount": 350000, "source": {"campaign": "spring"}},
    "originators": [{"origin": "EverQuote", "key": "eq-123"}, {"origin": "CRM", "key": "c-9"}],
}


async def new_play(
    sessions: SessionFactory,
    account_id: str,
    phone: str = DEFAULT_PHONE,
    playbook_id: str = "hello",
    lead: dict[str, Any] | None = None,
) -> Play:
    if lead is None:
        lead = dict(LEAD_IN)
        if phone != DEFAULT_PHONE:  # originators name one lead each
            lead["originators"] = [{"origin": "EverQuote", "key": f"eq-{phone}"}]
    async with transaction(sessions) as session:
        found = await upsert_lead(
            session, account_id, LeadCreate.model_validate({"phone": phone, **lead})
        )
        play = Play(
            id=new_id("play"),
            account_id=account_id,
            lead_id=found.id,
            playbook_id=playbook_id,
            playbook_version=1,
            state=PlayState.RUNNING,
        )
        session.add(play)
    return play


async def record(
    sessions: SessionFactory, play: Play, *labels: str, kind: ActivityType = ActivityType.EVENT
) -> list[Activity]:
    """Record activities on `play`, in one transaction, the way the engine does."""
    async with transaction(sessions) as session:
        return [
            await record_activity(session, play, kind, label, f"note {label}") for label in labels
        ]


async def deliveries(sessions: SessionFactory, **where: Any) -> list[WebhookDelivery]:
    async with sessions() as session:
        query = select(WebhookDelivery).order_by(col(WebhookDelivery.activity_id))
        for name, value in where.items():
            query = query.where(getattr(WebhookDelivery, name) == value)
        return list((await session.exec(query)).all())


async def settle(run_worker: RunWorker, sessions: SessionFactory, rounds: int = 50) -> None:
    """Run burst workers until nothing is pending and due (each starts with the sweep)."""
    for _ in range(rounds):
        await run_worker()
        pending = await deliveries(sessions, status=DeliveryStatus.PENDING)
        if not [d for d in pending if d.next_attempt_at is None or d.next_attempt_at <= now()]:
            return
    raise AssertionError("deliveries did not settle")


@pytest.fixture
async def background_worker(settings: Settings) -> AsyncIterator[Callable[[], None]]:
    """A long-running worker (not burst) in this loop, for tests about timing."""
    assert settings.redis_url is not None
    worker = build_worker(settings, settings.redis_url, handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    try:
        yield lambda: None
    finally:
        await stop_worker(worker, task, grace=0)
