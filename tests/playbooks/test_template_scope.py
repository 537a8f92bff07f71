"""Template variables must exist at the step that uses them, on every path to it."""

from typing import Any

import pytest

from gateway.playbooks import validate_playbook
from tests.playbooks.support import ask, doc, issues, outcome, send, warnings


def capture_then(text: str) -> dict[str, Any]:
    """Ask captures `amount` on one branch only; both branches reach `after`."""
    return doc(
        ask(
            "q",
            {"keywords": ["skip"], "goto": "after"},
            {"capture": "amount", "parser": "money", "goto": "after"},
        ),
        send("after", text),
    )


def test_answer_captured_on_one_branch_only_is_an_error() -> None:
    report = validate_playbook(capture_then("You said {answers.amount}"))
    assert issues(report) == [("steps[1].text", "missing_variable")]
    assert "not every path" in report.errors[0].message
    assert "{answers.amount|...}" in report.errors[0].message


def test_a_fallback_makes_it_safe() -> None:
    assert validate_playbook(capture_then("You said {answers.amount|nothing}")).ok


def test_answer_captured_on_every_branch_is_fine() -> None:
    data = doc(
        ask(
            "q",
            {"keywords": ["later"], "capture": "amount", "goto": "after"},
            {"capture": "amount", "parser": "money"},
        ),
        send("after", "You said {answers.amount}"),
    )
    assert validate_playbook(data).ok


def test_answer_captured_nowhere_is_an_error_even_with_a_fallback() -> None:
    report = validate_playbook(doc(send("a", "Hi {answers.amout|x}")))
    assert issues(report) == [("steps[0].text", "unknown_variable")]


def test_answer_used_in_its_own_question_is_missing() -> None:
    data = doc(ask("q", {"capture": "amount", "goto": "end"}, text="You said {answers.amount}?"))
    assert issues(validate_playbook(data)) == [("steps[0].text", "missing_variable")]


def test_choice_reply_sees_its_own_capture() -> None:
    data = doc(ask("q", {"capture": "amount", "reply": "Got {answers.amount}", "goto": "end"}))
    assert validate_playbook(data).ok


def test_capture_reaching_through_a_loop() -> None:
    # q -> r -> back to q: at r the answer exists on every path, at q it doesn't.
    data = doc(
        ask("q", {"capture": "amount", "goto": "r"}),
        ask("r", {"keywords": ["again"], "goto": "q"}, text="Is {answers.amount} right?"),
    )
    assert validate_playbook(data).ok
    data["steps"][0]["text"] = "Was it {answers.amount}?"
    assert issues(validate_playbook(data)) == [("steps[0].text", "missing_variable")]


def test_capture_then_outcome_is_not_a_path() -> None:
    data = doc(
        ask(
            "q",
            {"keywords": ["no"], "capture": "why", "outcome": "unqualified"},
            {"keywords": ["yes"], "goto": "after"},
        ),
        send("after", "Because {answers.why}"),
    )
    assert issues(validate_playbook(data)) == [("steps[1].text", "missing_variable")]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{settings.agent_nme}", "unknown_variable"),
        ("{settings.agent_name.x}", "unknown_variable"),
        ("{lead.nickname}", "unknown_variable"),
        ("{lead.phone.x}", "unknown_variable"),
        ("{lead.additional_info}", "unknown_variable"),
        ("{lead.additional_info.loan_amount}", "missing_variable"),
        ("{answers.amount.x}", "unknown_variable"),
    ],
)
def test_variable_errors(text: str, code: str) -> None:
    report = validate_playbook(doc(send("a", text), ask("b", {"capture": "amount", "goto": "end"})))
    assert issues(report) == [("steps[0].text", code)]


def test_unknown_setting_suggests() -> None:
    report = validate_playbook(doc(send("a", "{settings.agent_nme}")))
    assert "did you mean 'agent_name'?" in report.errors[0].message


@pytest.mark.parametrize(
    "text",
    [
        "{lead.additional_info.loan_amount|a good amount}",
        "{lead.additional_info.loan_amount|}",
        "{lead.additional_info.vehicle.make|your car}",
        "{lead.phone}",
        "{settings.partner_name}",
    ],
)
def test_resolvable_variables(text: str) -> None:
    report = validate_playbook(doc(send("a", text)))
    assert report.ok and report.warnings == []


def test_expects_additional_info_declares_keys() -> None:
    data = doc(
        send("a", "{lead.additional_info.loan_amount} / {lead.additional_info.vehicle.make}"),
        expects_additional_info=["loan_amount", "vehicle.make"],
    )
    assert validate_playbook(data).ok


def test_a_capture_fills_additional_info_too() -> None:
    data = doc(ask("q", {"capture": "amount"}), send("a", "{lead.additional_info.amount}"))
    assert validate_playbook(data).ok


def test_optional_lead_field_without_fallback_warns() -> None:
    report = validate_playbook(doc(send("a", "Hi {lead.first_name}")))
    assert report.ok
    assert warnings(report) == [("steps[0].text", "optional_lead_field")]


def test_every_template_field_is_checked() -> None:
    bad = "{settings.nope}"
    data = doc(
        ask(
            "q",
            {"keywords": ["x"], "reply": bad},
            text=bad,
            catch_all={"level1": bad, "level2": bad, "level3": bad},
        ),
        {
            "id": "e",
            "kind": "send",
            "channel": "email",
            "subject": bad,
            "body": bad,
            "from": "a@b.co",
        },
        {"id": "c", "kind": "call", "whisper": bad, "topic": bad},
        reengagement={"after": "1d", "text": bad},
    )
    assert sorted(p for p, _ in issues(validate_playbook(data))) == sorted(
        [
            "steps[0].text",
            "steps[0].choices[0].reply",
            "steps[0].catch_all.level1",
            "steps[0].catch_all.level2",
            "steps[0].catch_all.level3",
            "steps[1].subject",
            "steps[1].body",
            "steps[2].whisper",
            "steps[2].topic",
            "reengagement.text",
        ]
    )


def test_playbook_catch_all_is_checked_at_each_ask() -> None:
    data = doc(
        ask("q", {"capture": "amount", "parser": "money"}),
        ask("r", {"keywords": ["ok"], "goto": "end"}),
        catch_all={"level2": "About {answers.amount}?"},
    )
    report = validate_playbook(data)
    # fine at r (amount captured on every path), not at q
    assert issues(report) == [("catch_all.level2", "missing_variable")]
    assert "at step 'q'" in report.errors[0].message


def test_reengagement_cannot_rely_on_answers() -> None:
    data = doc(
        ask("q", {"capture": "amount"}),
        send("a", "ok"),
        reengagement={"after": "1d", "text": "About {answers.amount}?"},
    )
    assert issues(validate_playbook(data)) == [("reengagement.text", "missing_variable")]


def test_unreachable_steps_skip_scope_checks() -> None:
    data = doc(outcome("done"), send("never", "{answers.x|y}"), ask("z", {"capture": "x"}))
    report = validate_playbook(data)
    assert report.ok
