"""What a play leaves behind: activities (what the business hears about) and the play log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Insert, String, bindparam, exists, insert, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import play_log_rows
from gateway.activity_webhooks import on_activity, write_activity
from gateway.clock import now
from gateway.db import UTCDateTime, for_this_transaction
from gateway.engine import rep_notices
from gateway.ids import new_id
from gateway.models import Activity, ActivityType, Play, PlayLog
from gateway.rows import fresh


async def record_activity(
    session: AsyncSession, play: Play, type_: ActivityType, label: str, note: str | None = None
) -> Activity:
    """An event or outcome of `play`, in the play's transaction (its webhook deliveries too);
    the object returned is not in the session (`write_activity`)."""
    activity = fresh(
        Activity,
        public_id=new_id("evt"),
        account_id=play.account_id,
        play_id=play.id,
        lead_id=play.lead_id,
        playbook_id=play.playbook_id,
        type=type_,
        label=label,
        note=note,
    )
    await write_activity(session, activity)
    log(session, play, "activity", None, type=str(type_), label=label, note=note)
    await on_activity(session, activity)
    if label == "talk_to_human":
        # The lead wants a person: the assigned rep hears of it now, not when a call rings.
        await rep_notices.notify_assigned_rep(session, play, "talk_to_human")
    return activity


def log(session: AsyncSession, play: Play, what: str, step_id: str | None, **detail: Any) -> None:
    log_by_id(session, play.id, what, step_id, **detail)


def log_by_id(
    session: AsyncSession, play_id: str, what: str, step_id: str | None, **detail: Any
) -> None:
    """`log` for a caller that has only the play's id (plays are never deleted)."""
    play_log_rows.add(session, play_id, what, step_id, detail)


def end(session: AsyncSession, play: Play, state: str, why: str) -> None:
    """Move a play out of `running` (the caller records the matching activities)."""
    play.state = state  # type: ignore[assignment]
    play.waiting_reply, play.due_at = False, None
    play.awaiting_human_since = None  # out of the inbox: nobody has anything left to answer
    play.ended_at = play.updated_at = now()
    session.add(play)
    log(session, play, "state", play.step_id, state=state, why=why)


# session.info key (`for_this_transaction`): the plays this transaction created, each with
# the kinds `log_once` logged since.
_NEW_PLAYS = "gateway.engine.records.new_plays"


def new_play(session: AsyncSession, play_id: str) -> None:
    """`play_id` was created in this transaction: its log holds only what the transaction
    writes, so `log_once` knows without a statement."""
    _new_plays(session)[play_id] = set()


def _new_plays(session: AsyncSession) -> dict[str, set[str]]:
    return for_this_transaction(session, _NEW_PLAYS, dict)


async def log_once(
    session: AsyncSession, play_id: str, what: str, step_id: str | None, **detail: Any
) -> None:
    """`log_by_id` unless the play's log already holds an entry of this kind: one
    INSERT ... SELECT ... WHERE NOT EXISTS, not a read and a write (after the entries kept so
    far, so the log keeps its order). For a play created in this transaction, no statement of
    its own: an entry kept with the others, unless this transaction logged one already."""
    logged = _new_plays(session).get(play_id)
    if logged is not None:
        if what not in logged:
            logged.add(what)
            log_by_id(session, play_id, what, step_id, **detail)
        return
    await play_log_rows.write_now(session)
    params = {"play_id": play_id, "at": now(), "kind": what, "step_id": step_id, "detail": detail}
    await session.exec(_LOG_ONCE, params=params)


def _log_once_statement() -> Insert:
    """`log_once`'s statement, built once (`_LOG_ONCE`)."""
    play_id, kind = bindparam("play_id", type_=String), bindparam("kind", type_=String)
    row = select(
        play_id,
        bindparam("at", type_=UTCDateTime),
        kind,
        bindparam("step_id", type_=String),
        bindparam("detail", type_=JSON),
    ).where(~exists().where(col(PlayLog.play_id) == play_id, col(PlayLog.kind) == kind))
    # Into the table, not the entity: with parameters, an ORM INSERT is a bulk insert.
    table = PlayLog.__table__  # type: ignore[attr-defined]
    return insert(table).from_select(["play_id", "at", "kind", "step_id", "detail"], row)


_LOG_ONCE = _log_once_statement()
