"""Segment counting at the boundaries the notice crosses: GSM-7 160/153, UCS-2 70/67."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sms import segments
from tests.notice.conftest import NOTICE


@pytest.mark.parametrize(
    ("body", "encoding", "units", "count"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),  # 2 x 153
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("ü" * 160, "GSM-7", 160, 1),  # some accented letters are in the GSM set
        ("ć" * 70, "UCS-2", 70, 1),
        ("ć" * 71, "UCS-2", 71, 2),
        ("ć" * 134, "UCS-2", 134, 2),  # 2 x 67
        ("ć" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # an emoji is two UTF-16 code units
        ("😀" * 36, "UCS-2", 72, 2),
    ],
)
def test_count(body: str, encoding: str, units: int, count: int) -> None:
    assert segments.count(body) == segments.Segments(encoding, units, count)  # type: ignore[arg-type]


def test_the_notice_is_23_gsm_characters() -> None:
    assert segments.count(NOTICE) == segments.Segments("GSM-7", 23, 1)


@pytest.mark.parametrize(
    ("body", "added"),
    [
        ("a" * 137, 0),  # 160: one segment either way
        ("a" * 138, 1),  # 161: the notice adds the second segment
        ("a" * 150, 1),  # the example: 173 characters, 2 segments
        ("a" * 283, 0),  # 306 = 2 x 153
        ("a" * 284, 1),  # 307: a third
        ("ć" * 47, 0),  # UCS-2 70
        ("ć" * 48, 1),  # UCS-2 71
        ("ć" * 111, 0),  # 134 = 2 x 67
        ("ć" * 112, 1),
    ],
)
def test_added_by_the_notice(body: str, added: int) -> None:
    assert segments.added_by(body, NOTICE) == added


def test_a_non_gsm_notice_turns_the_whole_message_ucs2() -> None:
    body = "a" * 60
    assert segments.count(body).count == 1
    assert segments.added_by(body, " Responde ALTO → cancelar") == 1  # "→": UCS-2, 86 units


def _by_each_character(body: str) -> tuple[str, int]:
    """The count as the GSM 03.38 sets define it, one character at a time."""
    if all(ch in segments.GSM_BASIC or ch in segments.GSM_EXTENDED for ch in body):
        return "GSM-7", sum(2 if ch in segments.GSM_EXTENDED else 1 for ch in body)
    return "UCS-2", len(body.encode("utf-16-le")) // 2


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            [*sorted(segments.GSM_BASIC | segments.GSM_EXTENDED), "ć", "😀", "`", "\t"]
        ),
        max_size=400,
    )
)
def test_the_count_agrees_with_the_sets_character_by_character(body: str) -> None:
    found = segments.count(body)
    assert (found.encoding, found.units) == _by_each_character(body)
