"""The SQL statements this process runs meanwhile (the stack's gateway runs in the test's
process), from every engine: for tests that say what a request or a job costs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event


@contextmanager
def statements(containing: str = "") -> Iterator[list[str]]:
    """Every statement run inside the block that contains `containing`, in order."""
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if containing in statement:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)
