"""A transaction's play log entries and message history are written together when it commits, a
table at a time, in the order they were made, after the rows they name; a rollback drops them
(gateway/commit_rows.py)."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway import commit_rows
from gateway.db import SessionFactory, transaction
from gateway.engine.records import log_by_id, log_once, new_play
from gateway.ids import new_id
from gateway.models import Lead, Message, MessageEvent, Play, PlayLog, PlayState, Purpose
from gateway.sms.outbox import queue_message
from gateway.sms.status import note_event
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


async def _begin(session: AsyncSession, lead: Lead, play: Play) -> None:
    """The lead written, its play pending: the commit writes the play before its entries."""
    session.add(lead)
    await session.flush()
    session.add(play)


def _allowed_once_then_message(session: AsyncSession, play_id: str) -> None:
    log_by_id(session, play_id, "allowed", None)
    log_once(session, play_id, "no_evidence", None)
    log_once(session, play_id, "no_evidence", None)  # once only
    log_by_id(session, play_id, "message", None)


async def test_entries_are_one_insert_at_commit_in_order_after_their_play(
    sessions: SessionFactory,
) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    with statements("INSERT INTO play_log") as inserts:
        async with transaction(sessions) as session:
            await _begin(session, lead, play)
            for n in range(5):
                log_by_id(session, play.id, "step", None, n=n)
    assert len(inserts) == 1
    assert await _entries(sessions, play.id) == [("step", {"n": n}) for n in range(5)]


async def test_log_once_comes_after_the_entries_before_it(sessions: SessionFactory) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    async with transaction(sessions) as session:
        await _begin(session, lead, play)
        _allowed_once_then_message(session, play.id)
    kinds = [kind for kind, _ in await _entries(sessions, play.id)]
    assert kinds == ["allowed", "no_evidence", "message"]


async def test_plays_that_each_log_once_share_one_execution_and_keep_their_order(
    sessions: SessionFactory,
) -> None:
    """A drain's batch: several plays, each logging an entry, one only if new, and another.
    The rows of each statement go out together (three executions, not three a play), and each
    play's log is in the order it was written; an entry already logged is not logged again."""
    tenant = await new_tenant(sessions, "Acme")
    plays = []
    async with transaction(sessions) as session:
        for n in range(3):
            lead, play = _new_play(tenant.account_id)
            lead.phone = f"+1415555020{n}"
            await _begin(session, lead, play)
            plays.append(play)
    async with transaction(sessions) as session:
        log_by_id(session, plays[0].id, "no_evidence", None)  # the first play's, already
    with statements("INSERT INTO play_log") as inserts:
        async with transaction(sessions) as session:
            for play in plays:
                _allowed_once_then_message(session, play.id)
    assert len(inserts) == 3  # the entries, those only if new, the entries after them
    assert [kind for kind, _ in await _entries(sessions, plays[0].id)] == [
        "no_evidence",
        "allowed",
        "message",
    ]
    for play in plays[1:]:
        kinds = [kind for kind, _ in await _entries(sessions, play.id)]
        assert kinds == ["allowed", "no_evidence", "message"]


async def test_log_once_for_a_play_created_here_is_kept_with_the_others(
    sessions: SessionFactory,
) -> None:
    """A play created in this transaction (`new_play`) has only the entries it writes: `log_once`
    needs no statement of its own, and still logs once, in order; a later transaction's
    `log_once` looks in the table again."""
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    with statements("INSERT INTO play_log") as inserts:
        async with transaction(sessions) as session:
            await _begin(session, lead, play)
            new_play(session, play.id)
            _allowed_once_then_message(session, play.id)
    assert len(inserts) == 1  # the commit's, with every entry
    async with transaction(sessions) as session:
        log_once(session, play.id, "no_evidence", None)  # there already: nothing
        log_once(session, play.id, "other", None)
    kinds = [kind for kind, _ in await _entries(sessions, play.id)]
    assert kinds == ["allowed", "no_evidence", "message", "other"]


async def test_a_rollback_drops_the_entries(sessions: SessionFactory) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    async with transaction(sessions) as session:
        session.add_all([lead, play])
    async with sessions() as session:
        log_by_id(session, play.id, "dropped", None)
        await session.rollback()
        assert commit_rows.PENDING not in session.info
        log_by_id(session, play.id, "kept", None)
        await session.commit()
    assert await _entries(sessions, play.id) == [("kept", {})]


