"""Fixtures of the process-fault drills (worker kill, Redis loss, PostgreSQL restart): the drill
stack on the session's database and Redis, or with a Redis or PostgreSQL of the drill's own."""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import SessionFactory, create_engine, session_factory
from gateway.migrate import upgrade
from tests.reliability.drill import Drill, open_drill
from tests.reliability.private_services import PrivatePostgres, PrivateRedis, postgres_bin
from tests.support.databases import create_database


@pytest.fixture
async def drill(
    database_url: str, clean_redis: str, sessions: SessionFactory, tmp_path: Path
) -> AsyncIterator[Drill]:
    """The drill stack on the test's database and Redis (SQLite/embedded or the services)."""
    async with open_drill(database_url, clean_redis, sessions, tmp_path) as opened:
        yield opened


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
async def redis_loss_drill(
    database_url: str, sessions: SessionFactory, private_redis: PrivateRedis, tmp_path: Path
) -> AsyncIterator[Drill]:
    """The drill stack with a Redis of its own, which the drill may crash."""
    async with open_drill(database_url, private_redis.url, sessions, tmp_path) as opened:
        yield opened


@dataclass
class OwnPostgres:
    server: PrivatePostgres
    database_url: str


@pytest.fixture
def private_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of the test's own with a migrated database, whatever backend the
    suite runs on: the drill restarts it, which nobody may do to the machine's service."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to own the cluster")
    server = PrivatePostgres(bindir)
    try:
        server.init()
        server.start()
        url = asyncio.run(create_database(server.server_url, server.directory))
        upgrade(url)
        yield OwnPostgres(server, url)
    finally:
        server.close()


@pytest.fixture
async def private_postgres_engine(private_postgres: OwnPostgres) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(private_postgres.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def postgres_drill(
    private_postgres: OwnPostgres,
    private_postgres_engine: AsyncEngine,
    clean_redis: str,
    tmp_path: Path,
) -> AsyncIterator[Drill]:
    """The drill stack on a PostgreSQL of its own, which the drill restarts."""
    sessions = session_factory(private_postgres_engine)
    async with open_drill(private_postgres.database_url, clean_redis, sessions, tmp_path) as opened:
        yield opened
