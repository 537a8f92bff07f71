"""Publish-time checks that need the whole playbook: references, labels, templates, flow.

Everything a play could trip over at run time is an error here, so the engine can trust a
published playbook: step ids resolve, labels are declared, every template variable exists at
the step that uses it, no loop runs without the lead, patterns run on RE2 (linear time).
A document with structural errors still gets these checks (on a salvaged copy, salvage.py), so
one answer lists every problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from gateway.playbooks import graph
from gateway.playbooks.activities import BUILTIN_EVENTS, ENGINE_OUTCOMES, STANDARD_OUTCOMES
from gateway.playbooks.definition import Playbook
from gateway.playbooks.keyword_conflicts import keyword_conflicts
from gateway.playbooks.limits import count_issues
from gateway.playbooks.patterns import pattern_error
from gateway.playbooks.report import (
    Issue,
    ValidationReport,
    error,
    from_validation_error,
    suggest,
    warning,
)
from gateway.playbooks.salvage import salvage
from gateway.playbooks.scope import check_templates
from gateway.playbooks.steps import (
    END,
    AnyStep,
    AskStep,
    OutcomeStep,
    SendStep,
    WaitStep,
)


def validate_playbook(data: Any) -> ValidationReport:
    """Validate a decoded playbook document (a dict from YAML or JSON): errors and warnings.

    `report.playbook` holds the parsed playbook when there are no errors.
    """
    report = ValidationReport()
    if not isinstance(data, dict):
        report.add([error("", "a playbook is a mapping of fields (name, steps, ...)", "invalid")])
        return report
    report.add(count_issues(data))
    if report.errors:
        return report  # too big to be worth building: the limits come first
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        report.add(from_validation_error(exc))
        # Every problem in one answer: the whole-playbook checks run on what is valid.
        salvaged = salvage(data, exc)
        if salvaged is not None:
            report.add(issue for issue in check(salvaged.playbook) if salvaged.keep(issue))
        return report
    report.add(check(playbook))
    if report.ok:
        report.playbook = playbook
    return report


def check(playbook: Playbook) -> list[Issue]:
    """Every whole-playbook check on a structurally valid playbook."""
    issues: list[Issue] = []
    issues += _step_ids(playbook)
    issues += _references(playbook)
    issues += _step_fields(playbook)
    issues += _labels(playbook)
    issues += _flow(playbook)
    issues += check_templates(playbook)
    issues += keyword_conflicts(playbook.steps)
    return issues


def _step_ids(playbook: Playbook) -> Iterator[Issue]:
    first: dict[str, int] = {}
    for i, step in enumerate(playbook.steps):
        if step.id == END:
            yield error(f"steps[{i}].id", f"{END!r} is reserved: it ends the play", "reserved_id")
        elif step.id in first:
            yield error(
                f"steps[{i}].id",
                f"duplicate step id {step.id!r} (already used by steps[{first[step.id]}])",
                "duplicate_step",
            )
        else:
            first[step.id] = i


def _targets(step: AnyStep, i: int) -> Iterator[tuple[str, str]]:
    """(path, target) for every step reference a step makes."""
    nxt = getattr(step, "next", None)
    if nxt is not None:
        yield f"steps[{i}].next", nxt
    if isinstance(step, AskStep):
        for j, choice in enumerate(step.choices):
            if choice.goto is not None:
                yield f"steps[{i}].choices[{j}].goto", choice.goto


def _references(playbook: Playbook) -> Iterator[Issue]:
    ids = [s.id for s in playbook.steps]
    for i, step in enumerate(playbook.steps):
        for path, target in _targets(step, i):
            if target != END and not playbook.has_step(target):
                yield error(
                    path,
                    f"unknown step {target!r}{suggest(target, ids)}; use a step id or {END!r}",
                    "unknown_step",
                )


def _step_fields(playbook: Playbook) -> Iterator[Issue]:
    senders = bool(playbook.email.from_)
    for i, step in enumerate(playbook.steps):
        at = f"steps[{i}]"
        if isinstance(step, SendStep):
            yield from _send_fields(step, at, senders)
        elif isinstance(step, WaitStep) and not step.duration:
            yield warning(f"{at}.duration", "a wait of 0 does nothing", "empty_wait")
        elif isinstance(step, AskStep):
            for j, choice in enumerate(step.choices):
                path = f"{at}.choices[{j}]"
                if not (choice.keywords or choice.patterns or choice.capture):
                    yield error(path, "a choice needs keywords, patterns or a capture", "no_match")
                if choice.parser is not None and choice.capture is None:
                    yield error(
                        f"{path}.parser", "a parser needs `capture`", "parser_without_capture"
                    )
                if choice.outcome is not None and choice.goto is not None:
                    yield error(
                        f"{path}.goto",
                        "an outcome ends the play, so it can't also goto a step "
                        "(use `event` to record a label and continue)",
                        "outcome_and_goto",
                    )
                for k, pattern in enumerate(choice.patterns):
                    reason = pattern_error(pattern)
                    if reason is not None:
                        yield error(
                            f"{path}.patterns[{k}]",
                            f"step {step.id!r}, choice {j + 1}: {reason}",
                            "bad_pattern",
                        )
    if playbook.reengagement is not None and not playbook.reengagement.after:
        yield error(
            "reengagement.after", "re-engagement needs a delay longer than 0", "bad_duration"
        )


def _send_fields(step: SendStep, at: str, senders: bool) -> Iterator[Issue]:
    if step.channel == "sms":
        if step.text is None:
            yield error(f"{at}.text", "an SMS needs `text`", "missing_field")
        for name, value in (("subject", step.subject), ("body", step.body)):
            if value is not None:
                yield error(
                    f"{at}.{name}", f"`{name}` is for email; an SMS has `text`", "sms_field"
                )
        for name, value in (("from", step.from_), ("reply_to", step.reply_to)):
            if value is not None:
                yield error(f"{at}.{name}", f"`{name}` is only for email", "sms_field")
        return
    if step.text is not None:
        yield error(f"{at}.text", "an email has `subject` and `body`, not `text`", "email_field")
    for name, value in (("subject", step.subject), ("body", step.body)):
        if not value:
            yield error(f"{at}.{name}", f"an email needs `{name}`", "missing_field")
    if step.from_ is None and not senders:
        yield warning(
            f"{at}.from",
            "no sender here or in email.from: the account's default sender is used",
            "no_sender",
        )


def _labels(playbook: Playbook) -> Iterator[Issue]:
    declared_events = set(playbook.activities.events)
    declared_outcomes = set(playbook.activities.outcomes)
    for k, label in enumerate(playbook.activities.outcomes):
        if label in BUILTIN_EVENTS or label in declared_events:
            yield error(
                f"activities.outcomes[{k}]", f"{label!r} is an event, not an outcome", "label_clash"
            )
    events = set(BUILTIN_EVENTS) | declared_events
    outcomes = set(ENGINE_OUTCOMES) | declared_outcomes
    used_outcomes: set[str] = set()
    for path, kind, label in _used_labels(playbook):
        if kind == "outcome":
            used_outcomes.add(label)
            if label not in outcomes:
                hint = (
                    "it is an event; use `event:`"
                    if label in events
                    else f"declare it in activities.outcomes{suggest(label, outcomes)}"
                )
                yield error(
                    path, f"outcome {label!r} is not declared: {hint}", "undeclared_outcome"
                )
        elif label not in events:
            hint = (
                "it is an outcome; use `outcome:`"
                if label in outcomes
                else f"declare it in activities.events{suggest(label, events)}"
            )
            yield error(path, f"event {label!r} is not declared: {hint}", "undeclared_event")
    for k, label in enumerate(playbook.activities.outcomes):
        if label not in used_outcomes and label not in STANDARD_OUTCOMES:
            yield warning(
                f"activities.outcomes[{k}]",
                f"no step or choice produces outcome {label!r}",
                "unused_outcome",
            )


def _used_labels(playbook: Playbook) -> Iterator[tuple[str, str, str]]:
    for i, step in enumerate(playbook.steps):
        if isinstance(step, OutcomeStep):
            yield f"steps[{i}].outcome", "outcome", step.outcome
        elif isinstance(step, AskStep):
            for j, choice in enumerate(step.choices):
                if choice.outcome is not None:
                    yield f"steps[{i}].choices[{j}].outcome", "outcome", choice.outcome
                if choice.event is not None:
                    yield f"steps[{i}].choices[{j}].event", "event", choice.event


def _flow(playbook: Playbook) -> Iterator[Issue]:
    steps = playbook.steps
    index_of = {s.id: i for i, s in reversed(list(enumerate(steps)))}
    edges = graph.edges(steps, index_of)
    live = graph.reachable(len(steps), edges)
    for i, step in enumerate(steps):
        if i not in live:
            yield warning(
                f"steps[{i}]", f"step {step.id!r} can never be reached", "unreachable_step"
            )
    for component in graph.cycles(len(steps), edges):
        members = set(component)
        if any(isinstance(steps[i], AskStep) for i in members):
            continue
        timed = any(
            (isinstance(steps[i], WaitStep) and getattr(steps[i], "duration", None))
            or getattr(steps[i], "delay", None)
            for i in members
        )
        # Point at the jump that closes the loop: an explicit edge going backwards (or to itself).
        inside = [e for e in edges if e.source in members and e.target in members and e.path]
        backwards = [e for e in inside if e.target is not None and e.target <= e.source]
        closing = (backwards or inside)[0].path if inside else None
        path = closing or f"steps[{component[0]}]"
        names = " -> ".join(steps[i].id for i in component)
        if timed:
            yield warning(
                path,
                f"steps {names} repeat on a timer until the lead replies or the play is stopped",
                "timed_loop",
            )
        else:
            yield error(
                path,
                f"steps {names} loop forever without waiting for the lead: "
                "add an ask or a wait to the loop",
                "loop_without_input",
            )
