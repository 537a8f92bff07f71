"""The status-check schedule (gateway/sms/status_schedule.py): when a sent text without a final
status is asked for again, counted from its last status change, and where that ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.sms.status_schedule import CHECK_OFFSETS, CHECKS_END, first_check, next_check

CHANGED = datetime(2026, 11, 18, 20, 0, tzinfo=UTC)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


def test_backs_off_then_every_twelve_hours_up_to_the_bound() -> None:
    assert CHECK_OFFSETS == (
        5 * MINUTE,
        20 * MINUTE,
        HOUR + 20 * MINUTE,
        5 * HOUR + 20 * MINUTE,
        17 * HOUR + 20 * MINUTE,
        29 * HOUR + 20 * MINUTE,
        41 * HOUR + 20 * MINUTE,
        53 * HOUR + 20 * MINUTE,
        65 * HOUR + 20 * MINUTE,
        CHECKS_END,
    )
    assert CHECKS_END == 72 * HOUR
    assert first_check(CHANGED) == CHANGED + 5 * MINUTE


def test_next_check_follows_the_schedule_and_ends() -> None:
    at = CHANGED
    seen = []
    while (following := next_check(CHANGED, at)) is not None:
        seen.append(following - CHANGED)
        at = following
    assert tuple(seen) == CHECK_OFFSETS
    assert next_check(CHANGED, CHANGED + CHECKS_END) is None


def test_a_worker_back_after_a_day_goes_on_from_where_the_schedule_stands() -> None:
    # Checks missed while no worker ran are not replayed one by one.
    assert next_check(CHANGED, CHANGED + 24 * HOUR) == CHANGED + 29 * HOUR + 20 * MINUTE
    assert next_check(CHANGED, CHANGED + 10 * 24 * HOUR) is None
