"""The play log's rows, written together when their transaction commits (gateway/commit_rows.py).

With the ORM, a row whose id the database makes is one statement per row on SQLite (the id is
read back), and a play's first text writes three to five of them. Nothing reads the play log
in the transaction that writes it; `write_now` is for a statement whose place in the log must
come after the entries kept so far (`gateway.engine.records.log_once`).
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import commit_rows
from gateway.clock import now
from gateway.models import PlayLog

_TABLE = PlayLog.__table__  # type: ignore[attr-defined]
write_now = commit_rows.write_now


def add(
    session: AsyncSession, play_id: str, kind: str, step_id: str | None, detail: dict[str, Any]
) -> None:
    """An entry in the play's log, written when the session commits (or at `write_now`)."""
    row = {"play_id": play_id, "at": now(), "kind": kind, "step_id": step_id, "detail": detail}
    commit_rows.add(session, _TABLE, row)
