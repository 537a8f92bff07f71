"""The one error shape of the API: `{"error": {"code", "message", "field"}}` for every 4xx/5xx."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from http import HTTPStatus

import asyncpg  # type: ignore[import-untyped]
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

log = logging.getLogger(__name__)

# What a call to Redis raises when Redis is gone or unreachable.
REDIS_LOST = (RedisError, OSError, TimeoutError)


class ApiError(HTTPException):
    """An error the API reports on purpose, with a stable machine code and the offending field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(status_code=status, detail=message)
        self.code = code
        self.message = message
        self.field = field


def error_body(code: str, message: str, field: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.message, exc.field, exc.headers)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, _code_for(exc.status_code), message, headers=exc.headers)


# A database or Redis that can't be reached (restarting, failing over, locked) is an outage, not
# a bug: the client is told to come back, and nothing was changed (the transaction rolled back).
UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectionError,  # refused or reset while connecting (asyncpg raises these unwrapped)
    TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
    OperationalError,
    InterfaceError,
)
# SQLite's primary result codes of a database that is busy or can't be used right now; any
# other OperationalError (SQLITE_ERROR: "no such column", ...) is a bug, not an outage.
SQLITE_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)
# PostgreSQL errors asyncpg raises that SQLAlchemy wraps as a plain DBAPIError: the server is
# shutting down or starting up (57P0x), out of connections or resources (53xxx), or the
# connection failed (08xxx).
ASYNCPG_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.PostgresConnectionError,
)
# PostgreSQL ended the transaction to let another go on (40P01 deadlock detected, 40001 could
# not serialize): nothing it wrote stands, and the same request again is expected to succeed.
# Not a bug in the request, and no retry here: a route's transaction is its whole body.
ASYNCPG_CONFLICT: tuple[type[Exception], ...] = (asyncpg.exceptions.TransactionRollbackError,)
RETRY_AFTER_SECONDS = 5


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says a backend can't be reached or used right now (an outage), or
    PostgreSQL ended the transaction in a conflict with another (`is_conflict`)."""
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        if isinstance(orig, sqlite3.Error):
            return (orig.sqlite_errorcode & 0xFF) in SQLITE_UNAVAILABLE
        if isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated:
            return True
        # asyncpg's own error, under SQLAlchemy's adapted one
        return is_conflict(exc) or (
            orig is not None and isinstance(orig.__cause__, ASYNCPG_UNAVAILABLE)
        )
    return isinstance(exc, UNAVAILABLE)


def is_conflict(exc: BaseException) -> bool:
    """Whether PostgreSQL ended the transaction to resolve a conflict with another."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    return orig is not None and isinstance(orig.__cause__, ASYNCPG_CONFLICT)


def _describe(exc: BaseException) -> str:
    # The driver's own message: SQLAlchemy's text adds the statement and its parameters (key
    # hashes, message bodies) over several lines, and an outage is logged as one line.
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return " ".join(f"{type(exc).__name__}: {cause}".split())


def service_unavailable(method: str, path: str, exc: BaseException) -> JSONResponse:
    """The 503 of an outage or a conflict the database ended, and its one log line (no
    traceback: nothing here is a bug)."""
    if is_conflict(exc):
        # The other transaction has gone on by now: the same request may come again at once.
        log.warning("database conflict on %s %s: %s", method, path, _describe(exc))
        message = "the database ended this request in a conflict with another; nothing was "
        message += "changed; retry it"
        retry_after = 1
    else:
        log.warning("backend unavailable on %s %s: %s", method, path, _describe(exc))
        message = "a backend (database or Redis) is unavailable; retry shortly"
        retry_after = RETRY_AFTER_SECONDS
    return error_response(
        503, "service_unavailable", message, headers={"Retry-After": str(retry_after)}
    )


def internal_error(request: Request) -> JSONResponse:
    # A bug: the client gets the documented shape, the log the details.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; it has been logged")


async def backend_error(request: Request, exc: Exception) -> Response:
    """A database or Redis error raised by a route. Handled here, inside Starlette's
    ExceptionMiddleware, so the answer is final: the catch-all `Exception` handler below runs
    in ServerErrorMiddleware, which re-raises after answering, and uvicorn then logs
    "Exception in ASGI application" with the whole traceback for a handled outage."""
    if is_unavailable(exc):
        return service_unavailable(request.method, request.url.path, exc)
    return internal_error(request)


async def unhandled(request: Request, exc: Exception) -> Response:
    if is_unavailable(exc):  # from a middleware, outside ExceptionMiddleware
        return service_unavailable(request.method, request.url.path, exc)
    return internal_error(request)


EXCEPTION_HANDLERS: dict[int | type[Exception], ExceptionHandler] = {
    HTTPException: http_exception,
    DBAPIError: backend_error,
    ConnectionError: backend_error,
    TimeoutError: backend_error,
    RedisConnectionError: backend_error,
    RedisTimeoutError: backend_error,
    Exception: unhandled,
}
