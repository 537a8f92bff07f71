"""Starting a play, and what an opt-out does to a lead's plays."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import playbook_versions
from gateway.clock import now
from gateway.engine.lifecycle import opt_out_play
from gateway.engine.records import end, log, record_activity
from gateway.engine.stepper import move_to, step_delay
from gateway.ids import new_id
from gateway.models import ActivityType, Lead, Message, Play, PlayState


class RunningPlayExists(Exception):
    """The lead already has a running play of this playbook."""

    def __init__(self, play_id: str) -> None:
        super().__init__(play_id)
        self.play_id = play_id


async def running_play(
    session: AsyncSession, account_id: str, lead_id: str, playbook_id: str
) -> Play | None:
    query = select(Play).where(
        Play.account_id == account_id,
        Play.lead_id == lead_id,
        Play.playbook_id == playbook_id,
        Play.state == PlayState.RUNNING,
    )
    return (await session.exec(query)).first()


async def start_play(
    session: AsyncSession,
    *,
    lead: Lead,
    playbook_id: str,
    settings: dict[str, Any],
    rep_id: str | None = None,
    source_rule_id: str | None = None,
) -> Play:
    """A new running play on the playbook's latest version; the caller enqueues its advance.

    LookupError: no such playbook; ValueError: a required setting is missing;
    RunningPlayExists: the lead is already in a running play of this playbook.
    """
    version = await playbook_versions.latest_version(session, lead.account_id, playbook_id)
    if version is None:
        raise LookupError(f"no playbook {playbook_id}")
    playbook = await playbook_versions.load(session, lead.account_id, playbook_id, version)
    playbook.effective_settings(settings)  # ValueError names what is missing
    existing = await running_play(session, lead.account_id, lead.id, playbook_id)
    if existing is not None:
        raise RunningPlayExists(existing.id)
    first = playbook.start()
    play = Play(
        id=new_id("play"),
        account_id=lead.account_id,
        lead_id=lead.id,
        playbook_id=playbook_id,
        playbook_version=version,
        state=PlayState.RUNNING,
        settings=settings,
        step_id=first.id,
        due_at=now() + step_delay(first),
        rep_id=rep_id,
        source_rule_id=source_rule_id,
    )
    session.add(play)
    log(session, play, "state", None, state="running", version=version)
    await session.flush()
    return play


async def on_opt_out(session: AsyncSession, account_id: str, phone: str) -> None:
    """The lead opted out: every running play of theirs ends `opted_out`."""
    plays = (
        await session.exec(
            select(Play)
            .join(Lead, col(Lead.id) == col(Play.lead_id))
            .where(
                Lead.account_id == account_id,
                Lead.phone == phone,
                Play.state == PlayState.RUNNING,
            )
        )
    ).all()
    for play in plays:
        await opt_out_play(session, play)


async def on_message_accepted(session: AsyncSession, message: Message) -> None:
    """A play's first message reached Twilio: the play has `started`."""
    if message.play_id is None:
        return
    claimed = await session.exec(
        update(Play)
        .where(col(Play.id) == message.play_id, col(Play.started).is_(False))
        .values(started=True)
    )
    play = await session.get(Play, message.play_id)
    if play is None:
        return
    if claimed.rowcount == 1:
        await record_activity(session, play, ActivityType.EVENT, "started")
    _recheck_if_finished(session, play)


def _recheck_if_finished(session: AsyncSession, play: Play) -> None:
    """A play past its last step waits for its last texts; one just settled: look again now."""
    if play.state == PlayState.RUNNING and play.step_id is None:
        play.due_at = now()
        session.add(play)


async def on_message_failed(session: AsyncSession, message: Message) -> None:
    """A play's text failed for good (landline, invalid number, ...): the playbook's
    `on_failure` decides. `halt` ends the play; `skip` moves past the step, picked up by the
    plays sweep."""
    if message.play_id is None:
        return
    play = await session.get(Play, message.play_id)
    if play is None or play.state != PlayState.RUNNING:
        return
    playbook = await playbook_versions.load(
        session, play.account_id, play.playbook_id, play.playbook_version
    )
    why = f"text failed: {message.error_code or message.error_message or message.status}"
    if playbook.on_failure == "halt":
        await record_activity(session, play, ActivityType.EVENT, "stopped", why)
        end(session, play, PlayState.STOPPED, f"{why} (on_failure: halt)")
        return
    log(session, play, "skipped", message.step_id, why=why)
    _recheck_if_finished(session, play)
    if play.waiting_reply and message.step_id is not None and play.step_id == message.step_id:
        # The question can't be answered: go where the ask goes without an answer.
        move_to(play, playbook.next_step(message.step_id))
        play.due_at = now()  # act on the next step now, not after its delay
        session.add(play)
