"""Which rep a party line calls next, held atomically so no rep is offered two leads at once.

A rep is held by inserting (account, rep) into `rep_reservations` with ON CONFLICT DO
NOTHING: on both databases exactly one of any number of concurrent inserts wins, whichever
worker or web process runs it. The hold lasts until the party line releases the rep (the
attempt failed, or the party line ended), so a rep talking to one lead is never whispered
another.

Order of candidates: the play's assigned rep (first attempt), then the play's source rule
(round robin over its available reps, `gateway.reps.assign_rep`), and with no rule every
available rep of the account.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.db import conflict_insert
from gateway.models import Play, Rep, RepReservation, SourceRule
from gateway.reps import ROUND_ROBIN, assign_rep


@dataclass(frozen=True)
class Held:
    """A rep this party line now holds."""

    rep_id: str
    name: str
    phone: str


async def hold(session: AsyncSession, rep: Rep, party_line_id: str) -> bool:
    """True when this party line now holds `rep` (or already did)."""
    connection = await session.connection()
    statement = (
        conflict_insert(connection, RepReservation)
        .values(
            account_id=rep.account_id, rep_id=rep.id, party_line_id=party_line_id, reserved_at=now()
        )
        .on_conflict_do_nothing(index_elements=["account_id", "rep_id"])
    )
    if (await connection.execute(statement)).rowcount == 1:
        return True
    holder = (
        await session.exec(
            select(RepReservation.party_line_id).where(
                RepReservation.account_id == rep.account_id, RepReservation.rep_id == rep.id
            )
        )
    ).first()
    return holder == party_line_id


async def release(session: AsyncSession, account_id: str, rep_id: str, party_line_id: str) -> None:
    """Give the rep back, if this party line holds it."""
    await session.exec(
        delete(RepReservation).where(
            col(RepReservation.account_id) == account_id,
            col(RepReservation.rep_id) == rep_id,
            col(RepReservation.party_line_id) == party_line_id,
        )
    )


async def release_all(session: AsyncSession, account_id: str, party_line_id: str) -> None:
    """Give back every rep the party line holds (it ended)."""
    await session.exec(
        delete(RepReservation).where(
            col(RepReservation.account_id) == account_id,
            col(RepReservation.party_line_id) == party_line_id,
        )
    )


async def _rep(session: AsyncSession, account_id: str, rep_id: str) -> Rep | None:
    query = select(Rep).where(Rep.account_id == account_id, Rep.id == rep_id)
    return (await session.exec(query)).first()


async def choose(
    session: AsyncSession, play: Play, party_line_id: str, *, attempt: int, exclude: tuple[str, ...]
) -> Held | None:
    """Hold the next available rep for this play outside `exclude`; None when nobody is free."""
    skip = set(exclude)
    if attempt == 1 and play.rep_id and play.rep_id not in skip:
        rep = await _rep(session, play.account_id, play.rep_id)
        if rep is not None and rep.available and await hold(session, rep, party_line_id):
            return Held(rep.id, rep.name, rep.phone)
        skip.add(play.rep_id)
    rule = None
    if play.source_rule_id:
        query = select(SourceRule).where(
            SourceRule.account_id == play.account_id, SourceRule.id == play.source_rule_id
        )
        rule = (await session.exec(query)).first()
    if rule is not None and rule.distribution == ROUND_ROBIN and rule.rep_ids:
        # Each turn of the rotation offers the next available rep; a rep who is excluded or
        # busy on another party line passes the turn on, once round the whole rule.
        for _ in range(len(rule.rep_ids)):
            rep = await assign_rep(session, rule)
            if rep is None:
                return None
            if rep.id not in skip and await hold(session, rep, party_line_id):
                return Held(rep.id, rep.name, rep.phone)
        return None
    reps: list[Rep | None]
    if rule is not None:
        candidates = [r for r in rule.rep_ids if r not in skip]  # manual: in the rule's order
        reps = [await _rep(session, play.account_id, r) for r in candidates]
    else:
        everyone = (
            select(Rep)
            .where(Rep.account_id == play.account_id, col(Rep.available).is_(True))
            .order_by(col(Rep.created_at), col(Rep.id))
        )
        reps = [r for r in (await session.exec(everyone)).all() if r.id not in skip]
    for rep in reps:
        if rep is not None and rep.available and await hold(session, rep, party_line_id):
            return Held(rep.id, rep.name, rep.phone)
    return None
