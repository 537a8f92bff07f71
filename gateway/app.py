"""The Starlette application: `create_app()` with its lifespan, routes and middleware."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq import create_pool
from arq.worker import Worker
from sqlmodel import col, select
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route

from gateway import clock, dev_clock, sms_routes, unsubscribe_page, work
from gateway.account_settings import compliance_settings, twilio_opt_out_handling
from gateway.api import (
    account,
    assignments,
    docs,
    emails,
    leads,
    messages,
    numbers,
    openapi,
    optouts,
    party_lines,
    play_log,
    playbooks,
    plays,
    reps,
    sources,
    takeover,
    webhooks,
)
from gateway.auth import ApiKeyMiddleware
from gateway.body_limit import BodyLimitMiddleware
from gateway.console import mount as console_mount
from gateway.db import SessionFactory, create_engine, session_factory
from gateway.errors import EXCEPTION_HANDLERS
from gateway.health import healthz
from gateway.migrate import upgrade_async
from gateway.models import Account, SenderNumber
from gateway.redis_embedded import EmbeddedRedis
from gateway.settings import SANDBOX_PATH, Settings, load_settings
from gateway.state import AppState
from gateway.worker import (
    INLINE_GRACE,
    JOB_COMPLETION_WAIT,
    build_job_context,
    build_worker,
    close_job_context,
    inline_runner,
    redis_settings,
    stop_worker,
)
from twilio_sandbox import Sandbox
from voice import routes as voice_routes
from voice.links import INBOUND_PATH

log = logging.getLogger(__name__)


def _routes(sandbox: Sandbox | None) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        # Twilio's webhooks first: they are most of the requests, and the router tries each
        # route in turn (matching sixty routes before them was a tenth of an inbound text's CPU).
        *sms_routes.routes,
        *voice_routes.routes,
        Route("/healthz", healthz, methods=["GET"]),
        *account.routes,
        *optouts.routes,
        *numbers.routes,
        *messages.routes,
        *emails.routes,
        *playbooks.routes,
        *reps.routes,
        *plays.routes,
        *takeover.routes,
        *sources.routes,
        *leads.routes,
        *assignments.routes,
        *webhooks.routes,
        *openapi.routes,
        *docs.routes,
        *party_lines.routes,
        *play_log.routes,
        *unsubscribe_page.routes,
        console_mount(),
    ]
    if sandbox is not None:
        routes.append(Mount(SANDBOX_PATH, app=sandbox.app))
    return routes


async def _register_numbers(sandbox: Sandbox, sessions: SessionFactory, base_url: str) -> None:
    """Tell the built-in sandbox which numbers are ours, where their texts go, and whether it
    answers STOP, START and HELP on them (as each number's account says Twilio does)."""
    async with sessions() as session:
        query = select(SenderNumber, Account).join(
            Account, col(Account.id) == col(SenderNumber.account_id)
        )
        for number, account in (await session.exec(query)).all():
            sandbox.add_number(
                number.number,
                sms_url=f"{base_url}/twilio/sms",
                voice_url=f"{base_url}{INBOUND_PATH}",
                messaging_service_sid=number.messaging_service_sid,
                **twilio_opt_out_handling(compliance_settings(account)),
            )


def create_app(settings: Settings | None = None, *, run_worker: bool = False) -> Starlette:
    """The gateway app. `run_worker` runs the arq worker inside the app's event loop."""
    settings = settings or load_settings()
    # No Twilio credentials and no other Twilio URL: the sandbox is served here, under /sandbox.
    sandbox = (
        Sandbox(
            settings.twilio_sid,
            settings.twilio_token,
            callback_base=lambda: settings.base_url,  # read late: tests set it once serving
            # What it accepted survives a crash of this process, as it would at Twilio.
            state_dir=settings.data_dir,
        )
        if settings.uses_sandbox and settings.twilio_api_url is None
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[AppState]:
        clock.run_ahead(settings.clock_ahead_seconds)
        embedded: EmbeddedRedis | None = None
        redis_url = settings.redis_url
        if redis_url is None:
            embedded = await asyncio.to_thread(EmbeddedRedis(settings.data_dir).ensure)
            redis_url = embedded.url
        if settings.embedded_database:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            await upgrade_async(settings.database)
        engine = create_engine(settings.database)
        redis = await create_pool(redis_settings(redis_url))
        # Requests' transactions hand the work they stage to Redis once they commit, or run
        # the work a lead waits on here at once (`gateway.work.inline`), with the clients a
        # job needs.
        inline = inline_runner(settings, redis, worker_here=run_worker)
        jobs = (
            build_job_context(settings, session_factory(engine), redis, inline=inline)
            if inline is not None
            else None
        )
        sessions = jobs.sessions if jobs is not None else work.bind(session_factory(engine), redis)
        if sandbox is not None:
            await _register_numbers(sandbox, sessions, settings.base_url)
            sandbox.start_realtime()
        worker: Worker | None = None
        worker_task: asyncio.Task[None] | None = None
        if run_worker:
            worker = build_worker(
                settings, redis_url, engine=engine, jobs=jobs, handle_signals=False
            )
            worker_task = asyncio.create_task(worker.async_run())
        try:
            yield AppState(
                settings=settings,
                engine=engine,
                sessions=sessions,
                redis=redis,
                sandbox=sandbox,
                worker_here=run_worker,
            )
        finally:
            if worker is not None and worker_task is not None:
                await stop_worker(worker, worker_task, JOB_COMPLETION_WAIT)
            if inline is not None and jobs is not None:
                await inline.aclose(INLINE_GRACE)
                await close_job_context(jobs)
            if sandbox is not None:
                dev_clock.release()  # the dev phone may have moved this process's clock
                await sandbox.aclose()
            await redis.aclose()
            await engine.dispose()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)

    return Starlette(
        routes=_routes(sandbox),
        middleware=[Middleware(BodyLimitMiddleware), Middleware(ApiKeyMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
