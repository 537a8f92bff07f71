"""CLOCK_AHEAD_SECONDS: a process's clock run ahead of the wall clock, so benchmarks against a
sandbox can text inside quiet hours' window at any hour; refused wherever a text could reach a
real phone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from gateway import accounts, clock, gate
from gateway.app import create_app
from gateway.db import SessionFactory
from gateway.models import Account
from gateway.settings import Settings

PHONE = "+14155550123"  # San Francisco: America/Los_Angeles
PACIFIC = ZoneInfo("America/Los_Angeles")
TWILIO = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "x" * 32}


@pytest.fixture(autouse=True)
def _wall_clock_after() -> Iterator[None]:
    yield
    clock.run_ahead(0)  # the clock is the process's: leave it as the next test expects


def _ahead_to(hour: int) -> float:
    """Seconds from now to the next `hour`:00 in Los Angeles."""
    local = datetime.now(UTC).astimezone(PACIFIC)
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    return (target - local).total_seconds()


@pytest.mark.parametrize("hour", [12, 22])
async def test_the_gate_reads_the_clock_the_app_runs_ahead(
    settings: Settings, sessions: SessionFactory, issued_key: accounts.IssuedKey, hour: int
) -> None:
    ahead = settings.model_copy(update={"clock_ahead_seconds": _ahead_to(hour)})
    with TestClient(create_app(ahead)):  # its startup sets the process's clock
        async with sessions() as session:
            account = await session.get(Account, issued_key.key.account_id)
            assert account is not None
            decision = await gate.decide(
                session, account, PHONE, channel="sms", purpose="initiated"
            )
    # Whatever the real hour: noon in Los Angeles lets a text go, 22:00 holds it till morning.
    assert decision.action == ("allow" if hour == 12 else "defer"), decision
    assert abs((clock.now() - datetime.now(UTC)).total_seconds() - _ahead_to(hour)) < 5


@pytest.mark.parametrize(
    "update",
    [
        {},  # the built-in sandbox
        {**TWILIO, "twilio_api_url": "http://127.0.0.1:9999"},
        {**TWILIO, "twilio_api_url": "http://localhost:9999/sandbox"},
    ],
    ids=["built-in-sandbox", "sandbox-on-127.0.0.1", "sandbox-on-localhost"],
)
def test_allowed_against_a_sandbox_on_this_machine(
    settings: Settings, update: dict[str, str]
) -> None:
    values = {**settings.model_dump(), **update, "clock_ahead_seconds": 3600}
    assert Settings(**values, _env_file=None).clock_ahead_seconds == 3600  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "update",
    [
        TWILIO,
        {**TWILIO, "twilio_api_url": "https://api.twilio.example"},
        {**TWILIO, "environment": "production"},
        {**TWILIO, "environment": "production", "twilio_api_url": "http://127.0.0.1:9999"},
    ],
    ids=["twilio", "elsewhere", "production", "production-sandbox"],
)
def test_refused_where_a_text_could_reach_a_phone(
    settings: Settings, update: dict[str, str]
) -> None:
    values = {**settings.model_dump(), **update, "clock_ahead_seconds": 3600}
    with pytest.raises(ValidationError, match="CLOCK_AHEAD_SECONDS"):
        Settings(**values, _env_file=None)  # type: ignore[call-arg]
    values["clock_ahead_seconds"] = 0
    assert Settings(**values, _env_file=None).clock_ahead_seconds == 0  # type: ignore[call-arg]
