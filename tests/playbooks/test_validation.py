"""Every error and warning kind, with the exact path it points at."""

from typing import Any

import pytest

from gateway.playbooks import validate_playbook
from tests.playbooks.support import ask, doc, issues, only_error, outcome, send, warnings


def test_a_minimal_playbook_is_valid() -> None:
    report = validate_playbook(doc())
    assert report.ok, report.errors
    assert report.warnings == []
    assert report.playbook is not None


def test_not_a_mapping() -> None:
    report = validate_playbook(["steps"])
    assert issues(report) == [("", "invalid")]


# -- structure (pydantic) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "code"),
    [
        ({**doc(), "nmae": "x"}, "nmae", "unknown_field"),
        (doc(send("a", delya="5m")), "steps[0].delya", "unknown_field"),
        (doc(send("a", delay="soon")), "steps[0].delay", "bad_duration"),
        (doc(send("a", delay="-5m")), "steps[0].delay", "bad_duration"),
        (doc(send("a", delay=30)), "steps[0].delay", "bad_duration"),
        (doc({"id": "a", "text": "hi"}), "steps[0].kind", "missing_field"),
        (doc({"id": "a", "kind": "sned", "text": "hi"}), "steps[0].kind", "bad_kind"),
        (doc({"kind": "send", "text": "hi"}), "steps[0].id", "missing_field"),
        (doc(send("a b")), "steps[0].id", "invalid"),
        (doc(send("a", text="Hi {lead.first_name")), "steps[0].text", "template_syntax"),
        (doc(send("a", text="Hi {user.name}")), "steps[0].text", "template_syntax"),
        (doc(send("a", text="")), "steps[0].text", "invalid"),
        (doc(send("a", text="x" * 1601)), "steps[0].text", "invalid"),
        (
            doc(ask("q", {"patterns": ["(unclosed"], "goto": "end"})),
            "steps[0].choices[0].patterns[0]",
            "bad_pattern",
        ),
        (doc(ask("q", {"keywords": ["!!!"]})), "steps[0].choices[0].keywords[0]", "bad_keyword"),
        (
            doc(ask("q", {"keywords": ["x"], "event": "Bad-Label"})),
            "steps[0].choices[0].event",
            "invalid",
        ),
        (
            doc(ask("q", {"keywords": ["x"], "parser": "money2", "capture": "a"})),
            "steps[0].choices[0].parser",
            "invalid",
        ),
        (
            doc({"id": "q", "kind": "ask", "text": "?", "choices": []}),
            "steps[0].choices",
            "invalid",
        ),
        (
            doc({"id": "g", "kind": "goto", "playbook": "X-Date!"}),
            "steps[0].playbook",
            "bad_playbook_id",
        ),
        (
            doc({"id": "g", "kind": "goto", "playbook": "-xdate"}),
            "steps[0].playbook",
            "bad_playbook_id",
        ),
        (doc({"id": "w", "kind": "wait"}), "steps[0].duration", "missing_field"),
        (doc({"id": "w", "kind": "wait", "duration": "1x"}), "steps[0].duration", "bad_duration"),
        (
            doc({"id": "o", "kind": "outcome", "outcome": "qualified", "next": "a"}),
            "steps[0].next",
            "unknown_field",
        ),
        (doc(settings={"agent name": "x"}), "settings.agent name", "invalid"),
        (doc(settings={"agent_name": ["x"]}), "settings.agent_name", "bad_setting"),
        (doc(steps=[]), "steps", "invalid"),
        (doc(on_failure="retry"), "on_failure", "invalid"),
        (
            doc(reengagement={"after": "tomorrow", "text": "hi"}),
            "reengagement.after",
            "bad_duration",
        ),
        (doc(reengagement={"after": "1d", "max": 0, "text": "hi"}), "reengagement.max", "invalid"),
        (doc(email={"from": "not an address"}), "email.from", "bad_email"),
        (doc(activities={"outcomes": ["Qualified"]}), "activities.outcomes[0]", "invalid"),
        (doc(expects_additional_info=["loan amount"]), "expects_additional_info[0]", "invalid"),
    ],
)
def test_structural_errors(data: dict[str, Any], path: str, code: str) -> None:
    report = validate_playbook(data)
    assert (path, code) in issues(report), report.errors


