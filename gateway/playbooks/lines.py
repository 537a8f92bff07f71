"""Where in a document an issue is: the line a validation path (`steps[2].choices[0].goto`) was
written on, so an editor can show the error beside it.

Issues carry paths, not lines (validation runs on the decoded data, which has none), so the
line comes from composing the text again: PyYAML's nodes keep their start marks. JSON is
read the same way (YAML's flow syntax reads JSON documents). A path that leads nowhere in the
document (a missing field: `steps[2].kind`) gives the line of the deepest part that exists,
the step the field is missing from. A document that doesn't parse has its syntax error's line
in the message (gateway/playbooks/loading.py writes "at line N").
"""

from __future__ import annotations

import re

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_AT_LINE = re.compile(r"\bat line (\d+)\b")


def path_parts(path: str) -> list[int | str]:
    """`steps[3].choices[1].goto` -> `["steps", 3, "choices", 1, "goto"]`."""
    return [int(index) if index else name for index, name in _PART.findall(path)]


def _compose(text: str) -> Node | None:
    try:
        # compose builds nodes only (no objects, no tags resolved to Python), so it is safe on
        # any text; the playbook was already decoded (with its limits) before issues exist.
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def _child(node: Node, parts: list[int | str], at: int) -> tuple[Node, Node, int] | None:
    """The node `parts[at:]` starts with under `node`: (the line's node, the value, parts used).
    A mapping key may itself hold dots (`additional_info` keys do), so the longest run of names
    that is one key wins."""
    if isinstance(node, SequenceNode):
        index = parts[at]
        if isinstance(index, int) and 0 <= index < len(node.value):
            item: Node = node.value[index]
            return item, item, 1
        return None
    if isinstance(node, MappingNode):
        names: list[str] = []
        for part in parts[at:]:
            if not isinstance(part, str):
                break
            names.append(part)
        for used in range(len(names), 0, -1):
            wanted = ".".join(names[:used])
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == wanted:
                    return key, value, used
    return None


def line_of(text: str, path: str) -> int | None:
    """The 1-based line `path` was written on in the YAML or JSON `text`; None when the text
    doesn't parse or the path is the whole document ("")."""
    root = _compose(text)
    if root is None or not path:
        return None
    parts = path_parts(path)
    node, line = root, None
    at = 0
    while at < len(parts):
        found = _child(node, parts, at)
        if found is None:
            break
        marker, node, used = found
        line = marker.start_mark.line + 1
        at += used
    return line


def issue_line(text: str, path: str, message: str) -> int | None:
    """The line of an issue: its path's line, else the line its message names (a syntax error,
    a limit reached while reading)."""
    line = line_of(text, path)
    if line is not None:
        return line
    named = _AT_LINE.search(message)
    return int(named.group(1)) if named else None