async def _history(sessions: SessionFactory, message_id: str) -> list[str]:
    async with sessions() as session:
        query = (
            select(MessageEvent)
            .where(MessageEvent.message_id == message_id)
            .order_by(col(MessageEvent.id))
        )
        return [row.status for row in (await session.exec(query)).all()]


async def _queue(session: AsyncSession, lead: Lead, play_id: str | None = None) -> Message:
    """A text to `lead` queued in the session's transaction (its `queued` history row noted)."""
    return await queue_message(
        session,
        account_id=lead.account_id,
        phone=lead.phone,
        body="Hi",
        purpose=Purpose.INITIATED,
        reason="play",
        lead_id=lead.id,
        play_id=play_id,
    )


async def test_a_messages_history_is_one_insert_at_commit_beside_the_play_log(
    sessions: SessionFactory,
) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    with (
        statements("INSERT INTO message_events") as events,
        statements("INSERT INTO play_log") as entries,
    ):
        async with transaction(sessions) as session:
            session.add_all([lead, play])
            message = await _queue(session, lead, play.id)
            log_by_id(session, play.id, "message", None)
            note_event(session, message.id, "deferred", detail="quiet hours")
            # Nothing is written before the commit.
            assert (events, entries) == ([], [])
    assert (len(events), len(entries)) == (1, 1)
    assert await _history(sessions, message.id) == ["queued", "deferred"]


async def test_a_rollback_drops_a_messages_noted_history(sessions: SessionFactory) -> None:
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    async with transaction(sessions) as session:
        session.add_all([lead, play])
        message = await _queue(session, lead)
    async with sessions() as session:
        note_event(session, message.id, "dropped")
        await session.rollback()
        note_event(session, message.id, "kept")
        await session.commit()
    assert await _history(sessions, message.id) == ["queued", "kept"]


async def test_on_postgresql_the_tables_rows_are_one_statement_in_their_order(
    sessions: SessionFactory,
) -> None:
    """PostgreSQL writes the rows of every table in one statement (a `WITH` a table over arrays
    of their values): each table's rows in the order kept, their nulls and JSON as they were.
    SQLite writes a statement a table; a table whose rows have a statement of their own (an
    entry written only if new) makes PostgreSQL do so too."""
    tenant = await new_tenant(sessions, "Acme")
    lead, play = _new_play(tenant.account_id)
    postgres = sessions.kw["bind"].dialect.name == "postgresql"
    with statements() as seen:
        async with transaction(sessions) as session:
            session.add_all([lead, play])
            message = await _queue(session, lead, play.id)
            log_by_id(session, play.id, "message", "ask", why={"nested": [1, None], "n": 2})
            note_event(session, message.id, "failed", error_code=30003)
            log_by_id(session, play.id, "skipped", None)
            note_event(session, message.id, "retry", detail="try again")
    writes = [s for s in seen if "INSERT INTO play_log" in s or "INSERT INTO message_events" in s]
    assert len(writes) == (1 if postgres else 2)
    assert await _entries(sessions, play.id) == [
        ("message", {"why": {"nested": [1, None], "n": 2}}),
        ("skipped", {}),
    ]
    async with sessions() as session:
        query = (
            select(MessageEvent.status, MessageEvent.error_code, MessageEvent.detail)
            .where(MessageEvent.message_id == message.id)
            .order_by(col(MessageEvent.id))
        )
        assert (await session.exec(query)).all() == [
            ("queued", None, "play"),
            ("failed", 30003, None),
            ("retry", None, "try again"),
        ]

    _, other = _new_play(tenant.account_id)
    other.lead_id, other.playbook_id = lead.id, "another"  # the lead's second running play
    with statements() as seen:
        async with transaction(sessions) as session:
            session.add(other)
            message = await _queue(session, lead, other.id)
            _allowed_once_then_message(session, other.id)
    writes = [s for s in seen if "INSERT INTO play_log" in s or "INSERT INTO message_events" in s]
    assert len(writes) == 4  # the history; the log's entries, then the one if new, then one
    assert [kind for kind, _ in await _entries(sessions, other.id)] == [
        "allowed",
        "no_evidence",
        "message",
    ]
