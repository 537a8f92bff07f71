"""A structurally invalid document, repaired just enough for the whole-playbook checks to run.

Validation reports every problem of a document in one answer: pydantic's structural errors
and the semantic ones (references, labels, templates, opt-out conflicts). The semantic checks
need a `Playbook`, so the bad parts are taken out of a copy of the document: a bad optional
field or list item is dropped, a step that still fails is replaced by a placeholder with the
same id (so references to it still resolve). The repaired playbook is never published; issues
that the repair itself could cause (under a replaced step, or about the flow, which the
placeholders change) are left out.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.playbooks.definition import Playbook
from gateway.playbooks.report import Issue
from gateway.playbooks.steps import STEP_ID_PATTERN, STEP_KINDS

MAX_ROUNDS = 4  # each round fixes every error it sees; nested errors surface one level a round
# Issues about the whole flow: a placeholder step changes the flow, so they are not trusted.
FLOW_CODES = frozenset({"unreachable_step", "timed_loop", "loop_without_input", "missing_variable"})
_STEP_ID = re.compile(STEP_ID_PATTERN)


@dataclass
class Salvaged:
    """The repaired playbook, the step indexes replaced by placeholders, and those whose lists
    lost an item (the paths of the items after it moved)."""

    playbook: Playbook
    replaced: set[int]
    shifted: set[int]
    lost_ids: set[str]  # step ids that were invalid: references to them are not news

    def keep(self, issue: Issue) -> bool:
        """Whether a semantic issue of the repaired playbook can be trusted."""
        if self.replaced and issue.code in FLOW_CODES:
            return False
        if self.replaced and issue.code == "unknown_variable" and "{answers." in issue.message:
            return False  # the captures of a replaced ask are gone
        if issue.code == "unknown_step" and any(
            f"unknown step {lost!r}" in issue.message for lost in self.lost_ids
        ):
            return False
        return not any(
            issue.path == f"steps[{i}]" or issue.path.startswith((f"steps[{i}].", f"steps[{i}]["))
            for i in self.replaced | self.shifted
        )


def _loc(loc: tuple[int | str, ...]) -> list[int | str]:
    # Drop the step-kind tag of discriminated unions and pydantic's "[key]" marker.
    cleaned: list[int | str] = []
    for k, part in enumerate(loc):
        after_step = k >= 2 and loc[k - 2] == "steps" and isinstance(loc[k - 1], int)
        if (after_step and part in STEP_KINDS) or part == "[key]":
            continue
        cleaned.append(part)
    return cleaned


def _placeholder(original: Any, index: int, lost_ids: set[str]) -> dict[str, Any]:
    step_id = original.get("id") if isinstance(original, dict) else None
    if not isinstance(step_id, str) or not _STEP_ID.match(step_id):
        if isinstance(step_id, str):
            lost_ids.add(step_id)
        step_id = f"invalid-step-{index}"
    return {"id": step_id, "kind": "wait", "duration": "1m"}


def _drop(data: Any, path: list[int | str], kind: str) -> bool:
    """Remove the value at `path` (a field or a list item); False when it can't be removed."""
    if not path or kind == "missing":
        return False
    parent = data
    for part in path[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return False
    last = path[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
        return True
    if isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        parent[last] = None  # compacted after the round, so later indexes stay right
        return True
    return False


def _compact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value if v is not None]
    return value


def salvage(data: dict[str, Any], exc: ValidationError) -> Salvaged | None:
    """A playbook built from `data` without its invalid parts, or None if none can be built."""
    work = copy.deepcopy(data)
    replaced: set[int] = set()
    shifted: set[int] = set()
    lost_ids: set[str] = set()
    attempts: dict[int, int] = {}  # step index -> rounds in which it had errors
    steps = work.get("steps")
    if not isinstance(steps, list) or not steps:
        return None
    error: ValidationError | None = exc
    for _ in range(MAX_ROUNDS):
        assert error is not None
        for detail in error.errors(include_url=False):
            path = _loc(tuple(detail["loc"]))
            in_step = len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int)
            if in_step:
                i = int(path[1])
                if i in replaced or i >= len(steps):
                    continue
                attempts[i] = attempts.get(i, 0) + 1
                # A second round with errors, or an error in the step's id or kind itself:
                # stand in a placeholder.
                if attempts[i] > 1 or len(path) <= 3 or not _drop(work, path, detail["type"]):
                    steps[i] = _placeholder(steps[i], i, lost_ids)
                    replaced.add(i)
                elif isinstance(path[-1], int):
                    shifted.add(i)
            elif path == ["name"]:
                work["name"] = "invalid"
            elif not _drop(work, path, detail["type"]):
                return None
        work = _compact(work)
        steps = work["steps"]
        try:
            return Salvaged(Playbook.model_validate(work), replaced, shifted, lost_ids)
        except ValidationError as again:
            error = again
        except (TypeError, ValueError):
            return None
    return None
