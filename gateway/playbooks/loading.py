"""Reading playbook documents: YAML (the YAML 1.2 core schema) or JSON, then validation.

PyYAML implements YAML 1.1, where `yes`, `no`, `on` and `off` are booleans, `1:30` is the
integer 90, `02134` is octal and `2024-05-01` is a date. In a playbook those are keywords,
times, postal codes and plain text, so the loader here resolves only what YAML 1.2 does:
true/false, null, decimal numbers. It also rejects duplicate keys (YAML would silently keep
the last `goto:`) and aliases (`*x`), whose expansion can blow up a small document.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from gateway.playbooks.definition import Playbook
from gateway.playbooks.report import Issue, PlaybookInvalid, ValidationReport
from gateway.playbooks.validate import validate_playbook

MAX_DOCUMENT = 1_000_000  # characters; a playbook is a few kilobytes
Format = Literal["yaml", "json"]

_REPLACED = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars, no aliases, no duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not supported in playbooks", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable key: the base class reports it
            if duplicate:
                raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:0|[1-9][0-9]*)?\.[0-9]+(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def load_document(text: str, *, format: Format | None = None) -> Any:
    """Decode a YAML or JSON document (guessing JSON when it starts with '{'); ValueError if bad."""
    if len(text) > MAX_DOCUMENT:
        raise ValueError(f"the document is larger than {MAX_DOCUMENT} characters")
    chosen = format or ("json" if text.lstrip().startswith("{") else "yaml")
    if chosen == "json":
        try:
            return json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from exc
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"YAML error{where}: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"YAML error: {exc}") from exc


def validate_document(text: str, *, format: Format | None = None) -> ValidationReport:
    """Decode and validate a document; syntax errors are reported at path "" (code `syntax`)."""
    try:
        data = load_document(text, format=format)
    except ValueError as exc:
        report = ValidationReport()
        report.add([Issue("", str(exc), "syntax")])
        return report
    return validate_playbook(data)


def parse_playbook(text: str, *, format: Format | None = None) -> Playbook:
    """Parse and validate a YAML or JSON playbook; PlaybookInvalid (with `.report`) on errors."""
    report = validate_document(text, format=format)
    if report.playbook is None:
        raise PlaybookInvalid(report)
    return report.playbook
