"""What a playbook may hold: size, nesting, value count, counts of steps/settings/choices, string
lengths, JSON types only; each refusal names the limit and where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.playbooks import limits, validate_document, validate_playbook
from gateway.playbooks.limits import (
    MAX_CHOICES,
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_KEYWORDS,
    MAX_NODES,
    MAX_PATTERNS,
    MAX_SETTING_VALUE,
    MAX_SETTINGS,
    MAX_STEPS,
    MAX_STRING,
)
from tests.playbooks.support import ask, doc, issues, send

README = Path(__file__).resolve().parents[2] / "gateway" / "playbooks" / "README.md"


def errors(text: str, fmt: str | None = None) -> list[tuple[str, str]]:
    report = validate_document(text, format=fmt)  # type: ignore[arg-type]
    return [(i.path, i.code) for i in report.errors]


def test_the_80000_settings_document_is_refused_by_its_size_before_parsing() -> None:
    text = "name: x\nsettings:\n" + "".join(f"  k{i:05d}: v\n" for i in range(80_000))
    assert len(text) > 900_000  # the 0.95 MB document of the report, give or take
    # A syntax error at the very start: were the document parsed at all, that would be reported.
    report = validate_document("name: [\n" + text)
    assert [(i.path, i.code) for i in report.errors] == [("", "too_large")]
    assert "MAX_DOCUMENT_BYTES" in report.errors[0].message


def test_size_counts_utf8_bytes() -> None:
    small_enough = "name: x\n#" + "é" * (MAX_DOCUMENT_BYTES // 2 - 10)
    assert errors(small_enough) == [("steps", "missing_field")]
    assert errors(small_enough + "é" * 20) == [("", "too_large")]


def test_value_count_stops_the_parser_midway() -> None:
    values = "x: [" + "0, " * MAX_NODES + "0]\n"
    # The syntax error at the end is never reached: the composer stops at the first value past
    # the limit, so a document can't cost more than MAX_NODES values of parsing.
    report = validate_document(values + "]]] not yaml")
    assert [(i.path, i.code) for i in report.errors] == [("", "too_many_nodes")]
    assert "MAX_NODES" in report.errors[0].message
    assert errors(json.dumps({"x": [0] * MAX_NODES}), "json") == [("", "too_many_nodes")]


def test_nesting_depth() -> None:
    # The top mapping is level 1, so MAX_DEPTH - 1 lists inside it are allowed.
    allowed = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert ("", "too_deep") not in errors(allowed)
    deeper = "a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"
    assert errors(deeper) == [("", "too_deep")]
    assert errors('{"a": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}") == [
        ("a" + "[0]" * 19, "too_deep")
    ]
    assert errors('{"a": ' + "[" * 5000 + "]" * 5000 + "}") == [("", "too_deep")]


def test_billion_laughs_is_refused_without_expanding() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 10):
        lines.append(f"{chr(97 + n)}: &{chr(97 + n)} [{', '.join([f'*{chr(96 + n)}'] * 9)}]")
    report = validate_document("\n".join(lines) + "\n")
    assert [i.code for i in report.errors] == ["syntax"]
    assert "aliases" in report.errors[0].message


@pytest.mark.parametrize(
    ("yaml", "path", "shown"),
    [
        ("settings:\n  blob: !!binary aGVsbG8=\n", "settings.blob", "!!binary"),
        ("settings:\n  s: !!set {a, b}\n", "settings.s", "!!set"),
        ("settings:\n  when: !!timestamp 2024-05-01\n", "settings.when", "!!timestamp"),
        ("settings:\n  when: !!timestamp 2024-05-01T10:00:00Z\n", "settings.when", "!!timestamp"),
        ("settings:\n  when: !!timestamp not-a-date\n", "settings.when", "!!timestamp"),
        ("settings:\n  o: !!omap [a: 1]\n", "settings.o", "!!omap"),
        ("settings:\n  p: !!pairs [a: 1]\n", "settings.p", "!!pairs"),
        ("settings:\n  t: !!python/tuple [1, 2]\n", "settings.t", "!!python/tuple"),
        ("x: !!python/object/apply:os.system [echo hi]\n", "x", "!!python/object/apply:os.system"),
        ("settings:\n  c: !custom thing\n", "settings.c", "!custom"),
        ("settings:\n  n: .nan\n", "settings.n", "not a JSON number"),
        ("settings:\n  i: -.inf\n", "settings.i", "not a JSON number"),
    ],
)
def test_only_json_types(yaml: str, path: str, shown: str) -> None:
    report = validate_document("name: x\n" + yaml)
    assert [(i.path, i.code) for i in report.errors] == [(path, "unsupported_type")]
    assert shown in report.errors[0].message


@pytest.mark.parametrize(
    ("yaml", "path"),
    [
        ("settings:\n  1: a\n", "settings"),
        ("settings:\n  true: a\n", "settings"),
        ("steps:\n  - {id: a, kind: send, text: hi, null: x}\n", "steps[0]"),
        ("settings:\n  ? [a, b]\n  : x\n", ""),  # unhashable key: a YAML error
    ],
)
def test_mapping_keys_are_strings(yaml: str, path: str) -> None:
    found = errors("name: x\n" + yaml)
    assert found in ([(path, "bad_key")], [("", "syntax")])
    assert found[0][0] == path


def test_explicit_tags_that_do_not_fit_are_syntax_errors_not_crashes() -> None:
    for value in ['!!int ""', "!!bool maybe", "!!float x", "!!binary '%%%'"]:
        assert errors(f"name: x\nsettings:\n  v: {value}\n") in (
            [("", "syntax")],
            [("settings.v", "unsupported_type")],
        ), value


def test_long_strings() -> None:
    assert errors(json.dumps({"name": "x", "junk": "y" * (MAX_STRING + 1)}), "json") == [
        ("junk", "too_long")
    ]


def many(n: int, make: Any) -> list[Any]:
    return [make(i) for i in range(n)]


@pytest.mark.parametrize(
    ("data", "path", "limit"),
    [
        (doc(*many(MAX_STEPS + 1, lambda i: send(f"s{i}"))), "steps", "MAX_STEPS"),
        (doc(settings={f"k{i}": "v" for i in range(MAX_SETTINGS + 1)}), "settings", "MAX_SETTINGS"),
        (doc(settings={"k": "v" * (MAX_SETTING_VALUE + 1)}), "settings.k", "MAX_SETTING_VALUE"),
        (
            doc(
                {
                    "id": "g",
                    "kind": "goto",
                    "playbook": "p",
                    "settings": {f"k{i}": 1 for i in range(MAX_SETTINGS + 1)},
                }
            ),
            "steps[0].settings",
            "MAX_SETTINGS",
        ),
        (
            doc(ask("q", *many(MAX_CHOICES + 1, lambda i: {"keywords": [f"w{i}"]}))),
            "steps[0].choices",
            "MAX_CHOICES",
        ),
        (
            doc(ask("q", {"keywords": many(MAX_KEYWORDS + 1, lambda i: f"w{i}")})),
            "steps[0].choices[0].keywords",
            "MAX_KEYWORDS",
        ),
        (
            doc(ask("q", {"patterns": many(MAX_PATTERNS + 1, lambda i: f"w{i}")})),
            "steps[0].choices[0].patterns",
            "MAX_PATTERNS",
        ),
        (
            doc(activities={"events": many(limits.MAX_LABELS + 1, lambda i: f"e{i}")}),
            "activities.events",
            "MAX_LABELS",
        ),
    ],
)
def test_counts(data: dict[str, Any], path: str, limit: str) -> None:
    report = validate_playbook(data)
    assert issues(report) == [(path, "too_many" if limit != "MAX_SETTING_VALUE" else "too_long")]
    assert limit in report.errors[0].message


def test_a_playbook_at_every_count_limit_is_valid() -> None:
    choices = [
        {"keywords": many(MAX_KEYWORDS, lambda i: f"w{i}")},
        {"patterns": many(MAX_PATTERNS, lambda i: f"^p{i}$")},
        *many(MAX_CHOICES - 2, lambda i: {"keywords": [f"x{i}"]}),
    ]
    steps = [ask("q", *choices), *many(MAX_STEPS - 1, lambda i: send(f"s{i}"))]
    settings = {f"k{i}": "v" * MAX_SETTING_VALUE for i in range(MAX_SETTINGS - 2)}
    data = doc(*steps, settings={"agent_name": "Sam", "partner_name": "Acme", **settings})
    report = validate_document(json.dumps(data), format="json")
    assert report.errors == []


def test_readme_documents_every_limit() -> None:
    text = README.read_text()
    names = [name for name in vars(limits) if name.startswith("MAX_")]
    assert len(names) >= 12
    for name in names:
        value = getattr(limits, name)
        assert f"`{name}`" in text, name
        assert f"{value:,}" in text, (name, value)
