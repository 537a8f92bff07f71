"""Validation paths mapped back to the lines of the document they were found in."""

from __future__ import annotations

import json

from gateway.playbooks import validate_document
from gateway.playbooks.lines import issue_line, line_of, path_parts

DOCUMENT = """\
name: Lines
settings:
  agent_name: Jo
additional_info_fields:
  quote.amount: number
steps:
  - id: hi
    kind: ask
    text: "Hi there"
    choices:
      - keywords: [yes]
        outcome: qualified
      - keywords: [no]
        goto: nowhere
  - id: bye
    kind: sned
    text: Bye
"""


def test_path_parts() -> None:
    assert path_parts("steps[3].choices[1].goto") == ["steps", 3, "choices", 1, "goto"]
    assert path_parts("settings.agent_name") == ["settings", "agent_name"]
    assert path_parts("") == []


def test_paths_land_on_the_line_they_were_written() -> None:
    assert line_of(DOCUMENT, "name") == 1
    assert line_of(DOCUMENT, "settings.agent_name") == 3
    assert line_of(DOCUMENT, "steps[0]") == 7
    assert line_of(DOCUMENT, "steps[0].choices[1].goto") == 14
    assert line_of(DOCUMENT, "steps[1].kind") == 16
    # A key holding a dot is one key, not two levels.
    assert line_of(DOCUMENT, "additional_info_fields.quote.amount") == 5


def test_a_missing_field_lands_on_the_deepest_part_that_exists() -> None:
    assert line_of(DOCUMENT, "steps[1].delay") == 15  # the step it is missing from
    assert line_of(DOCUMENT, "steps[9].text") == 6  # no such step: the list
    assert line_of(DOCUMENT, "") is None
    assert line_of("name: [unclosed", "name") is None


def test_the_validators_own_issues_have_lines() -> None:
    report = validate_document(DOCUMENT)
    assert report.errors, "the document has a bad step kind"
    lines = {issue.path: issue_line(DOCUMENT, issue.path, issue.message) for issue in report.errors}
    assert lines["steps[1].kind"] == 16


def test_syntax_errors_take_the_line_from_the_message() -> None:
    broken = "name: x\nsteps:\n  - id: a\n    text: [unclosed\n"
    report = validate_document(broken)
    [issue] = report.errors
    assert issue.code == "syntax" and issue.path == ""
    assert issue_line(broken, issue.path, issue.message) == 5  # where PyYAML noticed


def test_json_documents_too() -> None:
    document = json.dumps(
        {"name": "J", "steps": [{"id": "s", "kind": "send", "text": "Hello"}]}, indent=2
    )
    assert line_of(document, "steps[0].kind") == 6
