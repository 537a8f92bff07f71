"""Template variables against what exists where they are used ("missing variable" checks).

Lead fields are a fixed set; settings must be declared; `{answers.x}` must be captured on every
path to the step (a forward "must" analysis over the step graph); additional_info keys are
unknown until run time, so they need a fallback or an `expects_additional_info` entry.
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.playbooks import graph
from gateway.playbooks.definition import Playbook
from gateway.playbooks.report import Issue, error, suggest, warning
from gateway.playbooks.steps import AskStep
from gateway.playbooks.templates import (
    ADDITIONAL_INFO,
    ALWAYS_PRESENT_LEAD_FIELDS,
    LEAD_FIELDS,
    Variable,
    parse_template,
)


def check_templates(playbook: Playbook) -> Iterator[Issue]:
    """Issues for every template variable that may not exist where it is used."""
    steps = playbook.steps
    index_of = {s.id: i for i, s in reversed(list(enumerate(steps)))}
    edges = graph.edges(steps, index_of)
    known = graph.captured_on_every_path(len(steps), edges)
    anywhere = frozenset(e.capture for e in edges if e.capture) | frozenset(
        c.capture for s in steps if isinstance(s, AskStep) for c in s.choices if c.capture
    )
    scope = _Scope(playbook, anywhere)
    for i, step in enumerate(steps):
        if i not in known:
            continue  # unreachable: already warned, and nothing is known about its answers
        have = known[i]
        at = f"steps[{i}]"
        for name in ("text", "subject", "body", "whisper", "topic"):
            value = getattr(step, name, None)
            if isinstance(value, str):
                yield from scope.check(value, f"{at}.{name}", have, step.id)
        if isinstance(step, AskStep):
            for j, choice in enumerate(step.choices):
                if choice.reply is not None:
                    extra = {choice.capture} if choice.capture else set()
                    path = f"{at}.choices[{j}].reply"
                    yield from scope.check(choice.reply, path, have | extra, step.id)
            for level in (1, 2, 3):
                own = step.catch_all.message(level) if step.catch_all else None
                if own is not None:
                    yield from scope.check(own, f"{at}.catch_all.level{level}", have, step.id)
                elif (default := playbook.catch_all.message(level)) is not None:
                    yield from scope.check(default, f"catch_all.level{level}", have, step.id)
    if playbook.reengagement is not None:
        # Sent whenever the lead goes quiet, so no captured answer can be relied on.
        yield from scope.check(playbook.reengagement.text, "reengagement.text", frozenset(), None)
    for level in (1, 2, 3):
        default = playbook.catch_all.message(level)
        if default is not None:
            yield from scope.check(
                default, f"catch_all.level{level}", frozenset(), None, syntax=True
            )


class _Scope:
    """Checks template variables against what exists at a step."""

    def __init__(self, playbook: Playbook, captured_anywhere: frozenset[str]) -> None:
        self.playbook = playbook
        self.captured_anywhere = captured_anywhere
        self.expected = set(playbook.expects_additional_info)

    def check(
        self,
        template: str,
        path: str,
        have: frozenset[str] | set[str],
        step_id: str | None,
        *,
        syntax: bool = False,
    ) -> Iterator[Issue]:
        """Issues for each variable of `template` at a point where answers `have` exist.

        `syntax=True` checks only what doesn't depend on the step (names, declarations).
        """
        for var in parse_template(template).variables:
            yield from self._variable(var, path, have, step_id, syntax)

    def _variable(
        self,
        var: Variable,
        path: str,
        have: frozenset[str] | set[str],
        step_id: str | None,
        syntax: bool,
    ) -> Iterator[Issue]:
        shown = "{" + var.name + "}"
        where = f"at step {step_id!r}" if step_id else "here"
        if var.namespace == "settings":
            key = var.path[0]
            if len(var.path) > 1:
                yield error(path, f"{shown}: settings have no fields", "unknown_variable")
            elif key not in self.playbook.settings:
                hint = suggest(key, self.playbook.settings)
                yield error(
                    path,
                    f"{shown}: setting {key!r} is not declared in `settings`{hint}",
                    "unknown_variable",
                )
        elif var.namespace == "answers":
            key = var.path[0]
            if len(var.path) > 1:
                yield error(path, f"{shown}: answers have no fields", "unknown_variable")
            elif key not in self.captured_anywhere:
                hint = suggest(key, self.captured_anywhere)
                yield error(path, f"{shown}: no ask captures {key!r}{hint}", "unknown_variable")
            elif not syntax and key not in have and not var.has_fallback:
                yield error(
                    path,
                    f"{shown} may be missing {where}: not every path to it captures {key!r}; "
                    f"add a fallback like {{answers.{key}|...}}",
                    "missing_variable",
                )
        else:
            yield from self._lead(var, shown, path, have, where)

    def _lead(
        self, var: Variable, shown: str, path: str, have: frozenset[str] | set[str], where: str
    ) -> Iterator[Issue]:
        field = var.path[0]
        if field == ADDITIONAL_INFO:
            if len(var.path) == 1:
                yield error(
                    path,
                    f"{shown} needs a key, like {{lead.additional_info.x}}",
                    "unknown_variable",
                )
                return
            key = ".".join(var.path[1:])
            captured = len(var.path) == 2 and var.path[1] in have
            if not (var.has_fallback or key in self.expected or captured):
                yield error(
                    path,
                    f"{shown} may not exist for every lead {where}: add a fallback like "
                    f"{{lead.additional_info.{key}|...}} "
                    f"or list {key!r} in expects_additional_info",
                    "missing_variable",
                )
        elif field not in LEAD_FIELDS:
            yield error(
                path,
                f"{shown}: unknown lead field {field!r}{suggest(field, LEAD_FIELDS)}; fields are "
                f"{', '.join(LEAD_FIELDS)} and additional_info.<key>",
                "unknown_variable",
            )
        elif len(var.path) > 1:
            yield error(path, f"{shown}: lead.{field} has no fields", "unknown_variable")
        elif field not in ALWAYS_PRESENT_LEAD_FIELDS and not var.has_fallback:
            yield warning(
                path,
                f"{shown} is empty for leads without a {field.replace('_', ' ')}; "
                f"consider a fallback like {{lead.{field}|...}}",
                "optional_lead_field",
            )
