"""Handing a play's conversation to a person: the play pauses and waits in the inbox
(`GET /v1/plays?awaiting=human`) until a person resumes it at a step or it ends.

While it waits, the lead's replies are recorded in the play log and nothing else: no
catch-all, no re-engagement, no next step (`replies.on_reply` and `stepper.run_due` pass over a
paused play).
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.clock import now
from gateway.engine.records import record_activity
from gateway.models import ActivityType, Play


def await_human(play: Play) -> None:
    """Pause the play for a person; the first hand-over's time is kept (the inbox's order)."""
    play.paused, play.waiting_reply, play.due_at = True, False, None
    if play.awaiting_human_since is None:
        play.awaiting_human_since = now()
    play.updated_at = now()


async def hand_over(session: AsyncSession, play: Play, note: str) -> None:
    """The bot gives up the conversation (catch-all level 3, no way to call): `talk_to_human`."""
    await record_activity(session, play, ActivityType.EVENT, "talk_to_human", note)
    await_human(play)
    session.add(play)
