"""A handled outage is answered 503 and logged as one line: no "Exception in ASGI application",
no traceback (issue 18). The app runs under uvicorn on 127.0.0.1, whose own error log is
captured too; the database is really unreachable (nothing listens on port 1) or really locked
(another connection holds SQLite's write lock)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from twilio.request_validator import RequestValidator

from gateway import accounts, db
from gateway.app import create_app
from gateway.errors import is_unavailable
from gateway.settings import Settings
from tests.conftest import TEST_DATABASE_URL
from tests.support.servers import serve

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


@dataclass
class Logs:
    caplog: pytest.LogCaptureFixture

    def watch_uvicorn(self) -> None:
        """Also capture uvicorn's loggers ("uvicorn.error" propagates to "uvicorn", which does not
        propagate to the root logger). Call it once uvicorn runs: its logging config replaces
        the handlers of its loggers at start-up."""
        logging.getLogger("uvicorn").addHandler(self.caplog.handler)

    @property
    def records(self) -> list[logging.LogRecord]:
        return self.caplog.records

    def clear(self) -> None:
        self.caplog.clear()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[Logs]:
    caplog.set_level(logging.WARNING)
    yield Logs(caplog)
    logging.getLogger("uvicorn").removeHandler(caplog.handler)


def assert_one_line(records: list[logging.LogRecord], path: str) -> None:
    assert [(r.name, r.levelname) for r in records] == [("gateway.errors", "WARNING")], [
        (r.name, r.getMessage()[:200]) for r in records
    ]
    [record] = records
    assert record.exc_info is None and record.exc_text is None
    message = record.getMessage()
    assert "\n" not in message and "backend unavailable on " in message and path in message


async def test_an_unreachable_database_is_one_log_line(settings: Settings, all_logs: Logs) -> None:
    down = settings.model_copy(
        update={"database_url": UNREACHABLE, "twilio_api_url": "http://127.0.0.1:1"}
    )
    async with serve(create_app(down)) as url:
        all_logs.watch_uvicorn()
        down.public_base_url = url
        form = {"MessageSid": "SM" + "0" * 32, "From": "+14155550100", "To": "+14155550199"}
        signature = RequestValidator(down.twilio_token).compute_signature(f"{url}/twilio/sms", form)
        requests: list[tuple[str, dict[str, Any]]] = [
            # the API key is checked in a middleware, outside Starlette's exception handlers
            ("/v1/plays", {"json": {}, "headers": {"Authorization": "gw_live_whatever"}}),
            # a route: the error is raised inside them
            ("/twilio/sms", {"data": form, "headers": {"X-Twilio-Signature": signature}}),
        ]
        async with httpx.AsyncClient(base_url=url) as client:
            for path, options in requests:
                all_logs.clear()
                response = await client.post(path, **options)
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "5"
                assert response.json()["error"]["code"] == "service_unavailable"
                assert_one_line(all_logs.records, path)


@pytest.mark.skipif(TEST_DATABASE_URL is not None, reason="SQLite's write lock")
async def test_a_locked_sqlite_database_is_one_log_line(
    settings: Settings,
    issued_key: accounts.IssuedKey,
    all_logs: Logs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_SECONDS", 1)  # the app's engine waits 1 s, not 20
    path = make_url(settings.database).database
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        async with serve(create_app(settings)) as url:
            all_logs.watch_uvicorn()
            holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the timeout
            all_logs.clear()
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.post(
                    "/v1/plays",
                    json={"playbook_id": "pb", "lead": {"phone": "+14155550123"}},
                    headers={"Authorization": issued_key.secret},
                )
            holder.execute("ROLLBACK")
            assert response.status_code == 503, response.text
            assert_one_line(all_logs.records, "/v1/plays")
    finally:
        holder.close()


async def test_what_counts_as_an_outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real errors from a real SQLite: locked is an outage (503), a bad statement is a bug (500),
    and so is an OSError that isn't about a connection."""
    monkeypatch.setattr(db, "SQLITE_BUSY_SECONDS", 1)
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    engine = db.create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        with pytest.raises(DBAPIError) as bad_column:
            async with engine.connect() as connection:
                await connection.exec_driver_sql("SELECT nope FROM t")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(DBAPIError) as locked:
            async with engine.connect() as connection:
                await connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        holder.close()
        await engine.dispose()
    assert is_unavailable(locked.value)
    assert not is_unavailable(bad_column.value)
    assert is_unavailable(ConnectionRefusedError()) and is_unavailable(TimeoutError())
    assert not is_unavailable(FileNotFoundError()) and not is_unavailable(PermissionError())
