"""The play log's rows, written together: a transaction's entries go in one multi-row INSERT
when it commits, not one statement and one ORM object each.

With the ORM, a row whose id the database makes is one statement per row on SQLite (the id is
read back), and a play's first text writes three to five of them. Entries are kept on the
session (`add`) and written by one Core INSERT of them all when the session commits, after its
flush of everything else (so the plays they name exist by then); `write_now` writes them
earlier, for a statement whose place in the log must come after theirs
(`gateway.engine.records.log_once`). A rollback drops them with the rest.

Nothing reads the play log in the transaction that writes it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.models import PlayLog

PENDING = "play_log_pending"  # session.info: the entries not written yet, in order
_INSERT = insert(PlayLog.__table__)  # type: ignore[attr-defined]


def add(
    session: AsyncSession, play_id: str, kind: str, step_id: str | None, detail: dict[str, Any]
) -> None:
    """An entry in the play's log, written when the session commits (or at `write_now`)."""
    if not session.in_transaction():
        # Begun now, so that a rollback before any statement still drops the entry.
        session.sync_session.begin()
    row = {"play_id": play_id, "at": now(), "kind": kind, "step_id": step_id, "detail": detail}
    session.info.setdefault(PENDING, []).append(row)


async def write_now(session: AsyncSession) -> None:
    """Write the entries kept so far (and, first, the rows they name)."""
    rows: list[dict[str, Any]] | None = session.info.pop(PENDING, None)
    if rows:
        await session.flush()
        await session.exec(_INSERT, params=rows)


@event.listens_for(Session, "before_commit")
def _write_at_commit(session: Session) -> None:
    rows: list[dict[str, Any]] | None = session.info.pop(PENDING, None)
    if rows:
        session.flush()
        session.connection().execute(_INSERT, rows)


@event.listens_for(Session, "after_soft_rollback")
def _drop_at_rollback(session: Session, previous: SessionTransaction) -> None:
    if not previous.nested:
        session.info.pop(PENDING, None)
