"""Validation results: issues with a path to the bad field, and pydantic errors turned into them.

Paths read like the document: `steps[3].choices[1].goto`, `settings.agent_name`, `""` for the
document itself. The API returns them as the `field` of its error body.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.playbooks.activities import LABEL_PATTERN
from gateway.playbooks.definition import (
    ADDITIONAL_INFO_KEY_PATTERN,
    EmailDefaults,
    Playbook,
    Reengagement,
)
from gateway.playbooks.steps import (
    IDENTIFIER_PATTERN,
    STEP_ID_PATTERN,
    STEP_KINDS,
    AskStep,
    CallStep,
    CatchAll,
    Choice,
    GotoStep,
    OutcomeStep,
    SendStep,
    WaitStep,
)

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Issue:
    """One problem in a playbook: where (`path`), what (`message`), and a stable `code`."""

    path: str
    message: str
    code: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path or '<playbook>'}: {self.message}"


@dataclass
class ValidationReport:
    """Errors block publishing; warnings don't. `playbook` is set only when there are no errors."""

    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    playbook: Playbook | None = None

    @property
    def ok(self) -> bool:
        """True when the playbook can be published."""
        return not self.errors

    def add(self, issues: Iterable[Issue]) -> None:
        """Sort issues into errors and warnings, dropping exact repeats."""
        for issue in issues:
            bucket = self.errors if issue.severity == "error" else self.warnings
            if issue not in bucket:
                bucket.append(issue)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the API: `{"valid", "errors": [...], "warnings": [...]}`."""

        def dump(issues: Sequence[Issue]) -> list[dict[str, str]]:
            return [{"field": i.path, "code": i.code, "message": i.message} for i in issues]

        return {"valid": self.ok, "errors": dump(self.errors), "warnings": dump(self.warnings)}


class PlaybookInvalid(ValueError):
    """Raised by `parse_playbook` when a document has errors; carries the full report."""

    def __init__(self, report: ValidationReport) -> None:
        lines = "; ".join(str(issue) for issue in report.errors[:5])
        more = len(report.errors) - 5
        super().__init__(f"invalid playbook: {lines}" + (f" (and {more} more)" if more > 0 else ""))
        self.report = report


def format_path(loc: Iterable[int | str]) -> str:
    """`("steps", 3, "choices", 1, "goto")` -> `steps[3].choices[1].goto`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def suggest(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a close candidate, else an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


_MODELS: tuple[type[BaseModel], ...] = (
    SendStep,
    AskStep,
    CallStep,
    WaitStep,
    GotoStep,
    OutcomeStep,
    Choice,
    CatchAll,
)
_TOO_SHORT = {
    "steps": "a playbook needs at least one step",
    "choices": "an ask needs at least one choice",
}
_PATTERN_HINTS = {
    ADDITIONAL_INFO_KEY_PATTERN: "keys use letters, digits and '_', with '.' between levels",
    STEP_ID_PATTERN: "step ids use letters, digits, '-' and '_' (up to 64)",
    LABEL_PATTERN: "labels use lowercase letters, digits and '_', starting with a letter",
    IDENTIFIER_PATTERN: "names use letters, digits and '_', starting with a letter or '_'",
}


def _field_names() -> set[str]:
    names: set[str] = set()
    models: tuple[type[BaseModel], ...] = (*_MODELS, Playbook, Reengagement, EmailDefaults)
    for model in models:
        for name, info in model.model_fields.items():
            names.add(info.alias or name)
    return names


def _clean_loc(loc: tuple[int | str, ...]) -> list[int | str]:
    # Discriminated unions put the tag in the location (`steps.3.send.delay`); authors never
    # wrote it, so drop it. Dict-key errors end in "[key]"; the key itself is already there.
    cleaned: list[int | str] = []
    for k, part in enumerate(loc):
        after_step = k >= 2 and loc[k - 2] == "steps" and isinstance(loc[k - 1], int)
        if after_step and part in STEP_KINDS:
            continue
        if part == "[key]":
            continue
        cleaned.append(part)
    return cleaned


def _convert(error: ErrorDetails) -> Issue:
    loc = _clean_loc(tuple(error["loc"]))
    kind = error["type"]
    message = error["msg"]
    code = "invalid"
    if kind == "missing":
        code, message = "missing_field", "required field is missing"
    elif kind == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        code = "unknown_field"
        known = _field_names()
        if name in known:
            message = f"field {name!r} doesn't belong here"
        else:
            message = f"unknown field {name!r}{suggest(name, known)}"
    elif kind == "union_tag_not_found":
        loc.append("kind")
        code = "missing_field"
        message = f"every step needs a `kind`: one of {', '.join(STEP_KINDS)}"
    elif kind == "union_tag_invalid":
        loc.append("kind")
        tag = str((error.get("ctx") or {}).get("tag", ""))
        code = "bad_kind"
        message = (
            f"unknown step kind {tag!r}{suggest(tag, STEP_KINDS)}: one of {', '.join(STEP_KINDS)}"
        )
    elif kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        message = f"{error['input']!r}: " + _PATTERN_HINTS.get(pattern, message)
    elif kind == "too_short" and loc and loc[-1] in _TOO_SHORT:
        message = _TOO_SHORT[str(loc[-1])]
    elif kind.startswith("bad_") or kind == "template_syntax":
        code = kind
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return Issue(format_path(loc), message, code)


def from_validation_error(exc: ValidationError) -> list[Issue]:
    """Issues for every error pydantic found, one per field."""
    return [_convert(error) for error in exc.errors(include_url=False)]


def error(path: str, message: str, code: str) -> Issue:
    """An issue that blocks publishing."""
    return Issue(path, message, code, "error")


def warning(path: str, message: str, code: str) -> Issue:
    """An issue worth fixing that doesn't block publishing."""
    return Issue(path, message, code, "warning")
