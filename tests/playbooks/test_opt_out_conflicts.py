"""Validation tells every problem at once, and warns about branches the opt-out rules take away."""

from __future__ import annotations

from pathlib import Path

from compliance.keywords import classify
from gateway.playbooks import AskStep, parse_playbook, validate_document, validate_playbook
from tests.playbooks.support import ask, doc, issues, send, warnings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_structural_and_semantic_errors_come_in_one_answer() -> None:
    data = doc(
        ask(
            "q",
            {"keywords": ["yes"], "goto": "nowhere", "colour": "red"},
            {"keywords": ["no"], "outcome": "undeclared"},
            text="Hi {settings.agnt}",
        ),
        {"id": "b", "kind": "sned", "text": "hi"},
        {"id": "w", "kind": "wait", "duration": "forever"},
        activitis={},
    )
    report = validate_playbook(data)
    assert report.playbook is None
    assert sorted(issues(report)) == sorted(
        [
            # structural (pydantic)
            ("steps[0].choices[0].colour", "unknown_field"),
            ("steps[1].kind", "bad_kind"),
            ("steps[2].duration", "bad_duration"),
            ("activitis", "unknown_field"),
            # semantic, found in the same answer
            ("steps[0].choices[0].goto", "unknown_step"),
            ("steps[0].choices[1].outcome", "undeclared_outcome"),
            ("steps[0].text", "unknown_variable"),
        ]
    )


def test_references_to_a_step_with_errors_still_resolve() -> None:
    # Step "b" is broken, but `goto: b` names a step that exists: no unknown_step error.
    data = doc(
        ask("q", {"keywords": ["yes"], "goto": "b"}, {"keywords": ["no"], "goto": "end"}),
        {"id": "b", "kind": "send", "text": "hi", "delay": "soon"},
    )
    assert issues(validate_playbook(data)) == [("steps[1].delay", "bad_duration")]


def test_an_accepted_opt_out_is_a_warning_naming_step_and_choice() -> None:
    data = doc(
        ask(
            "interested",
            {"keywords": ["yes"]},
            {"keywords": ["no", "not interested"], "outcome": "unqualified"},
            {"patterns": ["^remove"], "examples": ["remove me"], "outcome": "unqualified"},
            {"keywords": ["help"], "goto": "end"},
        )
    )
    report = validate_playbook(data)
    assert report.ok  # a warning: the lead's opt-out is honoured either way
    assert warnings(report) == [
        ("steps[0].choices[1].keywords[1]", "opt_out_response"),
        ("steps[0].choices[2].examples[0]", "opt_out_response"),
        ("steps[0].choices[3].keywords[0]", "keyword_response"),
    ]
    message = report.warnings[0].message
    assert "step 'interested', choice 2" in message and "'not interested'" in message


def test_the_old_mortgage_example_is_warned_about() -> None:
    old = (
        (EXAMPLES / "mortgage-qualification.yaml")
        .read_text()
        .replace("keywords: [not really, no,", "keywords: [not really, not interested, no,")
    )
    report = validate_document(old)
    assert report.ok
    assert warnings(report) == [("steps[0].choices[0].keywords[1]", "opt_out_response")]


def test_every_example_branch_is_reachable_by_its_accepted_responses() -> None:
    """The inbound path's own functions, in its order: compliance first, then the playbook."""
    checked = 0
    for path in sorted(EXAMPLES.glob("*.yaml")):
        playbook = parse_playbook(path.read_text())
        assert validate_document(path.read_text()).warnings == [], path.name
        for step in playbook.steps:
            if not isinstance(step, AskStep):
                continue
            for j, choice in enumerate(step.choices):
                responses = [*choice.keywords, *choice.examples]
                assert responses, f"{path.name} {step.id} choice {j + 1} has nothing to reply"
                for text in responses:
                    assert classify(text).kind is None, (path.name, step.id, text)
                    action = playbook.read_reply(step.id, text)
                    assert action is not None and action.index == j, (path.name, step.id, text)
                    checked += 1
    assert checked > 80


def test_send_steps_are_not_checked() -> None:
    assert warnings(validate_playbook(doc(send("a", text="Reply STOP to opt out")))) == []
