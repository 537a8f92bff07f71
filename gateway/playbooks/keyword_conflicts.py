"""Accepted responses that can never reach a playbook, because the compliance layer takes them.

An inbound text is classified (`compliance.keywords.classify`) before any play sees it: an
opt-out ("not interested", "remove me") opts the lead out of the whole account, and STOP-like,
START and HELP keywords are answered by the gateway itself. A choice accepting such a reply has
a branch that can never be taken; publishing warns, naming the step and the choice, so the
author can remove the response (the lead's opt-out is honoured either way).

Classifying costs up to a millisecond or two per text (typo correction, phrase search), so at
most MAX_CHECKED distinct responses are classified per document; the rest are reported unchecked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from compliance.keywords import Classification, classify
from gateway.playbooks.report import Issue, warning
from gateway.playbooks.steps import AnyStep, AskStep

MAX_CHECKED = 400  # distinct keywords and examples classified per document (~0.5 s at most)

_WHY = {
    "opt_out": "is an opt-out: the lead is opted out of every text from the account",
    "help": "is a HELP keyword: the gateway answers it with the account's help text",
    "opt_in": "is an opt-in keyword (START): the gateway handles it",
}


def _responses(step: AskStep) -> Iterator[tuple[int, str, int, str]]:
    """(choice index, field, position, text) for every keyword and example of an ask."""
    for j, choice in enumerate(step.choices):
        for k, keyword in enumerate(choice.keywords):
            yield j, "keywords", k, keyword
        for k, example in enumerate(choice.examples):
            yield j, "examples", k, example


def keyword_conflicts(steps: Sequence[AnyStep]) -> Iterator[Issue]:
    """A warning for each accepted response that the compliance layer takes before the play."""
    seen: dict[str, Classification] = {}
    unchecked = 0
    for i, step in enumerate(steps):
        if not isinstance(step, AskStep):
            continue
        for j, field, k, text in _responses(step):
            found = seen.get(text)
            if found is None:
                if len(seen) >= MAX_CHECKED:
                    unchecked += 1
                    continue
                found = seen[text] = classify(text)
            if found.kind is None:
                continue
            yield warning(
                f"steps[{i}].choices[{j}].{field}[{k}]",
                f"step {step.id!r}, choice {j + 1}: the reply {text!r} {_WHY[found.kind]} "
                f"(matched {found.keyword!r}), so this choice never receives it; remove it",
                "opt_out_response" if found.kind == "opt_out" else "keyword_response",
            )
    if unchecked:
        yield warning(
            "",
            f"{unchecked} accepted responses past the first {MAX_CHECKED} were not checked "
            "against the opt-out rules",
            "responses_unchecked",
        )
