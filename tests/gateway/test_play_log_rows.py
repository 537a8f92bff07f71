"""A transaction's play log entries are written together when it commits, in the order they were
made, after the play they name; a rollback drops them (gateway/play_log_rows.py)."""

from __future__ import annotations

from sqlmodel import col, select

from gateway import play_log_rows
from gateway.db import SessionFactory, transaction
from gateway.engine.records import log_by_id, log_once
from gateway.ids import new_id
from gateway.models import Lead, Play, PlayLog, PlayState
from tests.support.sql import statements
from tests.support.tenants import new_tenant


async def _entries(sessions: SessionFactory, play_id: str) -> list[tuple[str, dict[str, object]]]:
    async with sessions() as session:
        query = select(PlayLog).where(PlayLog.play_id == play_id).order_by(col(PlayLog.id))
        return [(row.kind, row.detail) for row in (await session.exec(query)).all()]


def _new_play(account_id: str) -> tuple[Lead, Play]:
    lead = Lead(id=new_id("lead"), account_id=account_id, phone="+14155550199")
    play = Play(
        id=new_id("play"),
        account_id=account_id,
        lead_id=lead.id,
        playbook_id="hello",
        playbook_version=1,
        state=PlayState.RUNNING,
    )
    return lead, play


async def test_entries_are_one_insert_at_commit_in_order_after_their_play(
    sessions: SessionFactory,
) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    with statements("INSERT INTO play_log") as inserts:
        async with transaction(sessions) as session:
            session.add(lead)
            await session.flush()
            session.add(play)  # not flushed: the commit writes it before its entries
            for n in range(5):
                log_by_id(session, play.id, "step", None, n=n)
    assert len(inserts) == 1
    assert await _entries(sessions, play.id) == [("step", {"n": n}) for n in range(5)]


async def test_log_once_comes_after_the_entries_before_it(sessions: SessionFactory) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    async with transaction(sessions) as session:
        session.add(lead)
        await session.flush()
        session.add(play)
        log_by_id(session, play.id, "allowed", None)
        await log_once(session, play.id, "no_evidence", None)
        await log_once(session, play.id, "no_evidence", None)  # once only
        log_by_id(session, play.id, "message", None)
    kinds = [kind for kind, _ in await _entries(sessions, play.id)]
    assert kinds == ["allowed", "no_evidence", "message"]


async def test_a_rollback_drops_the_entries(sessions: SessionFactory) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    async with transaction(sessions) as session:
        session.add_all([lead, play])
    async with sessions() as session:
        log_by_id(session, play.id, "dropped", None)
        await session.rollback()
        assert play_log_rows.PENDING not in session.info
        log_by_id(session, play.id, "kept", None)
        await session.commit()
    assert await _entries(sessions, play.id) == [("kept", {})]
