"""The whole stack on 127.0.0.1: the gateway under uvicorn, the Twilio sandbox under uvicorn,
the real twilio client between them, the real database and Redis, and a burst worker; and
`hooks`, a customer's webhook receiver subscribed by the stack's account.

A pytest plugin (`pytest_plugins` in tests/conftest.py): the `stack` and `hooks` fixtures are
there for every directory, which imports only the names (`Stack`, `LEAD`, …) from here.

The gateway's clock is the sandbox's virtual clock, starting on a Wednesday at noon in San
Francisco, so quiet hours are known and time moves only when a test says so.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from arq import create_pool
from arq.connections import ArqRedis
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from gateway import accounts, work
from gateway.app import create_app
from gateway.clock import set_clock
from gateway.db import SessionFactory, transaction
from gateway.job_context import as_ctx
from gateway.jobs import sms_statuses
from gateway.settings import Settings
from gateway.webhooks.addresses import set_private_allowed
from gateway.worker import opened_job_context, redis_settings
from tests.conftest import RunWorker
from tests.support.servers import serve
from twilio_sandbox import Sandbox

LEAD = "+14155550123"  # San Francisco: America/Los_Angeles
OUR_NUMBER = "+14155550100"
NOON_PACIFIC = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)  # Wednesday 12:00 PST


@dataclass
class Stack:
    sandbox: Sandbox
    api: httpx.AsyncClient  # the gateway, with the account's key
    url: str
    settings: Settings
    sessions: SessionFactory
    account_id: str
    key: accounts.IssuedKey
    run_worker: RunWorker
    api_redis: ArqRedis

    async def work(self) -> Worker:
        """Run the worker until its queue is empty, then deliver what Twilio would call back
        and act on those callbacks."""
        worker = await self.run_worker()
        await self.sandbox.settle()
        await self.statuses()
        return worker

    async def statuses(self) -> int:
        """Act on the status callbacks delivered so far, as the worker's `sms.statuses` job
        does (the job itself; what it stages waits in Redis for the next `work`)."""
        async with opened_job_context(self.settings, self.sessions, self.api_redis) as jc:
            return await sms_statuses.take_statuses(as_ctx(jc), sms_statuses.STATUSES)

    async def post_twilio(self, path: str, params: dict[str, str]) -> httpx.Response:
        """POST a webhook signed as Twilio signs it."""
        signature = RequestValidator(self.settings.twilio_token).compute_signature(
            self.url + path, params
        )
        return await self.api.post(path, data=params, headers={"X-Twilio-Signature": signature})

    def creates(self, **params: str) -> list[Any]:
        return self.sandbox.record.requests("messages.create", **params)

    async def say(self, text: str, phone: str = LEAD) -> None:
        """A lead's phone texts our number; then the callbacks and the work that follow."""
        self.sandbox.send_sms(phone, OUR_NUMBER, text)
        await self.sandbox.settle()
        await self.work()

    async def log(self, play_id: str) -> list[dict[str, Any]]:
        """The play's log as the API shows it (one page: a test's play is shorter)."""
        shown = await self.api.get(f"/v1/plays/{play_id}/log?limit=500")
        assert shown.status_code == 200, shown.text
        entries: list[dict[str, Any]] = shown.json()["data"]
        return entries


@pytest.fixture
async def stack(
    settings: Settings, engine: AsyncEngine, sessions: SessionFactory, run_worker: RunWorker
) -> AsyncIterator[Stack]:
    sandbox = Sandbox(settings.twilio_sid, settings.twilio_token, start=NOON_PACIFIC)
    set_clock(sandbox.now)
    try:
        async with serve(sandbox.app) as sandbox_url:
            settings.twilio_api_url = sandbox_url
            # Rate limits wait by the wall clock; the tests that are about them turn them on.
            settings.sms_rate_limits = False
            async with serve(create_app(settings)) as url:
                settings.public_base_url = url
                async with transaction(sessions) as session:
                    account, key = await accounts.create_account(session, "Acme Lending")
                headers = {"Authorization": f"Bearer {key.secret}"}
                async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
                    # The Twilio account owns the number before the account registers it.
                    sandbox.add_number(OUR_NUMBER, sms_url=f"{url}/twilio/sms")
                    created = await api.post("/v1/numbers", json={"number": OUR_NUMBER})
                    assert created.status_code == 201, created.text
                    redis = await create_pool(redis_settings(settings.redis_url or ""))
                    try:
                        yield Stack(
                            sandbox,
                            api,
                            url,
                            settings,
                            # As the app's: a commit hands the work it staged to Redis.
                            work.bind(sessions, redis),
                            account.id,
                            key,
                            run_worker,
                            redis,
                        )
                    finally:
                        await redis.aclose()
    finally:
        set_clock(None)
        await sandbox.aclose()


@dataclass
class Hooks:
    """The customer's webhook receiver: every body it was sent."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def labels(self, play_id: str) -> list[str]:
        return [b["activity_label"] for b in self.bodies if b.get("activity_play_id") == play_id]

    def of(self, play_id: str, label: str) -> list[dict[str, Any]]:
        return [
            b
            for b in self.bodies
            if b["activity_play_id"] == play_id and b["activity_label"] == label
        ]


@pytest.fixture
async def hooks(stack: Stack) -> AsyncIterator[Hooks]:
    """A webhook receiver on 127.0.0.1 that the stack's account subscribes to."""
    got = Hooks()

    async def hook(request: Request) -> Response:
        got.bodies.append(json.loads(await request.body()))
        return Response("ok")

    async with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        got.url = url
        async with transaction(stack.sessions) as session:
            await set_private_allowed(session, stack.account_id, True)
        created = await stack.api.post("/v1/webhooks", json={"url": f"{url}/hook"})
        assert created.status_code == 201, created.text
        yield got
