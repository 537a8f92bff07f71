"""The play log's rows, written together when their transaction commits (gateway/commit_rows.py).

With the ORM, a row whose id the database makes is one statement per row on SQLite (the id is
read back), and a play's first text writes three to five of them. Nothing reads the play log
in the transaction that writes it. An entry logged only once per play is kept too, with its
own statement: a drain's batch of texts, each of whose plays may log one, writes them all in
one execution, not one each between the batch's other statements.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Insert, String, bindparam, exists, insert, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import commit_rows
from gateway.clock import now
from gateway.db import UTCDateTime
from gateway.models import PlayLog

_TABLE = PlayLog.__table__  # type: ignore[attr-defined]


def add(
    session: AsyncSession,
    play_id: str,
    kind: str,
    step_id: str | None,
    detail: dict[str, Any],
    *,
    unless_logged: bool = False,
) -> None:
    """An entry in the play's log, written when the session commits (or at `write_now`).

    `unless_logged`: only if the play's log holds no entry of this `kind` by then, decided by
    the INSERT itself (INSERT ... SELECT ... WHERE NOT EXISTS), after the entries kept before
    it, so the log keeps its order."""
    row = {"play_id": play_id, "at": now(), "kind": kind, "step_id": step_id, "detail": detail}
    statement = _UNLESS_LOGGED if unless_logged else None
    commit_rows.add(session, _TABLE, row, order="play_id", statement=statement)


def _unless_logged_statement() -> Insert:
    """`add`'s statement for an entry `unless_logged`, built once (`_UNLESS_LOGGED`)."""
    play_id, kind = bindparam("play_id", type_=String), bindparam("kind", type_=String)
    row = select(
        play_id,
        bindparam("at", type_=UTCDateTime),
        kind,
        bindparam("step_id", type_=String),
        bindparam("detail", type_=JSON),
    ).where(~exists().where(col(PlayLog.play_id) == play_id, col(PlayLog.kind) == kind))
    # Into the table, not the entity: with parameters, an ORM INSERT is a bulk insert.
    return insert(_TABLE).from_select(["play_id", "at", "kind", "step_id", "detail"], row)


_UNLESS_LOGGED = _unless_logged_statement()
