"""Limits on what a playbook document may hold, and the checks that enforce them.

A playbook is a few kilobytes: the shipped examples are under 5 KB, with at most 6 levels of
nesting, 230 values, 6 steps, 4 settings, 4 choices per question and 11 keywords per choice.
The limits below leave tens of times that room, and keep a hostile or careless document from
costing seconds of parsing: the size is checked before parsing, nesting and value count while
the YAML is composed (parsing stops at the first value past the limit), value types and string
lengths on the decoded document, and the counts of steps, settings and choices before the
playbook model is built.

Only JSON types may appear (string, number, true/false, null, list, mapping with string keys):
a published document is stored as JSON, so YAML's `!!binary`, `!!set`, `!!omap`, `!!pairs`,
`!!timestamp` and any other tag are refused with the path of the value.

The limits are documented in README.md ("Limits"); change both together.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date
from typing import Any

from gateway.playbooks.report import Issue, error, format_path

MAX_DOCUMENT_BYTES = 256 * 1024  # UTF-8 bytes of the document text
MAX_DEPTH = 20  # mappings and lists nested in one another; the document is level 1
MAX_NODES = 10_000  # values in the document, counting mapping keys, lists and mappings
MAX_STRING = 100_000  # characters in one string (the longest field, an email body)
MAX_STEPS = 200
MAX_SETTINGS = 100  # in `settings`, and in a goto step's `settings`
MAX_SETTING_VALUE = 1_600  # characters; a setting is put into texts, at most one SMS long
MAX_CHOICES = 30  # per ask
MAX_KEYWORDS = 100  # per choice
MAX_PATTERNS = 20  # per choice (each pattern is at most 300 characters: steps.MAX_PATTERN)
MAX_LABELS = 100  # in activities.events, and in activities.outcomes
MAX_EXPECTED_KEYS = 100  # in expects_additional_info


class DocumentRefused(ValueError):
    """A document past a limit, or holding a non-JSON value: `code` and `path` say which."""

    def __init__(self, message: str, code: str, path: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.path = path


class Tagged:
    """A YAML value whose tag has no JSON meaning (`!!python/tuple`, `!foo`): refused later,
    where its path is known."""

    def __init__(self, tag: str) -> None:
        self.tag = tag


def _type_name(value: object) -> str:
    """How the author wrote a non-JSON value, for the error message."""
    if isinstance(value, Tagged):
        return value.tag.replace("tag:yaml.org,2002:", "!!")
    if isinstance(value, bytes):
        return "!!binary"
    if isinstance(value, set | frozenset):
        return "!!set"
    if isinstance(value, date):  # datetime is a date too
        return "!!timestamp"
    if isinstance(value, tuple):
        return "!!omap or !!pairs"
    return type(value).__name__


def check_values(data: Any) -> None:
    """Refuse a decoded document with a non-JSON value, a non-string key, a value nested deeper
    than MAX_DEPTH, more than MAX_NODES values or a string longer than MAX_STRING."""
    nodes = 0
    # Iterative, not recursive: depth is bounded here, so it can't be trusted to be small yet.
    stack: list[tuple[Any, tuple[int | str, ...], int]] = [(data, (), 0)]
    while stack:
        value, at, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise DocumentRefused(
                f"the document has more than {MAX_NODES} values (limit MAX_NODES)", "too_many_nodes"
            )
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise DocumentRefused(
                    f"a string of {len(value)} characters; at most {MAX_STRING} (limit MAX_STRING)",
                    "too_long",
                    format_path(at),
                )
            continue
        if value is None or isinstance(value, bool | int):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise DocumentRefused(
                    f"{value} is not a JSON number", "unsupported_type", format_path(at)
                )
            continue
        if isinstance(value, dict | list):
            if depth + 1 > MAX_DEPTH:
                raise DocumentRefused(
                    f"nested more than {MAX_DEPTH} levels deep (limit MAX_DEPTH)",
                    "too_deep",
                    format_path(at),
                )
            if isinstance(value, list):
                stack.extend((item, (*at, i), depth + 1) for i, item in enumerate(value))
                continue
            for key, item in value.items():
                if not isinstance(key, str):
                    raise DocumentRefused(
                        f"mapping keys must be strings, not {_type_name(key)} ({key!r}); "
                        "quote the key",
                        "bad_key",
                        format_path(at),
                    )
                nodes += 1  # the key, counted as YAML counts it
                stack.append((item, (*at, key), depth + 1))
            continue
        raise DocumentRefused(
            f"a {_type_name(value)} value is not allowed: a playbook holds only JSON types "
            "(string, number, true/false, null, list, mapping)",
            "unsupported_type",
            format_path(at),
        )


def _too_many(path: str, items: object, limit: int, what: str, name: str) -> Iterator[Issue]:
    if isinstance(items, dict | list) and len(items) > limit:
        yield error(path, f"{len(items)} {what}; at most {limit} (limit {name})", "too_many")


def _settings(path: str, settings: object) -> Iterator[Issue]:
    yield from _too_many(path, settings, MAX_SETTINGS, "settings", "MAX_SETTINGS")
    if isinstance(settings, dict):
        for key, value in settings.items():
            if isinstance(value, str) and len(value) > MAX_SETTING_VALUE:
                yield error(
                    f"{path}.{key}",
                    f"a setting of {len(value)} characters; at most {MAX_SETTING_VALUE} "
                    "(limit MAX_SETTING_VALUE)",
                    "too_long",
                )


def count_issues(data: dict[str, Any]) -> list[Issue]:
    """Errors for a decoded playbook with too many steps, settings, choices, keywords, ...

    Run before the model is built, so an oversized document costs no validation; the data may
    be malformed in any other way (the model reports that).
    """
    issues = [
        *_too_many("steps", data.get("steps"), MAX_STEPS, "steps", "MAX_STEPS"),
        *_settings("settings", data.get("settings")),
        *_too_many(
            "expects_additional_info",
            data.get("expects_additional_info"),
            MAX_EXPECTED_KEYS,
            "keys",
            "MAX_EXPECTED_KEYS",
        ),
    ]
    activities = data.get("activities")
    if isinstance(activities, dict):
        for kind in ("events", "outcomes"):
            issues += _too_many(
                f"activities.{kind}", activities.get(kind), MAX_LABELS, kind, "MAX_LABELS"
            )
    steps = data.get("steps")
    for i, step in enumerate(steps[:MAX_STEPS] if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        issues += _settings(f"steps[{i}].settings", step.get("settings"))
        choices = step.get("choices")
        issues += _too_many(f"steps[{i}].choices", choices, MAX_CHOICES, "choices", "MAX_CHOICES")
        for j, choice in enumerate(choices[:MAX_CHOICES] if isinstance(choices, list) else []):
            if not isinstance(choice, dict):
                continue
            at = f"steps[{i}].choices[{j}]"
            issues += _too_many(
                f"{at}.keywords", choice.get("keywords"), MAX_KEYWORDS, "keywords", "MAX_KEYWORDS"
            )
            issues += _too_many(
                f"{at}.patterns", choice.get("patterns"), MAX_PATTERNS, "patterns", "MAX_PATTERNS"
            )
    return issues
