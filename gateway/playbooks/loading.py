"""Reading playbook documents: YAML (the YAML 1.2 core schema) or JSON, then validation.

PyYAML implements YAML 1.1, where `yes`, `no`, `on` and `off` are booleans, `1:30` is the
integer 90, `02134` is octal and `2024-05-01` is a date. In a playbook those are keywords,
times, postal codes and plain text, so the loader here resolves only what YAML 1.2 does:
true/false, null, decimal numbers. It also rejects duplicate keys (YAML would silently keep
the last `goto:`) and aliases (`*x`), whose expansion can blow up a small document ("billion
laughs"). The limits of limits.py are enforced before (size), while (nesting, value count: the
composer stops at the first value past the limit) and after decoding (JSON types only).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from gateway.playbooks.definition import Playbook
from gateway.playbooks.limits import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_NODES,
    DocumentRefused,
    Tagged,
    check_values,
)
from gateway.playbooks.report import Issue, PlaybookInvalid, ValidationReport
from gateway.playbooks.validate import validate_playbook

Format = Literal["yaml", "json"]

_REPLACED = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars, no aliases, no duplicate keys, bounded nesting and
    value count."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not supported in playbooks", mark
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise DocumentRefused(
                f"the document has more than {MAX_NODES} values (limit MAX_NODES); "
                f"stopped at line {mark.line + 1}",
                "too_many_nodes",
            )
        nested = isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent)
        self._depth += nested
        try:
            if self._depth > MAX_DEPTH:
                raise DocumentRefused(
                    f"nested more than {MAX_DEPTH} levels deep (limit MAX_DEPTH) at line "
                    f"{mark.line + 1}",
                    "too_deep",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= nested

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


def _unknown_tag(loader: _Loader, node: yaml.Node) -> Tagged:
    # SafeLoader raises on an unknown tag without saying where in the document; keep a marker
    # instead, and check_values refuses it with its path.
    return Tagged(str(node.tag))


_Loader.add_constructor(None, _unknown_tag)
# Non-JSON types become markers too, unconstructed: no base64 decoding of a `!!binary` that is
# refused anyway, and no crash on a `!!timestamp` that doesn't parse.
for _tag in ("binary", "set", "timestamp", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _unknown_tag)
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
    """Decode a YAML or JSON document (guessing JSON when it starts with '{').

    ValueError if it doesn't decode; DocumentRefused (a ValueError) past a limit of limits.py
    or for a value that isn't a JSON type.
    """
    check_size(text)
    chosen = format or ("json" if text.lstrip().startswith("{") else "yaml")
    if chosen == "json":
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from exc
        except RecursionError:
            raise DocumentRefused(
                f"nested more than {MAX_DEPTH} levels deep (limit MAX_DEPTH)", "too_deep"
            ) from None
    else:
        data = _load_yaml(text)
    check_values(data)
    return data


def check_size(text: str) -> None:
    """Refuse a document larger than MAX_DOCUMENT_BYTES (UTF-8) before anything parses it."""
    # A character is at least one byte: the length alone refuses most oversized documents
    # without encoding them.
    if len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise DocumentRefused(
            f"the document is larger than {MAX_DOCUMENT_BYTES} bytes (limit MAX_DOCUMENT_BYTES)",
            "too_large",
        )


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"YAML error{where}: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"YAML error: {exc}") from exc
    except DocumentRefused:
        raise
    except (ValueError, LookupError, TypeError, AttributeError, ArithmeticError) as exc:
        # PyYAML's constructors fail with plain exceptions on a scalar that doesn't fit an
        # explicit tag (`!!int ""` is an IndexError, `!!bool maybe` a KeyError).
        raise ValueError(f"YAML error: a value doesn't fit its tag ({exc!r})") from exc


def validate_document(text: str, *, format: Format | None = None) -> ValidationReport:
    """Decode and validate a document; syntax errors are reported at path "" (code `syntax`)."""
    try:
        data = load_document(text, format=format)
    except ValueError as exc:
        report = ValidationReport()
        report.add([document_issue(exc)])
        return report
    return validate_playbook(data)


def document_issue(exc: ValueError) -> Issue:
    """The issue for a document that didn't decode: a refused limit or type, else `syntax`."""
    if isinstance(exc, DocumentRefused):
        return Issue(exc.path, str(exc), exc.code)
    return Issue("", str(exc), "syntax")


def parse_playbook(text: str, *, format: Format | None = None) -> Playbook:
    """Parse and validate a YAML or JSON playbook; PlaybookInvalid (with `.report`) on errors."""
    report = validate_document(text, format=format)
    if report.playbook is None:
        raise PlaybookInvalid(report)
    return report.playbook
