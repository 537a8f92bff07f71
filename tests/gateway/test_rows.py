"""`gateway.db.insert_row`: a new row written at once by a Core INSERT, its object left in the
session as a flush would have left it."""

from __future__ import annotations

from gateway.db import SessionFactory, insert_row, transaction
from gateway.ids import new_id
from gateway.models import Lead, Play, PlayState
from tests.support.sql import statements
from tests.support.tenants import new_tenant


def _play(account_id: str, lead_id: str) -> Play:
    return Play(
        id=new_id("play"),
        account_id=account_id,
        lead_id=lead_id,
        playbook_id="hello",
        playbook_version=1,
        state=PlayState.RUNNING,
        step_id="first",
    )


async def test_the_row_is_written_at_once_and_its_object_is_the_sessions(
    sessions: SessionFactory,
) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead = Lead(id=new_id("lead"), account_id=tenant.account_id, phone="+14155550199")
    play = _play(tenant.account_id, lead.id)
    with statements() as sent:
        async with transaction(sessions) as session:
            # The lead is only pending: written first, since the play's row names it.
            session.add(lead)
            await insert_row(session, play)
            written = list(sent)
            # Found without a read; a change to it is an UPDATE of that column at commit.
            assert await session.get(Play, play.id) is play
            assert len(sent) == len(written)
            play.step_id = "second"
    inserts = [s for s in written if s.lstrip().startswith("INSERT")]
    assert [s.split("(")[0].split()[-1] for s in inserts] == ["leads", "plays"]
    updates = [s for s in sent if s.lstrip().startswith("UPDATE plays")]
    assert len(updates) == 1 and "step_id" in updates[0]
    async with sessions() as session:
        stored = await session.get(Play, play.id)
        assert stored is not None
        assert (stored.lead_id, stored.step_id, stored.state) == (lead.id, "second", "running")


async def test_a_rollback_takes_the_row_with_it(sessions: SessionFactory) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead = Lead(id=new_id("lead"), account_id=tenant.account_id, phone="+14155550198")
    async with transaction(sessions) as session:
        session.add(lead)
    play = _play(tenant.account_id, lead.id)
    play_id = play.id
    async with sessions() as session:
        await insert_row(session, play)
        assert await session.get(Play, play_id) is play
        await session.rollback()
    async with sessions() as session:
        assert await session.get(Play, play_id) is None
