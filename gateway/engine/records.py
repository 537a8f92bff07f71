"""What a play leaves behind: activities (what the business hears about) and the play log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import activity_webhooks, play_log_rows
from gateway.clock import now
from gateway.db import for_this_transaction
from gateway.engine import rep_notices
from gateway.ids import new_id
from gateway.models import Activity, ActivityType, Play
from gateway.rows import fresh


async def record_activity(
    session: AsyncSession, play: Play, type_: ActivityType, label: str, note: str | None = None
) -> Activity:
    """An event or outcome of `play`, in the play's transaction (its webhook deliveries too),
    written when it commits (`activity_webhooks.record`); the object returned is not in the
    session."""
    [activity] = await record_activities(session, [(play, type_, label, note)])
    return activity


# What `record_activities` records: the play, the type, the label and the note.
Recorded = tuple[Play, ActivityType, str, str | None]


async def record_activities(session: AsyncSession, entries: Sequence[Recorded]) -> list[Activity]:
    """`record_activity` for several."""
    activities = [
        fresh(
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
        for play, type_, label, note in entries
    ]
    for activity, (play, type_, label, note) in zip(activities, entries, strict=True):
        activity_webhooks.record(session, activity, play=play)
        log(session, play, "activity", None, type=str(type_), label=label, note=note)
        if label == "talk_to_human":
            # The lead wants a person: the assigned rep hears of it now, not when a call rings.
            await rep_notices.notify_assigned_rep(session, play, "talk_to_human")
    return activities


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


def log_once(
    session: AsyncSession, play_id: str, what: str, step_id: str | None, **detail: Any
) -> None:
    """`log_by_id` unless the play's log already holds an entry of this kind, decided when the
    entry is written (`play_log_rows.add`'s `unless_logged`), not by a read. For a play created
    in this transaction, a plain entry, unless this transaction logged one already."""
    logged = _new_plays(session).get(play_id)
    if logged is not None:
        if what not in logged:
            logged.add(what)
            log_by_id(session, play_id, what, step_id, **detail)
        return
    play_log_rows.add(session, play_id, what, step_id, detail, unless_logged=True)
