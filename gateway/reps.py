"""Choosing the rep for a new lead of a source rule: round robin, atomic across processes.

The rule's `cursor` is advanced by one `UPDATE ... SET cursor = cursor + 1 RETURNING cursor`,
which both databases execute atomically (PostgreSQL locks the row until the caller commits;
SQLite lets one writer in at a time), so no two assignments ever read the same position.

The position indexes the rule's reps that are available *now*, in the rule's order. Skipping
unavailable reps this way costs one statement per assignment and keeps the split even among
the available reps however requests interleave: with reps [A, B, C] and B away, 30 leads give
A and C 15 each. (Retrying positions until one lands on an available rep instead would let
concurrent callers steal each other's retries and skew the split.) When availability changes
the rotation shifts by at most one turn.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.models import Rep, SourceRule

ROUND_ROBIN: Final = "round_robin"
MANUAL: Final = "manual"


async def available_reps(session: AsyncSession, account_id: str, rep_ids: list[str]) -> list[Rep]:
    """The available reps among `rep_ids` of the account, in the order of `rep_ids`."""
    if not rep_ids:
        return []
    rows = (
        await session.exec(
            select(Rep).where(
                Rep.account_id == account_id,
                col(Rep.id).in_(rep_ids),
                col(Rep.available).is_(True),
            )
        )
    ).all()
    by_id = {rep.id: rep for rep in rows}
    return [by_id[rep_id] for rep_id in dict.fromkeys(rep_ids) if rep_id in by_id]


async def assign_rep(session: AsyncSession, rule: SourceRule) -> Rep | None:
    """The next available rep of a round-robin rule; None for manual rules or when nobody is
    available. Advances the rule's cursor in the caller's transaction (commit to keep it)."""
    if rule.distribution != ROUND_ROBIN or not rule.rep_ids:
        return None
    # Write first: on SQLite a transaction that reads and then writes can fail with "database
    # is locked" when another writer got in between; one that starts with the write waits.
    statement = (
        update(SourceRule)
        .where(col(SourceRule.id) == rule.id, col(SourceRule.account_id) == rule.account_id)
        .values(cursor=col(SourceRule.cursor) + 1)
        .returning(col(SourceRule.cursor), col(SourceRule.rep_ids))
    )
    connection = await session.connection()
    row = (await connection.execute(statement)).first()
    if row is None:  # the rule was deleted meanwhile
        return None
    cursor, rep_ids = int(row[0]), list(row[1])
    reps = await available_reps(session, rule.account_id, rep_ids)
    if not reps:
        return None
    return reps[(cursor - 1) % len(reps)]
