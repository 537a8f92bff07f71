"""The arq worker runs jobs against the real Redis and database."""

from __future__ import annotations

from arq import create_pool
from sqlmodel import select

from gateway import accounts
from gateway.db import SessionFactory
from gateway.models import ApiKey
from gateway.settings import Settings
from gateway.worker import redis_settings
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
