import json

import pytest

from gateway.playbooks import (
    AskStep,
    PlaybookInvalid,
    load_document,
    parse_playbook,
    validate_document,
)

YAML = """
name: Tiny
settings:
  partner_name: Acme
  zip: 02134
  time: 1:30
  launched: 2024-05-01
  active: yes
  enabled: true
  rate: 6.5
  count: 3
steps:
  - id: q
    kind: ask
    text: "Hi from {settings.partner_name}! Still interested?"
    choices:
      - keywords: [yes, y, on, "sí"]
        goto: end
      - keywords: [no, off, 2]
        goto: end
"""


def test_yaml_uses_yaml_12_scalars() -> None:
    data = load_document(YAML)
    assert data["settings"] == {
        "partner_name": "Acme",
        "zip": "02134",
        "time": "1:30",
        "launched": "2024-05-01",
        "active": "yes",
        "enabled": True,
        "rate": 6.5,
        "count": 3,
    }
    playbook = parse_playbook(YAML)
    step = playbook.step("q")
    assert isinstance(step, AskStep)
    assert step.choices[0].keywords == ["yes", "y", "on", "sí"]
    assert step.choices[1].keywords == ["no", "off", "2"]


def test_json_parses_to_the_same_playbook() -> None:
    from_yaml = parse_playbook(YAML)
    text = json.dumps(load_document(YAML))
    assert parse_playbook(text, format="json") == from_yaml
    assert parse_playbook(text) == from_yaml  # guessed from the leading '{'


def test_dump_and_reparse_roundtrips() -> None:
    playbook = parse_playbook(YAML)
    dumped = playbook.model_dump_json(by_alias=True, exclude_none=True)
    assert parse_playbook(dumped) == playbook


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("name: [unclosed", None, "YAML error at line 1"),
        ("name: x\nname: y\n", None, "duplicate key 'name'"),
        ('{"name": "x", "name": "y"}', None, "duplicate key 'name'"),
        ('{"name": }', None, "JSON syntax error at line 1, column 10"),
        ("a: &x [1]\nb: *x\n", None, "aliases"),
        ("name: x", "json", "JSON syntax error"),
    ],
)
def test_syntax_errors(text: str, fmt: str | None, message: str) -> None:
    report = validate_document(text, format=fmt)  # type: ignore[arg-type]
    assert [(i.path, i.code) for i in report.errors] == [("", "syntax")]
    assert message in report.errors[0].message


def test_duplicate_key_inside_a_step() -> None:
    text = "name: x\nsteps:\n  - id: a\n    kind: send\n    text: hi\n    text: again\n"
    report = validate_document(text)
    assert "duplicate key 'text'" in report.errors[0].message
    assert "line 6" in report.errors[0].message


def test_huge_documents_are_refused() -> None:
    report = validate_document("#" * 1_000_001)
    assert "larger than" in report.errors[0].message


def test_empty_document() -> None:
    report = validate_document("")
    assert [(i.path, i.code) for i in report.errors] == [("", "invalid")]


def test_parse_playbook_raises_with_the_report() -> None:
    with pytest.raises(PlaybookInvalid) as caught:
        parse_playbook("name: x\nsteps:\n  - {id: a, kind: send, text: hi, next: b}\n")
    assert caught.value.report.errors[0].path == "steps[0].next"
    assert "steps[0].next: unknown step 'b'" in str(caught.value)


def test_report_to_dict() -> None:
    report = validate_document("name: x\nsteps:\n  - {id: a, kind: send, text: hi, next: b}\n")
    assert report.to_dict() == {
        "valid": False,
        "errors": [
            {
                "field": "steps[0].next",
                "code": "unknown_step",
                "message": "unknown step 'b'; use a step id or 'end'",
            }
        ],
        "warnings": [],
    }
