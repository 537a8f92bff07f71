import pytest

from gateway.playbooks import parse_capture


@pytest.mark.parametrize(
    ("parser", "text", "expected"),
    [
        ("number", "about 720", 720),
        ("number", "1,250.5", 1250.5),
        ("number", "-3", -3),
        ("number", "none", None),
        ("money", "$250k", 250_000),
        ("money", "250K", 250_000),
        ("money", "350,000", 350_000),
        ("money", "$350,000.00", 350_000),
        ("money", "1.2 million", 1_200_000),
        ("money", "around 1.5m", 1_500_000),
        ("money", "400 thousand", 400_000),
        ("money", "20 grand", 20_000),
        ("money", "99.95", 99.95),
        ("money", "not sure", None),
        ("text", "  Blue   Honda ", "Blue Honda"),
        ("text", "   ", None),
        ("text", "x" * 501, None),
        ("datetime", "tomorrow at 3pm", "tomorrow at 3pm"),
        ("datetime", "after 5", "after 5"),
        ("datetime", "Friday", "Friday"),
        ("datetime", "3:30", "3:30"),
        ("datetime", "5/12", "5/12"),
        ("datetime", "mañana por la tarde", "mañana por la tarde"),
        ("datetime", "whenever", None),
        ("datetime", "call me", None),
    ],
)
def test_parsers(parser: str, text: str, expected: object) -> None:
    assert parse_capture(parser, text) == expected  # type: ignore[arg-type]