def test_unknown_field_suggests_the_right_name() -> None:
    error = only_error(doc(send("a", delya="5m")))
    assert error.message == "unknown field 'delya' (did you mean 'delay'?)"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (doc(ask("q", {"keywords": ["!!!"]})), "keyword '!!!' has no letters, digits or emoji"),
        (doc({"id": "g", "kind": "goto", "playbook": "X-Date!"}), "'X-Date!' is not a playbook id"),
        (doc(email={"from": "nobody"}), "'nobody' is not an email address"),
        (doc(outcome("o") | {"next": "a"}), "field 'next' doesn't belong here"),
        (doc(steps=[]), "a playbook needs at least one step"),
        (doc(send("a b")), "'a b': step ids use letters, digits, '-' and '_'"),
    ],
)
def test_structural_messages(data: dict[str, Any], message: str) -> None:
    assert only_error(data).message.startswith(message)


def test_bad_duration_message_is_human() -> None:
    error = only_error(doc(send("a", delay="1.5h")))
    assert error.message == "'1.5h': use whole numbers, e.g. 1h30m instead of 1.5h"


def test_unknown_kind_message_lists_kinds() -> None:
    error = only_error(doc({"id": "a", "kind": "sned", "text": "hi"}))
    assert "did you mean 'send'?" in error.message
    assert "send, ask, call, wait, goto, outcome" in error.message


# -- references and flow --------------------------------------------------------------------


def test_unknown_goto_and_next() -> None:
    data = doc(
        send("a", next="b"),
        ask("b", {"keywords": ["yes"], "goto": "c"}, {"keywords": ["no"], "goto": "finsh"}),
        outcome("finish"),
        send("c", next="nowhere"),
    )
    report = validate_playbook(data)
    assert issues(report, "unknown_step") == [
        ("steps[1].choices[1].goto", "unknown_step"),
        ("steps[3].next", "unknown_step"),
    ]
    assert "did you mean 'finish'?" in report.errors[0].message


def test_end_is_a_target() -> None:
    assert validate_playbook(doc(send("a", next="end"), send("b"))).ok


def test_duplicate_and_reserved_step_ids() -> None:
    report = validate_playbook(doc(send("a"), send("b"), send("a"), send("end")))
    assert issues(report) == [
        ("steps[2].id", "duplicate_step"),
        ("steps[3].id", "reserved_id"),
    ]
    assert "already used by steps[0]" in report.errors[0].message


def test_unreachable_steps_are_warnings() -> None:
    report = validate_playbook(doc(send("a", next="c"), send("b"), outcome("c")))
    assert report.ok
    assert warnings(report) == [("steps[1]", "unreachable_step")]


def test_after_outcome_choices_only_is_unreachable() -> None:
    data = doc(ask("q", {"keywords": ["no"], "outcome": "unqualified"}), send("after"))
    assert warnings(validate_playbook(data), "unreachable_step") == [
        ("steps[1]", "unreachable_step")
    ]


def test_loop_without_lead_input_is_an_error() -> None:
    report = validate_playbook(doc(send("a"), send("b", next="a")))
    assert issues(report) == [("steps[1].next", "loop_without_input")]
    assert "a -> b" in report.errors[0].message


def test_self_loop_is_an_error() -> None:
    report = validate_playbook(doc(send("a", next="a")))
    assert issues(report) == [("steps[0].next", "loop_without_input")]


def test_loop_through_an_ask_is_fine() -> None:
    data = doc(
        send("a"),
        ask(
            "b",
            {"keywords": ["again"], "goto": "a"},
            {"keywords": ["enough"], "outcome": "unqualified"},
        ),
    )
    report = validate_playbook(data)
    assert report.ok and report.warnings == []


def test_loop_with_a_wait_is_a_warning() -> None:
    data = doc(send("a"), {"id": "w", "kind": "wait", "duration": "1d", "next": "a"})
    report = validate_playbook(data)
    assert report.ok
    assert warnings(report) == [("steps[1].next", "timed_loop")]


def test_loop_with_a_delayed_send_is_a_warning() -> None:
    report = validate_playbook(doc(send("a"), send("b", delay="1d", next="a")))
    assert warnings(report) == [("steps[1].next", "timed_loop")]


# -- step fields ----------------------------------------------------------------------------


