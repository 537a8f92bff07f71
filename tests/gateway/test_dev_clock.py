"""The dev clock (gateway/dev_clock.py): with the built-in sandbox in development, the gateway's
clock and the sandbox's move forward together; with Twilio credentials or in production it
never moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway import dev_clock
from gateway.clock import now
from gateway.settings import Settings
from twilio_sandbox import Sandbox

DAY = timedelta(days=1)
TWILIO = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "x" * 32}


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sandbox = Sandbox()
    sandbox.start_realtime()  # as `gateway run` serves it
    try:
        yield sandbox
    finally:
        dev_clock.release()
        await sandbox.aclose()


async def test_a_day_forward_moves_both_clocks(settings: Settings, sandbox: Sandbox) -> None:
    assert settings.uses_sandbox and settings.environment == "development"
    before = datetime.now(UTC)
    await dev_clock.skip(settings, sandbox, DAY.total_seconds())
    assert now() >= before + DAY
    # The sandbox's real-time driver catches up with the wall clock at least once a second,
    # and that step may run a little late: up to a second and a bit behind.
    assert sandbox.now() >= before + DAY - timedelta(seconds=2)
    assert sandbox.scheduler.skipped == DAY.total_seconds()
    with pytest.raises(ValueError):
        await dev_clock.skip(settings, sandbox, -3600)
    dev_clock.release()
    assert now() < before + DAY  # the wall clock again


@pytest.mark.parametrize(
    "update",
    [TWILIO, {**TWILIO, "environment": "production"}],
    ids=["twilio-credentials", "production"],
)
async def test_the_clock_never_moves_outside_the_sandbox(
    settings: Settings, sandbox: Sandbox, update: dict[str, str]
) -> None:
    live = settings.model_copy(update=update)
    before = datetime.now(UTC)
    with pytest.raises(dev_clock.NotInProduction):
        await dev_clock.skip(live, sandbox, DAY.total_seconds())
    assert now() < before + DAY and sandbox.now() < before + DAY
    assert sandbox.scheduler.skipped == 0


def test_production_settings_have_no_sandbox() -> None:
    # The first guard: production refuses to start without Twilio, so there is no sandbox (and
    # no dev phone page, tests/console/test_dev_phone.py) whose clock could be moved.
    with pytest.raises(ValueError, match="requires TWILIO_ACCOUNT_SID"):
        Settings(environment="production", _env_file=None)
