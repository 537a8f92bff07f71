"""Bounds on free-form JSON a client stores (a lead's `additional_info`, a play's settings).

Stored JSON comes back on every read of its row: a value nested 900 deep passes `json.dumps`
on the way in, then breaks every later response that serializes it. So depth and the number of
values are checked once, on the way in, without recursion (the check itself must not be what
overflows the stack).
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 16
MAX_VALUES = 10_000


def json_bounds_error(
    value: Any, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES
) -> str | None:
    """Why `value` is nested deeper than `max_depth` or holds more than `max_values` values; or
    None when it is within both. The top-level object or list is depth 1."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    values = 0
    while pending:
        item, depth = pending.pop()
        values += 1
        if values > max_values:
            return f"more than {max_values} values"
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth + 1 > max_depth:
            return f"nested deeper than {max_depth} levels"
        pending.extend((child, depth + 1) for child in children)
    return None
