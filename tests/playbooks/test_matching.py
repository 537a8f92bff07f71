import pytest

from gateway.playbooks import AskStep, match_reply, read_reply, tokens

ASK = AskStep.model_validate(
    {
        "id": "q",
        "kind": "ask",
        "text": "Interested?",
        "choices": [
            {"keywords": ["not interested", "no", "nope", "👎"], "outcome": "unqualified"},
            {"keywords": ["yes", "yep", "sure", "sí", "👍", "of course"], "event": "interested"},
            {"keywords": ["1"], "goto": "one"},
            {"patterns": [r"\b\d{5}\b"], "capture": "zip"},
            {"keywords": ["call"], "patterns": [r"^call\b"], "goto": "call"},
        ],
    }
)
NO, YES, ONE, ZIP, CALL = range(5)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("yes", YES),
        ("YES!!!", YES),
        ("Yes please", YES),
        ("  yes  ", YES),
        ("yes.", YES),
        ("si", YES),
        ("Sí", YES),
        ("SÍ!", YES),
        ("sure thing", YES),
        ("yesss", YES),
        ("YEEESSS", YES),
        ("👍", YES),
        ("👍🏽", YES),
        ("👍👍", YES),
        ("ok 👍", YES),
        ("Of course!", YES),
        ("of, course", YES),  # punctuation separates words like a space does
        ("Ｙｅｓ", YES),  # fullwidth letters
        ("no", NO),
        ("No!", NO),
        ("nooooo", NO),
        ("Not interested, thanks", NO),
        ("I'm not interested", NO),
        ("yes no", NO),  # first declared choice wins, whatever the order in the reply
        ("👎", NO),
        ("1", ONE),
        ("option 1", ONE),
        ("my zip is 78701", ZIP),
        ("Call me", CALL),
        ("yesterday", None),
        ("eyes", None),
        ("noon", None),
        ("nos", None),
        ("yess", None),  # a doubled letter is a typo, not emphasis: too ambiguous to guess
        ("", None),
        ("🤔", None),
        ("10", None),
        ("maybe", None),
    ],
)
def test_match_table(reply: str, expected: int | None) -> None:
    choice = match_reply(ASK, reply)
    if expected is None:
        assert choice is None
    else:
        assert choice is ASK.choices[expected]


def test_read_reply_reports_index_and_capture() -> None:
    found = read_reply(ASK, "78701")
    assert found is not None
    assert found.index == ZIP
    assert found.captured == "78701"


def test_capture_choice_needs_its_parser_to_read_a_value() -> None:
    ask = AskStep.model_validate(
        {
            "id": "amount",
            "kind": "ask",
            "text": "How much?",
            "choices": [
                {"capture": "loan_amount", "parser": "money"},
                {"keywords": ["not sure"], "goto": "help"},
            ],
        }
    )
    found = read_reply(ask, "About $350k")
    assert found is not None and found.captured == 350000
    assert match_reply(ask, "not sure") is ask.choices[1]
    assert match_reply(ask, "no idea") is None


def test_capture_with_keywords_needs_both() -> None:
    ask = AskStep.model_validate(
        {
            "id": "when",
            "kind": "ask",
            "text": "When?",
            "choices": [{"keywords": ["call"], "capture": "time", "parser": "datetime"}],
        }
    )
    assert match_reply(ask, "call me tomorrow") is ask.choices[0]
    assert match_reply(ask, "call me") is None
    assert match_reply(ask, "tomorrow") is None


def test_patterns_are_case_insensitive_on_the_reply_as_written() -> None:
    ask = AskStep.model_validate(
        {"id": "a", "kind": "ask", "text": "?", "choices": [{"patterns": [r"^ok\.$"]}]}
    )
    assert match_reply(ask, "  OK. ") is ask.choices[0]
    assert match_reply(ask, "ok") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("YES!!! 👍🏽", ("yes", "👍")),
        ("Don't text", ("dont", "text")),
        ("Sí, señor", ("si", "senor")),
        ("❤️❤️", ("❤", "❤")),
        ("a\tb\nc", ("a", "b", "c")),
        ("$250k", ("250k",)),
    ],
)
def test_tokens(text: str, expected: tuple[str, ...]) -> None:
    assert tokens(text) == expected


def test_huge_reply_is_bounded() -> None:
    assert match_reply(ASK, "a " * 100_000 + "yes") is None
