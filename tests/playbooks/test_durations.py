from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.playbooks import format_duration, parse_duration
from gateway.playbooks.durations import MAX_DURATION


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("immediately", timedelta(0)),
        ("Immediately", timedelta(0)),
        ("now", timedelta(0)),
        ("0s", timedelta(0)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        (" 1h 30m ", timedelta(hours=1, minutes=30)),
        ("1 hour 30 minutes", timedelta(hours=1, minutes=30)),
        ("3 days", timedelta(days=3)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-5m", "can't be negative"),
        ("soon", "not a duration"),
        ("", "empty duration"),
        ("30", "has no unit"),
        ("1.5h", "whole numbers"),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("5y", "unknown unit"),
        ("5 fortnights", "unknown unit"),
        ("1h30", "not a duration"),
        ("800d", "too long"),
        ("99999999999999d", "too long"),
    ],
)
def test_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="has no unit"):
        parse_duration(30)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a string"):
        parse_duration(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "immediately"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=9), "1w2d"),
        (timedelta(seconds=61), "1m1s"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_format_rejects_what_it_cannot_spell() -> None:
    with pytest.raises(ValueError):
        format_duration(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        format_duration(timedelta(milliseconds=5))


whole_seconds = st.integers(min_value=0, max_value=int(MAX_DURATION.total_seconds())).map(
    lambda s: timedelta(seconds=s)
)


@given(whole_seconds)
def test_format_then_parse_roundtrips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(
    st.lists(
        st.tuples(st.sampled_from("wdhms"), st.integers(min_value=0, max_value=50)),
        min_size=1,
        max_size=5,
        unique_by=lambda part: part[0],
    )
)
def test_parse_then_format_is_canonical(parts: list[tuple[str, int]]) -> None:
    parts.sort(key=lambda part: "wdhms".index(part[0]))
    text = "".join(f"{n}{unit}" for unit, n in parts)
    value = parse_duration(text)
    assert parse_duration(format_duration(value)) == value
    assert format_duration(parse_duration(format_duration(value))) == format_duration(value)


@given(st.text(max_size=20))
def test_garbage_never_crashes_with_anything_but_value_error(text: str) -> None:
    try:
        result = parse_duration(text)
    except ValueError:
        return
    assert timedelta(0) <= result <= MAX_DURATION
