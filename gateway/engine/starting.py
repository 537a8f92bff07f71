"""Starting a play (what becomes of it afterwards is `gateway.engine.lifecycle`'s call)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import leads, playbook_versions
from gateway.clock import now
from gateway.engine.records import log, new_play
from gateway.engine.stepper import run_due, step_delay
from gateway.ids import new_id
from gateway.models import Lead, Play, PlayState
from gateway.rows import fresh
from gateway.work import PLAY_ADVANCE, stage


class RunningPlayExists(Exception):
    """The lead already has a running play of this playbook."""

    def __init__(self, play_id: str) -> None:
        super().__init__(play_id)
        self.play_id = play_id


async def running_play(
    session: AsyncSession, account_id: str, lead_id: str, playbook_id: str
) -> Play | None:
    params = {"account_id": account_id, "lead_id": lead_id, "playbook_id": playbook_id}
    return (await session.exec(_RUNNING, params=params)).first()


# `running_play`'s statement (asked for every new lead), built once.
_RUNNING = select(Play).where(
    Play.account_id == bindparam("account_id"),
    Play.lead_id == bindparam("lead_id"),
    Play.playbook_id == bindparam("playbook_id"),
    Play.state == PlayState.RUNNING,
)


async def start_play(
    session: AsyncSession,
    *,
    lead: Lead,
    playbook_id: str,
    settings: dict[str, Any],
    rep_id: str | None = None,
    source_rule_id: str | None = None,
    version: int | None = None,
) -> Play:
    """A new running play on the playbook's `version` (None: its latest). A first step due now
    runs in this transaction (speed to lead: its text is queued and its send staged when the
    caller commits, with no `plays.advance` job and no second transaction between); what comes
    later is staged as the play's advance.

    The caller holds the lead's contact lock (gateway/contact_lock.py), as a job running the
    step would, taken before it wrote the lead's row: the order every job takes them in
    (contact, then rows), so two transactions never wait on each other.

    LookupError: no such playbook; ValueError: a required setting is missing;
    RunningPlayExists: the lead is already in a running play of this playbook.
    """
    if version is None:
        version = await playbook_versions.latest_version(session, lead.account_id, playbook_id)
    if version is None:
        raise LookupError(f"no playbook {playbook_id}")
    playbook = await playbook_versions.load(session, lead.account_id, playbook_id, version)
    playbook.effective_settings(settings)  # ValueError names what is missing
    # A lead this request created has no play to find (speed to lead: one statement fewer).
    if not leads.playless(session, lead):
        existing = await running_play(session, lead.account_id, lead.id, playbook_id)
        if existing is not None:
            raise RunningPlayExists(existing.id)
    first = playbook.start()
    play = fresh(
        Play,
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
    # Not written yet: the session writes it before its next statement, which for a first
    # step due now is its text's INSERT (whose foreign key names the play). By then the play
    # holds where the step left it, so it needs no UPDATE of its own (one statement fewer per
    # lead; `bench.statements`). The unit of work's INSERT costs more CPU than `insert_row`'s,
    # about what the UPDATE it saves did.
    session.add(play)
    leads.started_play(session, lead)
    new_play(session, play.id)
    log(session, play, "state", None, state="running", version=version)
    if play.due_at is not None and play.due_at <= now():
        await run_due(session, play, lead)  # as the job would, under the caller's lock
    if play.state == PlayState.RUNNING and not play.paused and play.due_at is not None:
        stage(session, PLAY_ADVANCE, play.id, at=play.due_at, batch=play.account_id)  # next step
    return play
