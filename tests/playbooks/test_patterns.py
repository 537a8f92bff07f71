"""Reply patterns run on RE2: linear time whatever the pattern or the lead's text; patterns RE2
can't run are refused at publish, and match nothing in playbooks stored before."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import re2  # type: ignore[import-untyped]

from gateway.playbooks import AskStep, Playbook, load_document, read_reply, validate_playbook
from gateway.playbooks.patterns import compiled, pattern_error, search
from tests.playbooks.support import ask, doc, issues

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# With Python's `re` each of these takes time doubling per "a" (24 "a"s held a reply 4.8 s).
EVIL = "a" * 5000 + "!"


@pytest.mark.parametrize("pattern", ["^(a|a)*$", "(a+)+$"])
def test_backtracking_patterns_match_promptly_on_re2(pattern: str) -> None:
    found = compiled(pattern)
    assert isinstance(found, re2._Regexp)  # RE2's compiled type, not re.Pattern
    assert search(pattern, EVIL) is False
    assert search(pattern, "a" * 5000) is True
    step = AskStep.model_validate(
        {"id": "q", "kind": "ask", "text": "?", "choices": [{"patterns": [pattern]}]}
    )
    # A reply is read up to matching.MAX_REPLY (2000) characters.
    assert read_reply(step, "a" * 1500 + "!") is None
    hit = read_reply(step, "AAAA")  # case-insensitive, as before
    assert hit is not None and hit.index == 0


def test_compiled_patterns_are_cached() -> None:
    assert compiled(r"\bcall\b") is compiled(r"\bcall\b")


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", r"invalid escape sequence: \1"),
        (r"\bmay\b(?!\s+be)", "invalid perl operator: (?!"),
        (r"(?<=x)y", "invalid perl operator: (?<"),
        (r"a++", "bad repetition operator: ++"),
        (r"(unclosed", "missing )"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_naming_where(pattern: str, reason: str) -> None:
    data = doc(ask("q", {"keywords": ["yes"]}, {"patterns": [pattern], "goto": "end"}))
    report = validate_playbook(data)
    assert issues(report) == [("steps[0].choices[1].patterns[0]", "bad_pattern")]
    message = report.errors[0].message
    assert "step 'q', choice 2" in message and reason in message
    assert pattern_error(pattern) is not None


def test_examples_patterns_run_on_re2() -> None:
    found = 0
    for path in EXAMPLES.glob("*.yaml"):
        for step in load_document(path.read_text())["steps"]:
            for choice in step.get("choices", []):
                for pattern in choice.get("patterns", []):
                    assert compiled(pattern) is not None, (path.name, pattern)
                    found += 1
    assert found >= 3


def test_a_stored_playbook_with_a_pattern_re2_cannot_run_matches_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As stored before RE2: the model still loads it (no crash in the reply job) ...
    stored = doc(
        ask(
            "q",
            {"patterns": [r"\bmay\b(?!\s+be)"], "goto": "end"},
            {"keywords": ["may"], "outcome": "unqualified"},
        )
    )
    playbook = Playbook.model_validate(stored)
    with caplog.at_level(logging.WARNING, logger="gateway.playbooks.patterns"):
        # ... the unrunnable pattern matches nothing, so the next choice (or the catch-all) answers.
        action = playbook.read_reply("q", "May")
        assert action is not None and action.index == 1
        assert playbook.read_reply("q", "June") is None
    assert "can't run on RE2" in caplog.text
