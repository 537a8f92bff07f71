"""`GET /healthz`: is the database reachable, is Redis reachable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.state import app_state

CHECK_TIMEOUT = 2.0


async def _database(request: Request) -> str:
    async with app_state(request)["engine"].connect() as connection:
        await connection.execute(text("SELECT 1"))
    return "ok"


async def _redis(request: Request) -> str:
    await app_state(request)["redis"].ping()
    return "ok"


async def _run(check: Callable[[Request], Awaitable[str]], request: Request) -> str:
    try:
        result: str = await asyncio.wait_for(check(request), CHECK_TIMEOUT)
    except Exception as exc:  # any failure is "unavailable"; the detail says which and why
        return f"error: {type(exc).__name__}: {exc}"[:300]
    return result


async def healthz(request: Request) -> JSONResponse:
    checks = {
        "database": await _run(_database, request),
        "redis": await _run(_redis, request),
    }
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )
