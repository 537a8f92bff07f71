"""The arq worker runs jobs against the real Redis and database."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from arq import create_pool, func
from arq.worker import Worker
from sqlmodel import select

from gateway import accounts
from gateway.db import SessionFactory
from gateway.logs import quiet_idle_cron
from gateway.models import ApiKey
from gateway.settings import Settings
from gateway.worker import SWEEPS, redis_settings, stop_worker
from tests.conftest import RunWorker


async def test_keys_mark_used_job(
    settings: Settings,
    sessions: SessionFactory,
    issued_key: accounts.IssuedKey,
    run_worker: RunWorker,
) -> None:
    assert settings.redis_url is not None
    pool = await create_pool(redis_settings(settings.redis_url))
    try:
        job_id = f"keys.mark_used:{issued_key.key.id}"
        assert await pool.enqueue_job("keys.mark_used", issued_key.key.id, _job_id=job_id)
        # Same id while queued: deduplicated, so a burst of requests costs one write.
        assert await pool.enqueue_job("keys.mark_used", issued_key.key.id, _job_id=job_id) is None
        worker = await run_worker()
        assert worker.jobs_failed == 0
        # keep_result=0: the id is free again once the job ran.
        assert await pool.enqueue_job("keys.mark_used", issued_key.key.id, _job_id=job_id)
    finally:
        await pool.aclose()
    async with sessions() as session:
        key = (await session.exec(select(ApiKey))).one()
    assert key.last_used_at is not None


async def test_stopping_a_worker_mid_job_cancels_the_job_and_raises_nothing(
    settings: Settings,
) -> None:
    """arq's `close()` cancels running jobs and gathers them, raising CancelledError into
    whoever stops the worker (the app's shutdown, a test's teardown); `stop_worker` doesn't."""
    assert settings.redis_url is not None
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hangs(_ctx: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = Worker(
        functions=[func(hangs, name="hangs")],
        redis_settings=redis_settings(settings.redis_url),
        handle_signals=False,
        poll_delay=0.01,
        keep_result=0,
    )
    pool = await create_pool(redis_settings(settings.redis_url))
    try:
        await pool.enqueue_job("hangs")
        task = asyncio.create_task(worker.async_run())
        await asyncio.wait_for(started.wait(), 10)
        await stop_worker(worker, task, grace=0.05)
    finally:
        await pool.aclose()
    assert cancelled.is_set() and task.done()
    assert worker.tasks == {}
    assert worker._pool is None  # closed: arq's close ran to its end


async def test_idle_sweeps_log_at_debug(
    run_worker: RunWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """arq logs each cron run's start and end at INFO (~70 lines a minute for six sweeps);
    a sweep that found nothing to do logs at DEBUG instead, other jobs keep arq's INFO."""
    quiet_idle_cron()
    caplog.set_level(logging.INFO)
    worker = await run_worker()  # burst: the sweeps run once at start-up, on an empty database
    assert worker.jobs_complete >= len(SWEEPS)
    arq_lines = [r.getMessage() for r in caplog.records if r.name == "arq.worker"]
    runs = [line for line in arq_lines if "→" in line or "←" in line]  # a job's start or end
    assert not [line for line in runs if "sweep" in line or "check_statuses" in line]

    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="arq.worker")
    await run_worker()
    runs = [r for r in caplog.records if r.name == "arq.worker" and "Starting" not in r.msg]
    idle = [r for r in runs if "work.sweep" in r.getMessage()]
    assert {r.levelname for r in idle} == {"DEBUG"}
    assert any("←" in r.getMessage() and r.getMessage().endswith("● 0") for r in idle)