def test_sms_and_email_fields() -> None:
    data = doc(
        {"id": "a", "kind": "send"},
        {"id": "b", "kind": "send", "text": "hi", "subject": "s", "from": "a@b.co"},
        {"id": "c", "kind": "send", "channel": "email", "text": "hi", "subject": "s"},
        email={"from": "Acme <hi@acme.com>"},
    )
    report = validate_playbook(data)
    assert issues(report) == [
        ("steps[0].text", "missing_field"),
        ("steps[1].subject", "sms_field"),
        ("steps[1].from", "sms_field"),
        ("steps[2].text", "email_field"),
        ("steps[2].body", "missing_field"),
    ]


def test_email_without_sender_warns() -> None:
    data = doc({"id": "e", "kind": "send", "channel": "email", "subject": "s", "body": "b"})
    assert warnings(validate_playbook(data)) == [("steps[0].from", "no_sender")]


@pytest.mark.parametrize(
    ("choice", "path", "code"),
    [
        ({"goto": "end"}, "steps[0].choices[0]", "no_match"),
        (
            {"keywords": ["x"], "parser": "money"},
            "steps[0].choices[0].parser",
            "parser_without_capture",
        ),
        (
            {"keywords": ["x"], "outcome": "qualified", "goto": "end"},
            "steps[0].choices[0].goto",
            "outcome_and_goto",
        ),
    ],
)
def test_choice_errors(choice: dict[str, Any], path: str, code: str) -> None:
    assert issues(validate_playbook(doc(ask("q", choice)))) == [(path, code)]


@pytest.mark.parametrize("pattern", ["(a+)+$", "^(a|a)*$"])
def test_backtracking_shapes_publish_cleanly_on_re2(pattern: str) -> None:
    # RE2 matches them in linear time (tests/playbooks/test_patterns.py), so no warning.
    report = validate_playbook(doc(ask("q", {"patterns": [pattern], "goto": "end"})))
    assert report.ok, report.errors
    assert warnings(report) == []


def test_zero_reengagement_and_empty_wait() -> None:
    data = doc(
        {"id": "w", "kind": "wait", "duration": "immediately"},
        send("a"),
        reengagement={"after": "0s", "text": "hi"},
    )
    report = validate_playbook(data)
    assert issues(report) == [("reengagement.after", "bad_duration")]
    assert warnings(report) == [("steps[0].duration", "empty_wait")]


# -- activity labels ------------------------------------------------------------------------


def test_undeclared_outcome_and_event() -> None:
    data = doc(
        ask(
            "q",
            {"keywords": ["yes"], "outcome": "qualifed"},
            {"keywords": ["maybe"], "event": "maybe_later", "goto": "done"},
            {"keywords": ["human"], "event": "talk_to_human", "goto": "done"},
        ),
        outcome("done", "scheduled"),
    )
    report = validate_playbook(data)
    assert issues(report) == [
        ("steps[0].choices[0].outcome", "undeclared_outcome"),
        ("steps[0].choices[1].event", "undeclared_event"),
        ("steps[1].outcome", "undeclared_outcome"),
    ]
    assert "did you mean 'qualified'?" in report.errors[0].message


def test_event_used_as_outcome_and_back() -> None:
    data = doc(
        ask("q", {"keywords": ["yes"], "event": "qualified", "goto": "done"}),
        outcome("done", "interested"),
    )
    report = validate_playbook(data)
    assert issues(report) == [
        ("steps[0].choices[0].event", "undeclared_event"),
        ("steps[1].outcome", "undeclared_outcome"),
    ]
    assert "it is an outcome; use `outcome:`" in report.errors[0].message
    assert "it is an event; use `event:`" in report.errors[1].message


def test_engine_outcomes_and_custom_events_need_no_or_a_declaration() -> None:
    data = doc(
        ask("q", {"keywords": ["yes"], "event": "rate_quoted", "goto": "done"}),
        outcome("done", "party_line_completed"),
        activities={"events": ["rate_quoted"]},
    )
    assert validate_playbook(data).ok


def test_declared_outcome_clashing_with_an_event() -> None:
    data = doc(activities={"events": ["quoted"], "outcomes": ["quoted", "stopped"]})
    assert issues(validate_playbook(data)) == [
        ("activities.outcomes[0]", "label_clash"),
        ("activities.outcomes[1]", "label_clash"),
    ]


def test_unused_custom_outcome_warns() -> None:
    data = doc(activities={"outcomes": ["qualified", "bought_policy"]})
    assert warnings(validate_playbook(data)) == [("activities.outcomes[1]", "unused_outcome")]
