"""The contact lock (gateway/contact_lock.py) touches a contact's row once per transaction:
a second call for the same contact in the same transaction sends nothing, a new transaction
touches it again. Real database; on SQLite a `transaction()` holds the write lock and touches
nothing at all."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select

from gateway.contact_lock import _touch, lock_column, lock_contact, lock_contacts
from gateway.db import SessionFactory, transaction
from gateway.ids import new_id
from gateway.leads import LeadCreate, upsert_lead_asking
from gateway.models import ContactLock, Lead
from tests.conftest import TEST_DATABASE_URL
from tests.support.sql import statements
from tests.support.tenants import new_tenant

ACCOUNT = "acct_lock"
ANN, BOB = "+14155550101", "+14155550102"


async def test_a_contact_is_touched_once_per_transaction(sessions: SessionFactory) -> None:
    with statements("contact_locks") as seen:
        async with transaction(sessions) as session:
            for _ in range(3):
                await lock_contact(session, ACCOUNT, ANN)
            await lock_contact(session, ACCOUNT, BOB)
        async with transaction(sessions) as session:
            await lock_contact(session, ACCOUNT, ANN)
    assert len(seen) == (0 if TEST_DATABASE_URL is None else 3)


async def test_a_session_touches_again_in_its_next_transaction(sessions: SessionFactory) -> None:
    """A plain session's transactions (no write lock taken at BEGIN, on either backend)."""
    with statements("contact_locks") as seen:
        async with sessions() as session:
            async with session.begin():
                await lock_contact(session, ACCOUNT, ANN)
                await lock_contact(session, ACCOUNT, ANN)
            async with session.begin():
                await lock_contact(session, ACCOUNT, ANN)
    assert len(seen) == 2


async def test_the_lock_comes_before_the_rows_the_transaction_has_pending(
    sessions: SessionFactory,
) -> None:
    """Contact first, then rows: the order every unit takes them in, so two never wait on each
    other. The session autoflushes before a Core statement, so the lock says not to."""
    tenant = await new_tenant(sessions, "Acme")
    with statements("INSERT INTO") as seen:
        async with sessions() as session, session.begin():
            session.add(Lead(id=new_id("lead"), account_id=tenant.account_id, phone=ANN))
            await lock_contact(session, tenant.account_id, ANN)
    tables = [statement.split("(")[0].split()[-1] for statement in seen]
    assert tables == ["contact_locks", "leads"]


async def test_a_batch_locks_its_contacts_in_one_statement(sessions: SessionFactory) -> None:
    """`lock_contacts`: the contacts not yet held, in one statement, each touched once."""
    carl = "+14155550103"
    with statements("contact_locks") as seen:
        async with sessions() as session, session.begin():
            await lock_contact(session, ACCOUNT, BOB)
            await lock_contacts(session, ACCOUNT, [carl, ANN, BOB, carl])
            await lock_contacts(session, ACCOUNT, [ANN, carl])
    assert len(seen) == 2
    async with sessions() as session:
        touched = await session.exec(
            select(ContactLock.phone, ContactLock.touches).where(ContactLock.account_id == ACCOUNT)
        )
        assert sorted(touched.all()) == [(ANN, 1), (BOB, 1), (carl, 1)]


async def test_a_leads_upsert_takes_its_contacts_lock_before_its_row(
    sessions: SessionFactory,
) -> None:
    """`upsert_lead_asking(lock=True)`: on PostgreSQL the lock's upsert is a WITH of the lead's,
    whose phone it gives, so it is taken first, in the same statement; SQLite's WITH writes
    nothing, so there it is a statement of its own, first. Once taken, it is held."""
    tenant = await new_tenant(sessions, "Acme")
    with statements("INSERT INTO") as seen:
        async with sessions() as session, session.begin():
            lead, _ = await upsert_lead_asking(
                session, tenant.account_id, LeadCreate(phone=ANN), None, lock=True
            )
            await lock_contact(session, tenant.account_id, ANN)  # held: nothing sent
    assert lead.phone == ANN
    if TEST_DATABASE_URL is None:
        assert [s.split("(")[0].split()[-1] for s in seen] == ["contact_locks", "leads"]
    else:
        [statement] = seen
        assert statement.index("INSERT INTO contact_locks") < statement.index("INSERT INTO leads")
    async with sessions() as session:
        touched = await session.exec(
            select(ContactLock.touches).where(ContactLock.account_id == tenant.account_id)
        )
        assert touched.all() == [1]


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="a row lock of PostgreSQL's")
async def test_the_lock_a_leads_upsert_takes_holds_another_transaction_back(
    sessions: SessionFactory,
) -> None:
    tenant = await new_tenant(sessions, "Acme")
    order: list[str] = []

    async def another() -> None:
        async with sessions() as session, session.begin():
            await lock_contact(session, tenant.account_id, ANN)
            order.append("another has the contact")

    async with sessions() as session, session.begin():
        await upsert_lead_asking(session, tenant.account_id, LeadCreate(phone=ANN), None, lock=True)
        waiting = asyncio.create_task(another())
        await asyncio.sleep(0.5)
        order.append("the upsert's transaction ends")
    await asyncio.wait_for(waiting, 10)
    assert order == ["the upsert's transaction ends", "another has the contact"]


def test_the_locks_statements_are_compiled_once() -> None:
    """SQLAlchemy's compiled cache keys no INSERT with a VALUES list of several rows: on
    PostgreSQL, where every transaction that sends or starts a play runs it, the lock's
    upsert is a SELECT instead, so that it has a key (one compile, not one an execution)."""
    for count in (1, 2, 16):
        assert _touch("postgresql", count)._generate_cache_key() is not None
    assert lock_column("postgresql")._generate_cache_key() is not None
