"""Builders for small playbook documents in tests."""

from __future__ import annotations

import copy
from typing import Any

from gateway.playbooks import Issue, ValidationReport, validate_playbook


def doc(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A playbook document with these steps (default: one SMS) and top-level fields."""
    base: dict[str, Any] = {
        "name": "Test",
        "settings": {"agent_name": "Sam", "partner_name": "Acme"},
        "activities": {"outcomes": ["qualified", "unqualified"]},
        "steps": list(steps) or [send("hello")],
    }
    base.update(fields)
    return copy.deepcopy(base)


def send(
    step_id: str, text: str = "Hi from {settings.partner_name}", **fields: Any
) -> dict[str, Any]:
    """An SMS send step."""
    return {"id": step_id, "kind": "send", "text": text, **fields}


def ask(
    step_id: str, *choices: dict[str, Any], text: str = "Yes or no?", **fields: Any
) -> dict[str, Any]:
    """An ask step (default choices: yes -> continue, no -> unqualified)."""
    return {
        "id": step_id,
        "kind": "ask",
        "text": text,
        "choices": list(choices)
        or [{"keywords": ["yes"]}, {"keywords": ["no"], "outcome": "unqualified"}],
        **fields,
    }


def outcome(step_id: str, label: str = "qualified") -> dict[str, Any]:
    """An outcome step."""
    return {"id": step_id, "kind": "outcome", "outcome": label}


def issues(report: ValidationReport, code: str | None = None) -> list[tuple[str, str]]:
    """(path, code) of the report's errors, optionally only one code."""
    return [(i.path, i.code) for i in report.errors if code is None or i.code == code]


def warnings(report: ValidationReport, code: str | None = None) -> list[tuple[str, str]]:
    """(path, code) of the report's warnings, optionally only one code."""
    return [(i.path, i.code) for i in report.warnings if code is None or i.code == code]


def only_error(data: dict[str, Any]) -> Issue:
    """Validate and return the single error (fails the test if there isn't exactly one)."""
    report = validate_playbook(data)
    assert len(report.errors) == 1, report.errors
    return report.errors[0]
